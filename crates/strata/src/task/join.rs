//! `join3` and `join_all`: the seeds' `plet`.

use crate::runtime::join;

/// Runs three closures, potentially in parallel, and returns all results
/// (see [`join`](crate::join)).
///
/// ```
/// let (a, b, c) = strata::task::join3(|| 1, || "two", || 3.0);
/// assert_eq!((a, b, c), (1, "two", 3.0));
/// ```
pub fn join3<A, B, C, RA, RB, RC>(a: A, b: B, c: C) -> (RA, RB, RC)
where
    A: FnOnce() -> RA + Send,
    B: FnOnce() -> RB + Send,
    C: FnOnce() -> RC + Send,
    RA: Send,
    RB: Send,
    RC: Send,
{
    let (ra, (rb, rc)) = join(a, || join(b, c));
    (ra, rb, rc)
}

/// Runs every closure of `iter`, potentially in parallel, and returns their
/// results in the same order (a `plet` over any number of bindings).
///
/// ```
/// let jobs: Vec<_> = (0..10u64).map(|i| move || i * i).collect();
/// let squares = strata::task::join_all(jobs);
/// assert_eq!(squares, (0..10).map(|i| i * i).collect::<Vec<u64>>());
/// ```
pub fn join_all<I, F, T>(iter: I) -> Vec<T>
where
    I: IntoIterator<Item = F>,
    F: FnOnce() -> T + Send,
    T: Send,
{
    let mut fs: Vec<Option<F>> = iter.into_iter().map(Some).collect();
    let mut out: Vec<Option<T>> = std::iter::repeat_with(|| None).take(fs.len()).collect();
    fn go<F: FnOnce() -> T + Send, T: Send>(fs: &mut [Option<F>], out: &mut [Option<T>]) {
        match fs.len() {
            0 => {}
            1 => out[0] = fs[0].take().map(|f| f()),
            n => {
                let (fl, fr) = fs.split_at_mut(n / 2);
                let (ol, or) = out.split_at_mut(n / 2);
                join(|| go(fl, ol), || go(fr, or));
            }
        }
    }
    go(&mut fs, &mut out);
    out.into_iter()
        .map(|v| v.expect("every closure ran"))
        .collect()
}
