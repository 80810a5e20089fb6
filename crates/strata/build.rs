//! Decides once whether lock-order checking is compiled in, so the rest of the
//! crate tests a single `cfg(strata_checked)` instead of repeating the rule.

fn main() {
    println!("cargo:rustc-check-cfg=cfg(strata_checked)");
    println!("cargo:rerun-if-changed=build.rs");
    let debug = std::env::var_os("CARGO_CFG_DEBUG_ASSERTIONS").is_some();
    let checked = std::env::var_os("CARGO_FEATURE_CHECKED").is_some();
    let unchecked = std::env::var_os("CARGO_FEATURE_UNCHECKED").is_some();
    if (debug || checked) && !unchecked {
        println!("cargo:rustc-cfg=strata_checked");
    }
}
