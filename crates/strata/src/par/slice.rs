//! Parallel operations on slices (and so on `Vec`s).

use std::fmt;

use super::collect::{LenGuard, SendPtr, Written};
use super::driver::{Fold, drive};

/// Parallel operations on a slice; see the [module docs](super).
///
/// Implemented for `[T]`, so it is available on arrays, `Vec`s and
/// anything else that derefs to a slice. Results come back in input order.
///
/// ```
/// use strata::par::ParSlice;
///
/// let v: Vec<u64> = (1..=1000).collect();
/// assert_eq!(v.par_map(|x| x * 2)[999], 2000);
/// assert_eq!(v.par_reduce(|| 0, |a, b| a + b), 500_500);
/// assert_eq!(v.par_filter(|x| *x % 100 == 0).len(), 10);
/// ```
pub trait ParSlice<T: Sync> {
    /// The slice with splitting options (see [`with_min_len`](ParSlice::with_min_len)).
    ///
    /// ```
    /// use strata::par::ParSlice;
    /// let v = [5, 6];
    /// assert_eq!(v.par().par_map(|x| x - 5), vec![0, 1]);
    /// ```
    fn par(&self) -> Par<'_, T>;

    /// `f` on every element, in parallel; results in input order.
    ///
    /// ```
    /// use strata::par::ParSlice;
    /// assert_eq!(vec![1, 2].par_map(|x| x + 1), vec![2, 3]);
    /// ```
    fn par_map<U, F>(&self, f: F) -> Vec<U>
    where
        U: Send,
        F: Fn(&T) -> U + Sync,
    {
        self.par().par_map(f)
    }

    /// `f` on every element, in parallel.
    ///
    /// ```
    /// use std::sync::atomic::{AtomicU32, Ordering};
    /// use strata::par::ParSlice;
    /// let n = AtomicU32::new(0);
    /// vec![1u32; 64].par_for_each(|x| { n.fetch_add(*x, Ordering::Relaxed); });
    /// assert_eq!(n.into_inner(), 64);
    /// ```
    fn par_for_each<F>(&self, f: F)
    where
        F: Fn(&T) + Sync,
    {
        self.par().par_for_each(f)
    }

    /// Clones of the elements for which `keep` is true, in input order.
    ///
    /// ```
    /// use strata::par::ParSlice;
    /// assert_eq!([1, 2, 3, 4].par_filter(|x| x % 2 == 0), vec![2, 4]);
    /// ```
    fn par_filter<F>(&self, keep: F) -> Vec<T>
    where
        T: Clone + Send,
        F: Fn(&T) -> bool + Sync,
    {
        self.par().par_filter(keep)
    }

    /// Reduces the elements with `op`, an associative operation whose
    /// neutral element `identity()` returns (it seeds every split piece).
    ///
    /// ```
    /// use strata::par::ParSlice;
    /// assert_eq!([1u64, 2, 3].par_reduce(|| 0, |a, b| a + b), 6);
    /// ```
    fn par_reduce<ID, OP>(&self, identity: ID, op: OP) -> T
    where
        T: Clone + Send,
        ID: Fn() -> T + Sync,
        OP: Fn(T, T) -> T + Sync,
    {
        self.par().par_reduce(identity, op)
    }

    /// The slice as chunks of `size` elements (the last may be shorter), to
    /// process each chunk as a unit.
    ///
    /// A `size` of 0 is treated as 1. std's `chunks` and rayon panic there;
    /// strata does not panic on a caller's mistake, and no chunk can be
    /// empty, so the nearest valid size is used — the same rule as
    /// `with_min_len(0)`. Every element is still processed exactly once, in
    /// order; a size computed as `len / k` that rounds down to 0 on a small
    /// input just gives the finest chunks.
    ///
    /// ```
    /// use strata::par::ParSlice;
    /// assert_eq!([1, 2, 3].par_chunks(2).par_map(|c| c.len()), vec![2, 1]);
    /// assert_eq!([1, 2, 3].par_chunks(0).par_map(|c| c.len()), vec![1, 1, 1]);
    /// ```
    fn par_chunks(&self, size: usize) -> ParChunks<'_, T> {
        self.par().par_chunks(size)
    }

    /// Never split into pieces of fewer than `n` elements (for elements so
    /// cheap that even lazy splitting is not worth it below `n`).
    ///
    /// ```
    /// use strata::par::ParSlice;
    /// assert_eq!(vec![2u8; 100].with_min_len(10).par_map(|x| x * 2), vec![4u8; 100]);
    /// ```
    fn with_min_len(&self, n: usize) -> Par<'_, T> {
        self.par().with_min_len(n)
    }
}

