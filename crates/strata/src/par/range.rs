//! Parallel operations on integer ranges.

use std::fmt;
use std::ops::Range;

use super::collect::{LenGuard, SendPtr, Written};
use super::driver::{Fold, drive};
use super::slice::{Pieces, chunk_bounds, collect_map};

/// An integer type whose ranges can be split by index.
///
/// ```
/// use strata::par::ParRange;
/// assert_eq!((-3..3i8).par_map(|i| i * 2), vec![-6, -4, -2, 0, 2, 4]);
/// ```
pub trait RangeInteger: Copy + Send + Sync + 'static {
    /// `end - start` as a count of items (0 if empty).
    #[doc(hidden)]
    fn span(start: Self, end: Self) -> usize;
    /// `start + i`.
    #[doc(hidden)]
    fn nth(start: Self, i: usize) -> Self;
}

macro_rules! range_integer {
    ($($t:ty),*) => {$(
        impl RangeInteger for $t {
            #[inline]
            fn span(start: Self, end: Self) -> usize {
                if end <= start { 0 } else { (end as i128 - start as i128) as usize }
            }
            #[inline]
            fn nth(start: Self, i: usize) -> Self {
                (start as i128 + i as i128) as $t
            }
        }
    )*};
}
range_integer!(u8, u16, u32, u64, usize, i8, i16, i32, i64, isize);

/// Parallel operations on a `Range` of integers; see the [module docs](super).
///
/// ```
/// use strata::par::ParRange;
///
/// let squares = (0..5u64).par_map(|i| i * i);
/// assert_eq!(squares, vec![0, 1, 4, 9, 16]);
/// let evens = (0..10i32).par_filter(|i| i % 2 == 0);
/// assert_eq!(evens, vec![0, 2, 4, 6, 8]);
/// assert_eq!((1..101u32).par_reduce(|| 0, |a, b| a + b), 5050);
/// ```
pub trait ParRange<I: RangeInteger> {
    /// The range with splitting options.
    ///
    /// ```
    /// use strata::par::ParRange;
    /// assert_eq!((0..3u8).par().par_map(|i| i), vec![0, 1, 2]);
    /// ```
    fn par(&self) -> ParRangeWith<I>;

    /// `f` on every item, in parallel; results in order.
    ///
    /// ```
    /// use strata::par::ParRange;
    /// assert_eq!((0..3i32).par_map(|i| -i), vec![0, -1, -2]);
    /// ```
    fn par_map<U, F>(&self, f: F) -> Vec<U>
    where
        U: Send,
        F: Fn(I) -> U + Sync,
    {
        self.par().par_map(f)
    }

    /// `f` on every item, in parallel.
    ///
    /// ```
    /// use std::sync::atomic::{AtomicUsize, Ordering};
    /// use strata::par::ParRange;
    /// let n = AtomicUsize::new(0);
    /// (0..50usize).par_for_each(|_| { n.fetch_add(1, Ordering::Relaxed); });
    /// assert_eq!(n.into_inner(), 50);
    /// ```
    fn par_for_each<F>(&self, f: F)
    where
        F: Fn(I) + Sync,
    {
        self.par().par_for_each(f)
    }

    /// The items for which `keep` is true, in order.
    ///
    /// ```
    /// use strata::par::ParRange;
    /// assert_eq!((0..6u32).par_filter(|i| *i > 3), vec![4, 5]);
    /// ```
    fn par_filter<F>(&self, keep: F) -> Vec<I>
    where
        F: Fn(&I) -> bool + Sync,
    {
        self.par().par_filter(keep)
    }

    /// Reduces the items with the associative `op` and its neutral
    /// element `identity()`.
    ///
    /// ```
    /// use strata::par::ParRange;
    /// assert_eq!((0..5u64).par_reduce(|| 0, u64::max), 4);
    /// ```
    fn par_reduce<ID, OP>(&self, identity: ID, op: OP) -> I
    where
        ID: Fn() -> I + Sync,
        OP: Fn(I, I) -> I + Sync,
    {
        self.par().par_reduce(identity, op)
    }

    /// The range as consecutive sub-ranges of `size` items (the last may
    /// be shorter), each processed as one unit. A `size` of 0 is treated as
    /// 1, as for slices (see [`ParSlice::par_chunks`](super::ParSlice::par_chunks)).
    ///
    /// ```
    /// use strata::par::ParRange;
    /// assert_eq!((0..5u8).par_chunks(2).par_map(|r| r.end), vec![2, 4, 5]);
    /// assert_eq!((0..3u8).par_chunks(0).par_map(|r| r.len()), vec![1, 1, 1]);
    /// ```
    fn par_chunks(&self, size: usize) -> ParRangeChunks<I> {
        self.par().par_chunks(size)
    }

