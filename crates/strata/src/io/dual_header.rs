//! `DualHeader`: a crash-safe A/B mirrored file header.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::path::Path;

use super::HeaderError;

/// Bytes of framing per slot: magic (8), format version (4), generation (8),
/// payload length (4) before the payload, and the crc32c (4) after it.
const FRAME: usize = 28;
/// Where the payload starts in a slot.
const PAYLOAD_AT: usize = 24;

/// Where the two slots of a [`DualHeader`] live and what marks them as
/// ours. Slot A is at `offset`, slot B right after it at
/// `offset + slot_size`.
///
/// The default slot size, 4096, puts each slot in its own page (for an
/// aligned `offset`), so a torn write of one slot cannot damage the other
/// even on a device that tears at page granularity.
///
/// ```
/// use strata::io::HeaderLayout;
/// let layout = HeaderLayout::new()
///     .offset(0)
///     .slot_size(512)
///     .magic(u64::from_le_bytes(*b"MYDBHEAD"))
///     .format_version(3);
/// assert_eq!(layout.capacity(), 512 - 28);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeaderLayout {
    offset: u64,
    slot_size: usize,
    magic: u64,
    format_version: u32,
}

impl HeaderLayout {
    /// The default magic, `b"STRATAHD"` read as a little-endian `u64`.
    ///
    /// ```
    /// assert_eq!(strata::io::HeaderLayout::DEFAULT_MAGIC.to_le_bytes(), *b"STRATAHD");
    /// ```
    pub const DEFAULT_MAGIC: u64 = u64::from_le_bytes(*b"STRATAHD");

    /// The largest slot, 16 MiB: a header is read and written whole, twice
    /// over, so a mistaken size must be an error, not an allocation that
    /// takes the process down.
    ///
    /// ```
    /// use strata::io::{DualHeader, HeaderError, HeaderLayout};
    /// let path = std::env::temp_dir().join(format!("strata-doc-maxslot-{}", std::process::id()));
    /// let huge = HeaderLayout::new().slot_size(HeaderLayout::MAX_SLOT_SIZE + 1);
    /// assert!(matches!(DualHeader::open(&path, huge), Err(HeaderError::InvalidLayout(_))));
    /// # let _ = std::fs::remove_file(&path);
    /// ```
    pub const MAX_SLOT_SIZE: usize = 16 << 20;

    /// Offset 0, 4096-byte slots, [`DEFAULT_MAGIC`](Self::DEFAULT_MAGIC),
    /// format version 1.
    ///
    /// ```
    /// let layout = strata::io::HeaderLayout::new();
    /// assert_eq!(layout.capacity(), 4096 - 28);
    /// ```
    pub const fn new() -> Self {
        Self {
            offset: 0,
            slot_size: 4096,
            magic: Self::DEFAULT_MAGIC,
            format_version: 1,
        }
    }

    /// Where slot A starts in the file.
    ///
    /// ```
    /// let layout = strata::io::HeaderLayout::new().offset(8192);
    /// # let _ = layout;
    /// ```
    pub const fn offset(mut self, offset: u64) -> Self {
        self.offset = offset;
        self
    }

    /// The size of each slot; a slot holds up to `slot_size - 28` payload
    /// bytes.
    ///
    /// ```
    /// let layout = strata::io::HeaderLayout::new().slot_size(128);
    /// assert_eq!(layout.capacity(), 100);
    /// ```
    pub const fn slot_size(mut self, slot_size: usize) -> Self {
        self.slot_size = slot_size;
        self
    }

    /// The magic number that marks a slot as written by this application
    /// (non-zero).
    ///
    /// ```
    /// let layout = strata::io::HeaderLayout::new().magic(0x5eed);
    /// # let _ = layout;
    /// ```
    pub const fn magic(mut self, magic: u64) -> Self {
        self.magic = magic;
        self
    }

    /// The payload format version written with every header and returned
    /// by [`Header::format_version`], for the application's migrations.
    ///
    /// ```
    /// let layout = strata::io::HeaderLayout::new().format_version(2);
    /// # let _ = layout;
    /// ```
    pub const fn format_version(mut self, version: u32) -> Self {
        self.format_version = version;
        self
    }