impl<T: Sync> ParSlice<T> for [T] {
    fn par(&self) -> Par<'_, T> {
        Par {
            slice: self,
            min_len: 1,
        }
    }
}

/// A slice with splitting options; has the same methods as [`ParSlice`].
///
/// ```
/// use strata::par::ParSlice;
///
/// let v = vec![1u32; 10_000];
/// let sum = v.with_min_len(1024).par_reduce(|| 0, |a, b| a + b);
/// assert_eq!(sum, 10_000);
/// ```
pub struct Par<'a, T> {
    slice: &'a [T],
    min_len: usize,
}

impl<T> Clone for Par<'_, T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for Par<'_, T> {}

impl<T> fmt::Debug for Par<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Par")
            .field("len", &self.slice.len())
            .field("min_len", &self.min_len)
            .finish()
    }
}

struct MapFold<'a, T, U, F> {
    src: &'a [T],
    f: &'a F,
    out: SendPtr<U>,
}

impl<T: Sync, U: Send, F: Fn(&T) -> U + Sync> Fold for MapFold<'_, T, U, F> {
    type Acc = Written<U>;
    fn start(&self, lo: usize, _hi: usize) -> Written<U> {
        // SAFETY: `lo <= len`, inside the output allocation.
        Written::empty(unsafe { self.out.0.add(lo) })
    }
    #[inline]
    fn fold(&self, acc: &mut Written<U>, lo: usize, hi: usize) {
        let base = acc.start;
        let mut n = LenGuard::new(&mut acc.len);
        for x in &self.src[lo..hi] {
            // SAFETY: this piece owns output indices `lo..hi`, written in
            // order, each once; the guard counts them for panic cleanup.
            unsafe { base.add(n.local).write((self.f)(x)) };
            n.local += 1;
        }
    }
    fn combine(&self, l: Written<U>, r: Written<U>) -> Written<U> {
        l.merge(r)
    }
}

/// Maps `len` units into a new `Vec` through `fold` (shared by slices,
/// chunks and ranges).
pub(crate) fn collect_map<U: Send, M>(
    len: usize,
    min_len: usize,
    make: impl FnOnce(SendPtr<U>) -> M,
) -> Vec<U>
where
    M: Fold<Acc = Written<U>>,
{
    let mut out: Vec<U> = Vec::with_capacity(len);
    let fold = make(SendPtr(out.as_mut_ptr()));
    let written = drive(&fold, len, min_len);
    debug_assert_eq!(written.start, out.as_mut_ptr());
    let n = written.release();
    assert_eq!(n, len, "strata par: a map piece went missing");
    // SAFETY: all `len` values are initialised and now owned by `out`.
    unsafe { out.set_len(n) };
    out
}

struct ForEach<'a, T, F> {
    src: &'a [T],
    f: &'a F,
}

impl<T: Sync, F: Fn(&T) + Sync> Fold for ForEach<'_, T, F> {
    type Acc = ();
    fn start(&self, _: usize, _: usize) {}
    #[inline]
    fn fold(&self, _: &mut (), lo: usize, hi: usize) {
        self.src[lo..hi].iter().for_each(self.f);
    }
    fn combine(&self, _: (), _: ()) {}
}

struct Reduce<'a, T, ID, OP> {
    src: &'a [T],
    identity: &'a ID,
    op: &'a OP,
}

