//! Compile-fail tests: mistakes strata turns into type errors.
//!
//! Each file in `tests/ui/` must fail to compile with the error recorded
//! next to it in a `.stderr` file. Regenerate those with
//! `TRYBUILD=overwrite cargo test -p strata --test compile_fail` after a
//! deliberate change, and review the diff.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/*.rs");
}
