//! Writing results straight into their final place, panic-safely.

use std::marker::PhantomData;
use std::mem::ManuallyDrop;

/// A pointer that may be sent to the worker writing through it; every
/// writer gets a disjoint index range.
pub(crate) struct SendPtr<T>(pub(crate) *mut T);

impl<T> Clone for SendPtr<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for SendPtr<T> {}
// SAFETY: writers use disjoint ranges (the driver splits the index space),
// and `T: Send` is required of every value written.
unsafe impl<T: Send> Send for SendPtr<T> {}
// SAFETY: as above.
unsafe impl<T: Send> Sync for SendPtr<T> {}

/// `len` initialised values from `start`: an accumulator of the map fold.
/// Dropped (on a panic somewhere), it drops its values; on success the
/// pieces are merged and finally forgotten into the `Vec`.
pub(crate) struct Written<T> {
    pub(crate) start: *mut T,
    pub(crate) len: usize,
    _owns: PhantomData<T>,
}

// SAFETY: it owns `len` values of a Send `T`.
unsafe impl<T: Send> Send for Written<T> {}

impl<T> Written<T> {
    pub(crate) fn empty(start: *mut T) -> Self {
        Self {
            start,
            len: 0,
            _owns: PhantomData,
        }
    }

    /// Merges with the range written right after this one.
    pub(crate) fn merge(self, right: Self) -> Self {
        let (l, r) = (ManuallyDrop::new(self), ManuallyDrop::new(right));
        // SAFETY: adjacency is the driver's invariant (checked in debug).
        debug_assert_eq!(unsafe { l.start.add(l.len) }, r.start);
        Self {
            start: l.start,
            len: l.len + r.len,
            _owns: PhantomData,
        }
    }

    /// Gives up ownership (the values now belong to the `Vec`).
    pub(crate) fn release(self) -> usize {
        ManuallyDrop::new(self).len
    }
}

impl<T> Drop for Written<T> {
    fn drop(&mut self) {
        // SAFETY: exactly `len` values from `start` were written and are
        // owned by this piece.
        unsafe { std::ptr::drop_in_place(std::ptr::slice_from_raw_parts_mut(self.start, self.len)) }
    }
}

/// Counts values written in a loop in a local (so the loop can vectorize:
/// no store through `&mut len` per element) and adds them to the piece's
/// length when dropped — also when the mapping closure panics mid-block,
/// so the values written so far are dropped with the piece (std's
/// `SetLenOnDrop` pattern).
pub(crate) struct LenGuard<'a> {
    len: &'a mut usize,
    pub(crate) local: usize,
}

impl<'a> LenGuard<'a> {
    pub(crate) fn new(len: &'a mut usize) -> Self {
        let local = *len;
        Self { len, local }
    }
}

impl Drop for LenGuard<'_> {
    fn drop(&mut self) {
        *self.len = self.local;
    }
}