impl<T, ID, OP> Fold for Reduce<'_, T, ID, OP>
where
    T: Clone + Send + Sync,
    ID: Fn() -> T + Sync,
    OP: Fn(T, T) -> T + Sync,
{
    type Acc = Option<T>;
    fn start(&self, _: usize, _: usize) -> Option<T> {
        Some((self.identity)())
    }
    #[inline]
    fn fold(&self, acc: &mut Option<T>, lo: usize, hi: usize) {
        let a = acc.take().expect("reduce accumulator");
        *acc = Some(self.src[lo..hi].iter().cloned().fold(a, self.op));
    }
    fn combine(&self, l: Option<T>, r: Option<T>) -> Option<T> {
        match (l, r) {
            (Some(l), Some(r)) => Some((self.op)(l, r)),
            (l, r) => l.or(r),
        }
    }
}

struct Filter<'a, T, F> {
    src: &'a [T],
    keep: &'a F,
}

impl<T: Clone + Send + Sync, F: Fn(&T) -> bool + Sync> Fold for Filter<'_, T, F> {
    type Acc = Pieces<T>;
    fn start(&self, lo: usize, hi: usize) -> Pieces<T> {
        // A modest start: pieces split off near the end are small, and a
        // big piece grows by doubling (large reallocations remap pages
        // rather than copy them).
        Pieces(vec![Vec::with_capacity((hi - lo).min(1 << 12))])
    }
    #[inline]
    fn fold(&self, acc: &mut Pieces<T>, lo: usize, hi: usize) {
        let v = acc.0.last_mut().expect("one piece at least");
        for x in &self.src[lo..hi] {
            if (self.keep)(x) {
                v.push(x.clone());
            }
        }
    }
    fn combine(&self, mut l: Pieces<T>, r: Pieces<T>) -> Pieces<T> {
        l.0.extend(r.0);
        l
    }
}

/// Output of a filter: one `Vec` per split piece, in order.
pub(crate) struct Pieces<T>(pub(crate) Vec<Vec<T>>);

impl<T: Send> Pieces<T> {
    /// Concatenates the pieces: the first one is grown in place (a large
    /// reallocation remaps its pages instead of copying them) and the
    /// others are copied into it in parallel.
    pub(crate) fn concat(self) -> Vec<T> {
        let mut pieces = self.0;
        pieces.retain(|p| !p.is_empty());
        if pieces.len() <= 1 {
            return pieces.pop().unwrap_or_default();
        }
        let mut rest = pieces.split_off(1);
        let mut out = pieces.pop().expect("two pieces at least");
        let first = out.len();
        let total = first + rest.iter().map(Vec::len).sum::<usize>();
        out.reserve_exact(total - first);
        let dst = SendPtr(out.as_mut_ptr());
        let mut offsets = Vec::with_capacity(rest.len());
        let mut at = first;
        for p in &rest {
            offsets.push(at);
            at += p.len();
        }
        fn copy_all<T: Send>(pieces: &mut [Vec<T>], offsets: &[usize], dst: SendPtr<T>) {
            if pieces.len() == 1 {
                let p = &mut pieces[0];
                // SAFETY: `dst + offset .. + len` is this piece's disjoint
                // slot in `out`'s spare capacity; the values move, so the
                // piece forgets them.
                unsafe {
                    std::ptr::copy_nonoverlapping(p.as_ptr(), dst.0.add(offsets[0]), p.len());
                    p.set_len(0);
                }
                return;
            }
            let mid = pieces.len() / 2;
            let (pl, pr) = pieces.split_at_mut(mid);
            let (ol, or) = offsets.split_at(mid);
            crate::runtime::join(|| copy_all(pl, ol, dst), || copy_all(pr, or, dst));
        }
        copy_all(&mut rest, &offsets, dst);
        // SAFETY: slots `first..total` were each written exactly once and
        // `0..first` were initialised already.
        unsafe { out.set_len(total) };
        out
    }
}

impl<'a, T: Sync> Par<'a, T> {
    /// Never split into pieces of fewer than `n` elements.
    ///
    /// ```
    /// use strata::par::ParSlice;
    /// let v = [1u8; 300];
    /// assert_eq!(v.par().with_min_len(50).par_map(|x| x + 1), vec![2u8; 300]);
    /// ```
    pub fn with_min_len(self, n: usize) -> Self {
        Self {
            min_len: n.max(1),
            ..self
        }
    }