    /// Never split into pieces of fewer than `n` items.
    ///
    /// ```
    /// use strata::par::ParRange;
    /// assert_eq!((0..100u32).with_min_len(25).par_reduce(|| 0, |a, b| a + b), 4950);
    /// ```
    fn with_min_len(&self, n: usize) -> ParRangeWith<I> {
        self.par().with_min_len(n)
    }
}

impl<I: RangeInteger> ParRange<I> for Range<I> {
    fn par(&self) -> ParRangeWith<I> {
        ParRangeWith {
            start: self.start,
            len: I::span(self.start, self.end),
            min_len: 1,
        }
    }
}

/// A range with splitting options; has the same methods as [`ParRange`].
///
/// ```
/// use strata::par::ParRange;
/// let v = (0..1000u32).with_min_len(100).par_map(|i| i % 10);
/// assert_eq!(v.len(), 1000);
/// ```
#[derive(Clone, Copy)]
pub struct ParRangeWith<I> {
    start: I,
    len: usize,
    min_len: usize,
}

impl<I> fmt::Debug for ParRangeWith<I> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ParRangeWith")
            .field("len", &self.len)
            .field("min_len", &self.min_len)
            .finish()
    }
}

struct Map<'a, I, U, F> {
    start: I,
    f: &'a F,
    out: SendPtr<U>,
}

impl<I: RangeInteger, U: Send, F: Fn(I) -> U + Sync> Fold for Map<'_, I, U, F> {
    type Acc = Written<U>;
    fn start(&self, lo: usize, _: usize) -> Written<U> {
        // SAFETY: `lo <= len`, inside the output allocation.
        Written::empty(unsafe { self.out.0.add(lo) })
    }
    #[inline]
    fn fold(&self, acc: &mut Written<U>, lo: usize, hi: usize) {
        let base = acc.start;
        let mut n = LenGuard::new(&mut acc.len);
        for i in lo..hi {
            let v = (self.f)(I::nth(self.start, i));
            // SAFETY: this piece owns output indices `lo..hi`, in order.
            unsafe { base.add(n.local).write(v) };
            n.local += 1;
        }
    }
    fn combine(&self, l: Written<U>, r: Written<U>) -> Written<U> {
        l.merge(r)
    }
}

struct Each<'a, I, F> {
    start: I,
    f: &'a F,
}

impl<I: RangeInteger, F: Fn(I) + Sync> Fold for Each<'_, I, F> {
    type Acc = ();
    fn start(&self, _: usize, _: usize) {}
    #[inline]
    fn fold(&self, _: &mut (), lo: usize, hi: usize) {
        for i in lo..hi {
            (self.f)(I::nth(self.start, i));
        }
    }
    fn combine(&self, _: (), _: ()) {}
}

struct Keep<'a, I, F> {
    start: I,
    keep: &'a F,
}

impl<I: RangeInteger, F: Fn(&I) -> bool + Sync> Fold for Keep<'_, I, F> {
    type Acc = Pieces<I>;
    fn start(&self, lo: usize, hi: usize) -> Pieces<I> {
        // As for slices: start small, grow by doubling.
        Pieces(vec![Vec::with_capacity((hi - lo).min(1 << 12))])
    }
    #[inline]
    fn fold(&self, acc: &mut Pieces<I>, lo: usize, hi: usize) {
        let v = acc.0.last_mut().expect("one piece at least");
        for i in lo..hi {
            let x = I::nth(self.start, i);
            if (self.keep)(&x) {
                v.push(x);
            }
        }
    }
    fn combine(&self, mut l: Pieces<I>, r: Pieces<I>) -> Pieces<I> {
        l.0.extend(r.0);
        l
    }
}

struct Reduce<'a, I, ID, OP> {
    start: I,
    identity: &'a ID,
    op: &'a OP,
}

impl<I: RangeInteger, ID: Fn() -> I + Sync, OP: Fn(I, I) -> I + Sync> Fold
    for Reduce<'_, I, ID, OP>
{
    type Acc = I;
    fn start(&self, _: usize, _: usize) -> I {
        (self.identity)()
    }
    #[inline]
    fn fold(&self, acc: &mut I, lo: usize, hi: usize) {
        let mut a = *acc;
        for i in lo..hi {
            a = (self.op)(a, I::nth(self.start, i));
        }
        *acc = a;
    }
    fn combine(&self, l: I, r: I) -> I {
        (self.op)(l, r)
    }
}

impl<I: RangeInteger> ParRangeWith<I> {
    /// Never split into pieces of fewer than `n` items.
    ///
    /// ```
    /// use strata::par::ParRange;
    /// let r = (0..10u8).par().with_min_len(4).par_reduce(|| 0, |a, b| a + b);
    /// assert_eq!(r, 45);
    /// ```
    pub fn with_min_len(self, n: usize) -> Self {
        Self {
            min_len: n.max(1),
            ..self
        }
    }

