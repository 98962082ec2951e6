//! Code layout of release builds: the functions named in `layout/code-order.txt` (those a
//! node runs to start and to serve, hottest first) are linked first and together, so the
//! pages a running node maps hold little else (see `layout/README.md`). Only for release
//! builds on x86_64 Linux with the toolchain's own linker (rust-lld, the default since Rust
//! 1.90), which knows `--symbol-ordering-file`; everywhere else the build is unchanged.

use std::path::Path;

fn main() {
    let order = Path::new("layout/code-order.txt");
    println!("cargo:rerun-if-changed={}", order.display());
    println!("cargo:rerun-if-env-changed=EDGEWARD_NO_CODE_ORDER");
    let release = std::env::var("PROFILE").as_deref() == Ok("release");
    let target = std::env::var("TARGET").unwrap_or_default();
    // A linker chosen in cargo's config may not be lld.
    let own_linker = std::env::var_os("RUSTC_LINKER").is_none();
    let wanted = std::env::var_os("EDGEWARD_NO_CODE_ORDER").is_none();
    if release && target == "x86_64-unknown-linux-gnu" && own_linker && wanted && order.is_file() {
        let path = std::fs::canonicalize(order).expect("layout/code-order.txt");
        println!(
            "cargo:rustc-link-arg-bins=-Wl,--symbol-ordering-file={}",
            path.display()
        );
        // Functions renamed or gone since the list was made are skipped, not errors.
        println!("cargo:rustc-link-arg-bins=-Wl,--no-warn-symbol-ordering");
    }
}