    /// The largest payload a slot holds.
    ///
    /// ```
    /// assert_eq!(strata::io::HeaderLayout::new().slot_size(64).capacity(), 36);
    /// ```
    pub const fn capacity(&self) -> usize {
        self.slot_size.saturating_sub(FRAME)
    }

    fn validate(&self) -> Result<(), HeaderError> {
        if self.slot_size < FRAME {
            return Err(HeaderError::InvalidLayout(
                "a slot must hold at least its 28 bytes of framing",
            ));
        }
        if self.slot_size > Self::MAX_SLOT_SIZE {
            return Err(HeaderError::InvalidLayout(
                "a slot may be at most HeaderLayout::MAX_SLOT_SIZE bytes",
            ));
        }
        if self.magic == 0 {
            return Err(HeaderError::InvalidLayout(
                "the magic must be non-zero, so a zeroed slot is never taken for a header",
            ));
        }
        let end = (self.slot_size as u64)
            .checked_mul(2)
            .and_then(|both| self.offset.checked_add(both));
        if end.is_none_or(|end| end > i64::MAX as u64) {
            return Err(HeaderError::InvalidLayout(
                "the slots end past the largest file offset",
            ));
        }
        Ok(())
    }

    fn slot_offset(&self, slot: SlotId) -> u64 {
        match slot {
            SlotId::A => self.offset,
            SlotId::B => self.offset + self.slot_size as u64,
        }
    }
}

impl Default for HeaderLayout {
    fn default() -> Self {
        Self::new()
    }
}

/// One of the two slots.
///
/// ```
/// use strata::io::SlotId;
/// assert_eq!(SlotId::A.other(), SlotId::B);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SlotId {
    /// The slot at the layout's offset.
    A,
    /// The slot right after A.
    B,
}

impl SlotId {
    /// The other slot.
    ///
    /// ```
    /// assert_eq!(strata::io::SlotId::B.other(), strata::io::SlotId::A);
    /// ```
    pub fn other(self) -> Self {
        match self {
            SlotId::A => SlotId::B,
            SlotId::B => SlotId::A,
        }
    }
}

/// What a slot holds.
///
/// ```
/// use strata::io::SlotState;
/// assert_eq!(SlotState::Valid { generation: 3 }.to_string(), "valid, generation 3");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SlotState {
    /// Never written: all zero, or past the end of the file.
    Empty,
    /// Holds bytes that are not a complete header of this layout: a write
    /// that was cut short, or corruption.
    Torn,
    /// A complete header.
    Valid {
        /// Its generation.
        generation: u64,
    },
}

impl fmt::Display for SlotState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SlotState::Empty => f.write_str("empty"),
            SlotState::Torn => f.write_str("torn"),
            SlotState::Valid { generation } => write!(f, "valid, generation {generation}"),
        }
    }
}

/// The header [`DualHeader::read`] found: the newest valid slot.
///
/// ```
/// use strata::io::{DualHeader, HeaderLayout, SlotState};
/// let path = std::env::temp_dir().join(format!("strata-doc-hdr-{}", std::process::id()));
/// let mut h = DualHeader::open(&path, HeaderLayout::new())?;
/// h.write(b"one")?;
/// h.write(b"two")?;
/// let header = h.read()?;
/// assert_eq!((header.generation(), header.payload()), (2, &b"two"[..]));
/// assert_eq!(header.other(), SlotState::Valid { generation: 1 });
/// # std::fs::remove_file(&path)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    generation: u64,
    format_version: u32,
    payload: Vec<u8>,
    slot: SlotId,
    other: SlotState,
}