    /// See [`ParRange::par_map`].
    ///
    /// ```
    /// use strata::par::ParRange;
    /// assert_eq!((1..4u64).par().par_map(|i| i * i), vec![1, 4, 9]);
    /// ```
    pub fn par_map<U: Send, F: Fn(I) -> U + Sync>(self, f: F) -> Vec<U> {
        let start = self.start;
        collect_map(self.len, self.min_len, |out| Map { start, f: &f, out })
    }

    /// See [`ParRange::par_for_each`].
    ///
    /// ```
    /// use std::sync::atomic::{AtomicU64, Ordering};
    /// use strata::par::ParRange;
    /// let sum = AtomicU64::new(0);
    /// (0..100u64).par().par_for_each(|i| { sum.fetch_add(i, Ordering::Relaxed); });
    /// assert_eq!(sum.into_inner(), 4950);
    /// ```
    pub fn par_for_each<F: Fn(I) + Sync>(self, f: F) {
        drive(
            &Each {
                start: self.start,
                f: &f,
            },
            self.len,
            self.min_len,
        );
    }

    /// See [`ParRange::par_filter`].
    ///
    /// ```
    /// use strata::par::ParRange;
    /// assert_eq!((0..10i64).par().par_filter(|i| i % 3 == 0), vec![0, 3, 6, 9]);
    /// ```
    pub fn par_filter<F: Fn(&I) -> bool + Sync>(self, keep: F) -> Vec<I> {
        let fold = Keep {
            start: self.start,
            keep: &keep,
        };
        drive(&fold, self.len, self.min_len).concat()
    }

    /// See [`ParRange::par_reduce`].
    ///
    /// ```
    /// use strata::par::ParRange;
    /// assert_eq!((1..6u32).par().par_reduce(|| 1, |a, b| a * b), 120);
    /// ```
    pub fn par_reduce<ID, OP>(self, identity: ID, op: OP) -> I
    where
        ID: Fn() -> I + Sync,
        OP: Fn(I, I) -> I + Sync,
    {
        let fold = Reduce {
            start: self.start,
            identity: &identity,
            op: &op,
        };
        drive(&fold, self.len, self.min_len)
    }

    /// See [`ParRange::par_chunks`] (a `size` of 0 is treated as 1).
    ///
    /// ```
    /// use strata::par::ParRange;
    /// let lens = (0..10usize).par().par_chunks(3).par_map(|r| r.len());
    /// assert_eq!(lens, vec![3, 3, 3, 1]);
    /// ```
    pub fn par_chunks(self, size: usize) -> ParRangeChunks<I> {
        let size = size.max(1);
        ParRangeChunks {
            start: self.start,
            len: self.len,
            size,
            min_len: self.min_len.div_ceil(size),
        }
    }
}

/// A range as consecutive sub-ranges of a fixed size.
///
/// ```
/// use strata::par::ParRange;
///
/// let sums = (0..10u32).par_chunks(4).par_map(|r| r.sum::<u32>());
/// assert_eq!(sums, vec![6, 22, 17]);
/// ```
#[derive(Clone, Copy)]
pub struct ParRangeChunks<I> {
    start: I,
    len: usize,
    size: usize,
    min_len: usize,
}

impl<I> fmt::Debug for ParRangeChunks<I> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ParRangeChunks")
            .field("len", &self.len)
            .field("size", &self.size)
            .finish()
    }
}

impl<I: RangeInteger> ParRangeChunks<I> {
    fn chunk(&self, c: usize) -> Range<I> {
        let r = chunk_bounds(c, self.size, self.len);
        I::nth(self.start, r.start)..I::nth(self.start, r.end)
    }

    /// `f` on every sub-range, in parallel; results in order.
    ///
    /// ```
    /// use strata::par::ParRange;
    /// let firsts = (0..9u16).par_chunks(4).par_map(|r| r.start);
    /// assert_eq!(firsts, vec![0, 4, 8]);
    /// ```
    pub fn par_map<U: Send, F: Fn(Range<I>) -> U + Sync>(self, f: F) -> Vec<U> {
        let n = self.len.div_ceil(self.size);
        let this = self;
        (0..n)
            .with_min_len(self.min_len)
            .par_map(|c| f(this.chunk(c)))
    }

    /// `f` on every sub-range, in parallel.
    ///
    /// ```
    /// use std::sync::atomic::{AtomicUsize, Ordering};
    /// use strata::par::ParRange;
    /// let n = AtomicUsize::new(0);
    /// (0..1000u32).par_chunks(64).par_for_each(|r| { n.fetch_add(r.len(), Ordering::Relaxed); });
    /// assert_eq!(n.into_inner(), 1000);
    /// ```
    pub fn par_for_each<F: Fn(Range<I>) + Sync>(self, f: F) {
        let n = self.len.div_ceil(self.size);
        let this = self;
        (0..n)
            .with_min_len(self.min_len)
            .par_for_each(|c| f(this.chunk(c)));
    }
}