    /// See [`ParSlice::par_map`].
    ///
    /// ```
    /// use strata::par::ParSlice;
    /// let v = [1, 2, 3];
    /// assert_eq!(v.par().par_map(|x| x * 10), vec![10, 20, 30]);
    /// ```
    pub fn par_map<U, F>(self, f: F) -> Vec<U>
    where
        U: Send,
        F: Fn(&T) -> U + Sync,
    {
        let src = self.slice;
        collect_map(src.len(), self.min_len, |out| MapFold { src, f: &f, out })
    }

    /// See [`ParSlice::par_for_each`].
    ///
    /// ```
    /// use std::sync::atomic::{AtomicI32, Ordering};
    /// use strata::par::ParSlice;
    /// let total = AtomicI32::new(0);
    /// [4, 5, 6].par().par_for_each(|x| { total.fetch_add(*x, Ordering::Relaxed); });
    /// assert_eq!(total.into_inner(), 15);
    /// ```
    pub fn par_for_each<F>(self, f: F)
    where
        F: Fn(&T) + Sync,
    {
        let fold = ForEach {
            src: self.slice,
            f: &f,
        };
        drive(&fold, self.slice.len(), self.min_len);
    }

    /// See [`ParSlice::par_filter`].
    ///
    /// ```
    /// use strata::par::ParSlice;
    /// let v = vec!["a", "bb", "ccc"];
    /// assert_eq!(v.par().par_filter(|s| s.len() != 2), vec!["a", "ccc"]);
    /// ```
    pub fn par_filter<F>(self, keep: F) -> Vec<T>
    where
        T: Clone + Send,
        F: Fn(&T) -> bool + Sync,
    {
        let fold = Filter {
            src: self.slice,
            keep: &keep,
        };
        drive(&fold, self.slice.len(), self.min_len).concat()
    }

    /// See [`ParSlice::par_reduce`].
    ///
    /// ```
    /// use strata::par::ParSlice;
    /// let v = vec![3, 9, 4];
    /// assert_eq!(v.par().par_reduce(|| i32::MIN, i32::max), 9);
    /// ```
    pub fn par_reduce<ID, OP>(self, identity: ID, op: OP) -> T
    where
        T: Clone + Send,
        ID: Fn() -> T + Sync,
        OP: Fn(T, T) -> T + Sync,
    {
        let fold = Reduce {
            src: self.slice,
            identity: &identity,
            op: &op,
        };
        drive(&fold, self.slice.len(), self.min_len).unwrap_or_else(&identity)
    }

    /// See [`ParSlice::par_chunks`] (a `size` of 0 is treated as 1).
    ///
    /// ```
    /// use strata::par::ParSlice;
    /// let v: Vec<u8> = (0..7).collect();
    /// assert_eq!(v.par().par_chunks(3).par_map(|c| c.len()), vec![3, 3, 1]);
    /// ```
    pub fn par_chunks(self, size: usize) -> ParChunks<'a, T> {
        let size = size.max(1);
        ParChunks {
            slice: self.slice,
            size,
            min_len: self.min_len.div_ceil(size),
        }
    }
}

/// A slice as chunks of a fixed size, each processed as one unit.
///
/// ```
/// use strata::par::ParSlice;
///
/// let v: Vec<u32> = (0..10).collect();
/// let sums = v.par_chunks(4).par_map(|c| c.iter().sum::<u32>());
/// assert_eq!(sums, vec![6, 22, 17]);
/// ```
pub struct ParChunks<'a, T> {
    slice: &'a [T],
    size: usize,
    min_len: usize,
}

impl<T> fmt::Debug for ParChunks<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ParChunks")
            .field("len", &self.slice.len())
            .field("size", &self.size)
            .finish()
    }
}

struct ChunkMap<'a, T, U, F> {
    src: &'a [T],
    size: usize,
    f: &'a F,
    out: SendPtr<U>,
}