impl Header {
    /// The generation: 1 for the first header, one more for every write.
    ///
    /// ```
    /// # let path = std::env::temp_dir().join(format!("strata-doc-gen-{}", std::process::id()));
    /// # let mut h = strata::io::DualHeader::open(&path, Default::default())?;
    /// h.write(b"x")?;
    /// assert_eq!(h.read()?.generation(), 1);
    /// # std::fs::remove_file(&path)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The format version the header was written with.
    ///
    /// ```
    /// # let path = std::env::temp_dir().join(format!("strata-doc-fv-{}", std::process::id()));
    /// let layout = strata::io::HeaderLayout::new().format_version(7);
    /// let mut h = strata::io::DualHeader::open(&path, layout)?;
    /// h.write(b"x")?;
    /// assert_eq!(h.read()?.format_version(), 7);
    /// # std::fs::remove_file(&path)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn format_version(&self) -> u32 {
        self.format_version
    }

    /// The payload.
    ///
    /// ```
    /// # let path = std::env::temp_dir().join(format!("strata-doc-pl-{}", std::process::id()));
    /// # let mut h = strata::io::DualHeader::open(&path, Default::default())?;
    /// h.write(b"root=7")?;
    /// assert_eq!(h.read()?.payload(), b"root=7");
    /// # std::fs::remove_file(&path)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn payload(&self) -> &[u8] {
        &self.payload
    }

    /// The payload, by value.
    ///
    /// ```
    /// # let path = std::env::temp_dir().join(format!("strata-doc-ip-{}", std::process::id()));
    /// # let mut h = strata::io::DualHeader::open(&path, Default::default())?;
    /// h.write(b"abc")?;
    /// assert_eq!(h.read()?.into_payload(), b"abc".to_vec());
    /// # std::fs::remove_file(&path)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn into_payload(self) -> Vec<u8> {
        self.payload
    }

    /// The slot the header came from.
    ///
    /// ```
    /// # let path = std::env::temp_dir().join(format!("strata-doc-sl-{}", std::process::id()));
    /// # let mut h = strata::io::DualHeader::open(&path, Default::default())?;
    /// h.write(b"first")?;
    /// assert_eq!(h.read()?.slot(), strata::io::SlotId::A);
    /// # std::fs::remove_file(&path)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn slot(&self) -> SlotId {
        self.slot
    }

    /// What the other slot holds: the previous header, nothing yet, or a
    /// torn write.
    ///
    /// ```
    /// # let path = std::env::temp_dir().join(format!("strata-doc-ot-{}", std::process::id()));
    /// # let mut h = strata::io::DualHeader::open(&path, Default::default())?;
    /// h.write(b"first")?;
    /// assert_eq!(h.read()?.other(), strata::io::SlotState::Empty);
    /// # std::fs::remove_file(&path)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn other(&self) -> SlotState {
        self.other
    }

    /// Whether the other slot is torn (a write there was cut short, or it
    /// is corrupt).
    ///
    /// ```
    /// # let path = std::env::temp_dir().join(format!("strata-doc-otn-{}", std::process::id()));
    /// # let mut h = strata::io::DualHeader::open(&path, Default::default())?;
    /// h.write(b"first")?;
    /// assert!(!h.read()?.other_torn());
    /// # std::fs::remove_file(&path)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn other_torn(&self) -> bool {
        self.other == SlotState::Torn
    }
}

/// A slot as parsed: its state and, if valid, where its payload is.
struct Parsed {
    state: SlotState,
    format_version: u32,
    payload: std::ops::Range<usize>,
}

/// A crash-safe header in two mirrored slots of a file (LMDB's two meta
/// pages, redb's dual commit slots).
///
/// Each slot holds a magic number, a format version, a generation, the
/// payload length, the payload and a crc32c over all of them.
/// [`write`](Self::write) writes the slot that does *not* hold the newest
/// header, with the next generation, and syncs it; [`read`](Self::read)
/// returns the valid slot with the highest generation. A write cut short
/// at any byte (a crash, a `SIGKILL`, a power loss) leaves a torn slot that
/// fails its checksum, and the other slot still holds the previous header,
/// so a reader always finds the newest header that was completely written.
/// Nothing ever rewrites a torn slot in place or recomputes its checksum:
/// a torn slot is only ever replaced by a complete new header.
///
/// Within a process `write` takes `&mut self`. Between processes (or two
/// `DualHeader`s on one file), writers must exclude each other and readers
/// must not overlap two successive writes: write under an exclusive
/// [`FileLock`](super::FileLock) and read under a shared one.
///
/// ```
/// use strata::io::{DualHeader, HeaderLayout};
///
/// let path = std::env::temp_dir().join(format!("strata-doc-dual-{}", std::process::id()));
/// let mut header = DualHeader::open(&path, HeaderLayout::new().slot_size(256))?;
/// assert_eq!(header.write(b"tree root at page 7")?, 1);
/// assert_eq!(header.write(b"tree root at page 9")?, 2);
/// let newest = header.read()?;
/// assert_eq!(newest.payload(), b"tree root at page 9");
/// assert_eq!(newest.generation(), 2);
/// # std::fs::remove_file(&path)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct DualHeader {
    file: File,
    layout: HeaderLayout,
}

impl DualHeader {
    /// Opens (creating it if needed) the header of the file at `path`.
    ///
    /// # Errors
    ///
    /// [`HeaderError::InvalidLayout`] for an unusable layout,
    /// [`HeaderError::Io`] if the file cannot be opened for reading and
    /// writing.
    ///
    /// ```
    /// let path = std::env::temp_dir().join(format!("strata-doc-hopen-{}", std::process::id()));
    /// let header = strata::io::DualHeader::open(&path, Default::default())?;
    /// assert!(header.read().is_err()); // nothing written yet
    /// # std::fs::remove_file(&path)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn open(path: impl AsRef<Path>, layout: HeaderLayout) -> Result<Self, HeaderError> {
        layout.validate()?;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        Ok(Self { file, layout })
    }

    /// The header of an already open file (opened for reading, and for
    /// writing if [`write`](Self::write) is used), for example a
    /// `try_clone` of a [`FileLock`](super::FileLock)'s file.
    ///
    /// # Errors
    ///
    /// [`HeaderError::InvalidLayout`] for an unusable layout.
    ///
    /// ```
    /// use strata::io::{DualHeader, FileLock, HeaderLayout};
    /// let path = std::env::temp_dir().join(format!("strata-doc-hff-{}", std::process::id()));
    /// let lock = FileLock::open(&path)?;
    /// let mut header = DualHeader::from_file(lock.file().try_clone()?, HeaderLayout::new())?;
    /// header.write(b"v1")?;
    /// # std::fs::remove_file(&path)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn from_file(file: File, layout: HeaderLayout) -> Result<Self, HeaderError> {
        layout.validate()?;
        Ok(Self { file, layout })
    }

    /// The layout.
    ///
    /// ```
    /// let path = std::env::temp_dir().join(format!("strata-doc-hl-{}", std::process::id()));
    /// let layout = strata::io::HeaderLayout::new().slot_size(128);
    /// assert_eq!(strata::io::DualHeader::open(&path, layout)?.layout(), layout);
    /// # std::fs::remove_file(&path)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn layout(&self) -> HeaderLayout {
        self.layout
    }

    /// The file.
    ///
    /// ```
    /// let path = std::env::temp_dir().join(format!("strata-doc-hf-{}", std::process::id()));
    /// let header = strata::io::DualHeader::open(&path, Default::default())?;
    /// assert_eq!(header.file().metadata()?.len(), 0);
    /// # std::fs::remove_file(&path)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn file(&self) -> &File {
        &self.file
    }

    /// The newest valid header.
    ///
    /// # Errors
    ///
    /// [`HeaderError::Empty`] if neither slot was ever written,
    /// [`HeaderError::NoValidSlot`] if neither holds a valid header but one
    /// holds bytes, [`HeaderError::Io`] if the file cannot be read.
    ///
    /// ```
    /// let path = std::env::temp_dir().join(format!("strata-doc-hr-{}", std::process::id()));
    /// let mut header = strata::io::DualHeader::open(&path, Default::default())?;
    /// header.write(b"hello")?;
    /// assert_eq!(header.read()?.payload(), b"hello");
    /// # std::fs::remove_file(&path)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn read(&self) -> Result<Header, HeaderError> {
        let buf = self.read_slots()?;
        let size = self.layout.slot_size;
        let a = self.parse(&buf[..size]);
        let b = self.parse(&buf[size..]);
        let (newest, slot, other) = match (a.state, b.state) {
            (SlotState::Valid { generation: ga }, SlotState::Valid { generation: gb })
                if gb > ga =>
            {
                (b, SlotId::B, a.state)
            }
            (SlotState::Valid { .. }, _) => (a, SlotId::A, b.state),
            (_, SlotState::Valid { .. }) => (b, SlotId::B, a.state),
            (SlotState::Empty, SlotState::Empty) => return Err(HeaderError::Empty),
            (a, b) => return Err(HeaderError::NoValidSlot { a, b }),
        };
        let SlotState::Valid { generation } = newest.state else {
            unreachable!("the newest slot was matched as valid");
        };
        let base = match slot {
            SlotId::A => 0,
            SlotId::B => size,
        };
        let payload = buf[base + newest.payload.start..base + newest.payload.end].to_vec();
        Ok(Header {
            generation,
            format_version: newest.format_version,
            payload,
            slot,
            other,
        })
    }

    /// Writes `payload` as the next header: into the slot that does not
    /// hold the newest one, with its generation + 1, then `sync_data`.
    /// Returns the new generation. When this returns `Ok`, the header is
    /// durable; if it is interrupted, [`read`](Self::read) returns the
    /// previous header.
    ///
    /// # Errors
    ///
    /// [`HeaderError::PayloadTooLarge`] (nothing written) if `payload`
    /// exceeds [`HeaderLayout::capacity`]; [`HeaderError::NoValidSlot`]
    /// (nothing written) if both slots are torn — use
    /// [`reset`](Self::reset) to start over deliberately (a first write that
    /// was cut short, one slot torn and the other empty, is simply followed
    /// by generation 1 in the empty slot);
    /// [`HeaderError::GenerationExhausted`] after `u64::MAX` generations;
    /// [`HeaderError::Io`] if writing or syncing fails (the previous header
    /// is still the one `read` returns, unless the new one reached the disk).
    ///
    /// ```
    /// use strata::io::{DualHeader, HeaderError, HeaderLayout};
    /// let path = std::env::temp_dir().join(format!("strata-doc-hw-{}", std::process::id()));
    /// let mut header = DualHeader::open(&path, HeaderLayout::new().slot_size(64))?;
    /// assert_eq!(header.write(b"small")?, 1);
    /// let too_big = [0u8; 64];
    /// assert!(matches!(header.write(&too_big), Err(HeaderError::PayloadTooLarge { .. })));
    /// assert_eq!(header.read()?.generation(), 1);
    /// # std::fs::remove_file(&path)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn write(&mut self, payload: &[u8]) -> Result<u64, HeaderError> {
        self.check_fits(payload)?;
        let buf = self.read_slots()?;
        let size = self.layout.slot_size;
        let a = self.parse(&buf[..size]).state;
        let b = self.parse(&buf[size..]).state;
        let (target, generation) = match (a, b) {
            (SlotState::Valid { generation: ga }, SlotState::Valid { generation: gb }) => {
                if gb > ga {
                    (SlotId::A, gb)
                } else {
                    (SlotId::B, ga)
                }
            }
            (SlotState::Valid { generation }, _) => (SlotId::B, generation),
            (_, SlotState::Valid { generation }) => (SlotId::A, generation),
            (SlotState::Empty, SlotState::Empty) => (SlotId::A, 0),
            // The first write was cut short: there never was a header to
            // follow, so start in the empty slot and leave the torn one be.
            (SlotState::Torn, SlotState::Empty) => (SlotId::B, 0),
            (SlotState::Empty, SlotState::Torn) => (SlotId::A, 0),
            (a, b) => return Err(HeaderError::NoValidSlot { a, b }),
        };
        let Some(next) = generation.checked_add(1) else {
            return Err(HeaderError::GenerationExhausted);
        };
        self.write_slot(target, next, payload)?;
        self.file.sync_data()?;
        Ok(next)
    }

    /// Starts over deliberately: writes `payload` as generation 1 into slot
    /// A and zeroes slot B, then syncs. For a file whose header is lost
    /// ([`HeaderError::NoValidSlot`]) after the application has recovered
    /// by other means; it discards whatever the slots held.
    ///
    /// # Errors
    ///
    /// [`HeaderError::PayloadTooLarge`] (nothing written),
    /// [`HeaderError::Io`].
    ///
    /// ```
    /// let path = std::env::temp_dir().join(format!("strata-doc-hreset-{}", std::process::id()));
    /// let mut header = strata::io::DualHeader::open(&path, Default::default())?;
    /// header.write(b"a")?;
    /// header.write(b"b")?;
    /// header.reset(b"fresh")?;
    /// let h = header.read()?;
    /// assert_eq!((h.generation(), h.payload()), (1, &b"fresh"[..]));
    /// # std::fs::remove_file(&path)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn reset(&mut self, payload: &[u8]) -> Result<(), HeaderError> {
        self.check_fits(payload)?;
        // B first: if this is cut short, A still holds whatever it held.
        let zeros = vec![0u8; self.layout.slot_size];
        write_all_at(&self.file, &zeros, self.layout.slot_offset(SlotId::B))?;
        self.file.sync_data()?;
        self.write_slot(SlotId::A, 1, payload)?;
        self.file.sync_data()?;
        Ok(())
    }

    fn check_fits(&self, payload: &[u8]) -> Result<(), HeaderError> {
        let capacity = self.layout.capacity();
        if payload.len() > capacity {
            return Err(HeaderError::PayloadTooLarge {
                len: payload.len(),
                capacity,
            });
        }
        Ok(())
    }

    /// One write of exactly the slot's meaningful bytes (framing and
    /// payload, no padding), so that any prefix of it is a torn slot.
    fn write_slot(&self, slot: SlotId, generation: u64, payload: &[u8]) -> Result<(), HeaderError> {
        let bytes = encode_slot(&self.layout, generation, payload);
        write_all_at(&self.file, &bytes, self.layout.slot_offset(slot))?;
        Ok(())
    }

    /// Both slots in one read; bytes past the end of the file read as zero.
    fn read_slots(&self) -> Result<Vec<u8>, HeaderError> {
        let mut buf = vec![0u8; 2 * self.layout.slot_size];
        let mut filled = 0;
        while filled < buf.len() {
            match read_at(
                &self.file,
                &mut buf[filled..],
                self.layout.offset + filled as u64,
            ) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(err) if err.kind() == std::io::ErrorKind::Interrupted => {}
                Err(err) => return Err(err.into()),
            }
        }
        Ok(buf)
    }

    fn parse(&self, slot: &[u8]) -> Parsed {
        parse_slot(&self.layout, slot)
    }
}