impl<T: Sync, U: Send, F: Fn(&[T]) -> U + Sync> Fold for ChunkMap<'_, T, U, F> {
    type Acc = Written<U>;
    fn start(&self, lo: usize, _: usize) -> Written<U> {
        // SAFETY: `lo <= chunks`, inside the output allocation.
        Written::empty(unsafe { self.out.0.add(lo) })
    }
    fn fold(&self, acc: &mut Written<U>, lo: usize, hi: usize) {
        let base = acc.start;
        let mut n = LenGuard::new(&mut acc.len);
        for c in lo..hi {
            let v = (self.f)(&self.src[chunk_bounds(c, self.size, self.src.len())]);
            // SAFETY: as in `MapFold::fold`.
            unsafe { base.add(n.local).write(v) };
            n.local += 1;
        }
    }
    fn combine(&self, l: Written<U>, r: Written<U>) -> Written<U> {
        l.merge(r)
    }
}

/// Units `lo..hi` of chunk `c` of `len` units in chunks of `size`. `c *
/// size` is below `len` for every chunk; the end saturates (a huge `size`,
/// or a slice of zero-sized values, could overflow otherwise).
#[inline]
pub(crate) fn chunk_bounds(c: usize, size: usize, len: usize) -> std::ops::Range<usize> {
    let lo = c * size;
    lo..lo.saturating_add(size).min(len)
}

impl<T: Sync> ParChunks<'_, T> {
    fn count(&self) -> usize {
        self.slice.len().div_ceil(self.size)
    }

    /// Never split into pieces of fewer than `n` chunks.
    ///
    /// ```
    /// use strata::par::ParSlice;
    /// let v = vec![1u64; 1000];
    /// let sums = v.par_chunks(10).with_min_len(8).par_map(|c| c.iter().sum::<u64>());
    /// assert_eq!(sums, vec![10; 100]);
    /// ```
    pub fn with_min_len(self, n: usize) -> Self {
        Self {
            min_len: n.max(1),
            ..self
        }
    }

    /// `f` on every chunk, in parallel; results in chunk order.
    ///
    /// ```
    /// use strata::par::ParSlice;
    /// let v = [1, 2, 3, 4, 5];
    /// assert_eq!(v.par_chunks(2).par_map(|c| c.to_vec()), vec![vec![1, 2], vec![3, 4], vec![5]]);
    /// ```
    pub fn par_map<U, F>(self, f: F) -> Vec<U>
    where
        U: Send,
        F: Fn(&[T]) -> U + Sync,
    {
        let (src, size) = (self.slice, self.size);
        collect_map(self.count(), self.min_len, |out| ChunkMap {
            src,
            size,
            f: &f,
            out,
        })
    }

    /// `f` on every chunk, in parallel.
    ///
    /// ```
    /// use std::sync::atomic::{AtomicUsize, Ordering};
    /// use strata::par::ParSlice;
    /// let chunks = AtomicUsize::new(0);
    /// [0u8; 10].par_chunks(4).par_for_each(|_| { chunks.fetch_add(1, Ordering::Relaxed); });
    /// assert_eq!(chunks.into_inner(), 3);
    /// ```
    pub fn par_for_each<F>(self, f: F)
    where
        F: Fn(&[T]) + Sync,
    {
        struct ChunkEach<'a, T, F> {
            src: &'a [T],
            size: usize,
            f: &'a F,
        }
        impl<T: Sync, F: Fn(&[T]) + Sync> Fold for ChunkEach<'_, T, F> {
            type Acc = ();
            fn start(&self, _: usize, _: usize) {}
            fn fold(&self, _: &mut (), lo: usize, hi: usize) {
                for c in lo..hi {
                    (self.f)(&self.src[chunk_bounds(c, self.size, self.src.len())]);
                }
            }
            fn combine(&self, _: (), _: ()) {}
        }
        let fold = ChunkEach {
            src: self.slice,
            size: self.size,
            f: &f,
        };
        drive(&fold, self.count(), self.min_len);
    }
}