impl fmt::Debug for DualHeader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DualHeader")
            .field("layout", &self.layout)
            .finish_non_exhaustive()
    }
}

/// Positional I/O: no shared file cursor, so `read(&self)` may run on
/// several threads at once.
#[cfg(unix)]
fn read_at(file: &File, buf: &mut [u8], at: u64) -> std::io::Result<usize> {
    std::os::unix::fs::FileExt::read_at(file, buf, at)
}

#[cfg(unix)]
fn write_all_at(file: &File, buf: &[u8], at: u64) -> std::io::Result<()> {
    std::os::unix::fs::FileExt::write_all_at(file, buf, at)
}

#[cfg(windows)]
fn read_at(file: &File, buf: &mut [u8], at: u64) -> std::io::Result<usize> {
    std::os::windows::fs::FileExt::seek_read(file, buf, at)
}

#[cfg(windows)]
fn write_all_at(file: &File, mut buf: &[u8], mut at: u64) -> std::io::Result<()> {
    while !buf.is_empty() {
        let n = std::os::windows::fs::FileExt::seek_write(file, buf, at)?;
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        buf = &buf[n..];
        at += n as u64;
    }
    Ok(())
}

#[cfg(not(any(unix, windows)))]
fn read_at(_: &File, _: &mut [u8], _: u64) -> std::io::Result<usize> {
    Err(std::io::ErrorKind::Unsupported.into())
}

#[cfg(not(any(unix, windows)))]
fn write_all_at(_: &File, _: &[u8], _: u64) -> std::io::Result<()> {
    Err(std::io::ErrorKind::Unsupported.into())
}

/// The bytes a slot write puts on disk.
fn encode_slot(layout: &HeaderLayout, generation: u64, payload: &[u8]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(FRAME + payload.len());
    bytes.extend_from_slice(&layout.magic.to_le_bytes());
    bytes.extend_from_slice(&layout.format_version.to_le_bytes());
    bytes.extend_from_slice(&generation.to_le_bytes());
    // `check_fits` and `validate` bound the length by MAX_SLOT_SIZE < u32::MAX.
    bytes.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    bytes.extend_from_slice(payload);
    let crc = crc32c::crc32c(&bytes);
    bytes.extend_from_slice(&crc.to_le_bytes());
    bytes
}

fn le_u32(bytes: &[u8], at: usize) -> u32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&bytes[at..at + 4]);
    u32::from_le_bytes(b)
}

fn le_u64(bytes: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(b)
}

/// Classifies one slot's bytes (`slot.len() == layout.slot_size`).
fn parse_slot(layout: &HeaderLayout, slot: &[u8]) -> Parsed {
    let torn = Parsed {
        state: SlotState::Torn,
        format_version: 0,
        payload: 0..0,
    };
    if slot.iter().all(|&b| b == 0) {
        return Parsed {
            state: SlotState::Empty,
            ..torn
        };
    }
    if le_u64(slot, 0) != layout.magic {
        return torn;
    }
    let len = le_u32(slot, 20) as usize;
    if len > layout.capacity() {
        return torn;
    }
    let end = PAYLOAD_AT + len;
    if crc32c::crc32c(&slot[..end]) != le_u32(slot, end) {
        return torn;
    }
    let generation = le_u64(slot, 12);
    if generation == 0 {
        // Never written by `write`, whose first generation is 1.
        return torn;
    }
    Parsed {
        state: SlotState::Valid { generation },
        format_version: le_u32(slot, 8),
        payload: PAYLOAD_AT..end,
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    fn layout() -> HeaderLayout {
        HeaderLayout::new().slot_size(64)
    }

    fn padded(bytes: &[u8], size: usize) -> Vec<u8> {
        let mut v = bytes.to_vec();
        v.resize(size, 0);
        v
    }

    #[test]
    fn encoded_slots_parse_back_and_every_flipped_bit_is_caught() {
        let l = layout();
        let bytes = encode_slot(&l, 9, b"payload");
        let p = parse_slot(&l, &padded(&bytes, 64));
        assert_eq!(p.state, SlotState::Valid { generation: 9 });
        assert_eq!(&bytes[p.payload.clone()], b"payload");
        for bit in 0..bytes.len() * 8 {
            let mut bad = bytes.clone();
            bad[bit / 8] ^= 1 << (bit % 8);
            assert_ne!(
                parse_slot(&l, &padded(&bad, 64)).state,
                SlotState::Valid { generation: 9 },
                "bit {bit}"
            );
        }
    }

    #[test]
    fn zeroes_are_empty_and_other_magic_is_torn() {
        let l = layout();
        assert_eq!(parse_slot(&l, &[0; 64]).state, SlotState::Empty);
        let other = encode_slot(&l.magic(7), 1, b"x");
        assert_eq!(parse_slot(&l, &padded(&other, 64)).state, SlotState::Torn);
    }

    #[test]
    fn a_length_past_the_slot_is_torn_not_a_panic() {
        let l = layout();
        let mut bytes = encode_slot(&l, 1, b"x");
        bytes[20..24].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(parse_slot(&l, &padded(&bytes, 64)).state, SlotState::Torn);
    }

    #[test]
    fn an_exhausted_generation_is_its_own_error_and_writes_nothing() {
        let path = std::env::temp_dir().join(format!(
            "strata-unit-genmax-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let l = layout();
        std::fs::write(&path, encode_slot(&l, u64::MAX, b"last")).unwrap();
        let before = std::fs::read(&path).unwrap();
        let mut h = DualHeader::open(&path, l).unwrap();
        assert!(matches!(
            h.write(b"one more"),
            Err(HeaderError::GenerationExhausted)
        ));
        assert_eq!(std::fs::read(&path).unwrap(), before);
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn layouts_are_validated() {
        assert!(
            HeaderLayout::new()
                .slot_size(HeaderLayout::MAX_SLOT_SIZE + 1)
                .validate()
                .is_err()
        );
        assert!(
            HeaderLayout::new()
                .slot_size(HeaderLayout::MAX_SLOT_SIZE)
                .validate()
                .is_ok()
        );
        assert!(HeaderLayout::new().slot_size(27).validate().is_err());
        assert!(HeaderLayout::new().magic(0).validate().is_err());
        assert!(HeaderLayout::new().offset(u64::MAX).validate().is_err());
        assert!(HeaderLayout::new().slot_size(28).validate().is_ok());
    }
}
