//! Link settings of the `pushguard` binary.

use std::env;
use std::path::Path;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=PUSHGUARD_PIE");
    let linux_gnu = env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux")
        && env::var("CARGO_CFG_TARGET_ENV").as_deref() == Ok("gnu");
    if !linux_gnu {
        return;
    }
    if env::var_os("PUSHGUARD_PIE").is_some_and(|v| v != "0") {
        // A position-independent binary, as the toolchain links it by
        // default, with its 56,000 relative relocations packed (DT_RELR,
        // GNU ld 2.38 and glibc 2.36 or later).
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    } else {
        // A fixed-address binary: nothing to relocate at start. A position-
        // independent one has the dynamic loader write every page of its
        // 1.4 MB of relocated read-only data on every start, which is most
        // of what a short command such as `pushguard --version` costs (535
        // page faults against 156). The shared libraries are still placed
        // at random addresses; `PUSHGUARD_PIE=1 cargo build` links a
        // position-independent binary instead.
        println!("cargo:rustc-link-arg-bins=-no-pie");
    }
    layout();
}

/// The functions that start-up and an idle runner execute, placed together
/// at the start of .text: `layout.order` (written by `scripts/layout`) is
/// handed to the linker as an lld symbol ordering file.
///
/// The kernel maps a binary's code 64 KB around each page fault, so code
/// that runs scattered over the whole .text keeps most of it resident: the
/// functions listed (about 3,000, 2.9 MB) lay in 129 windows of 64 KB of the
/// 10.4 MB of .text, in 48 once ordered. An idle `pushguard run` with 100
/// jobs resides in 7.4 MB instead of 12.6 MB (VmRSS, medians of 15 starts;
/// its file-backed pages 6.7 MB instead of 11.8 MB); `pushguard --version`
/// takes 133 page faults instead of 143, `exec --no-state -- true` 250
/// instead of 280.
///
/// Only where lld is known to be the linker: a release build for
/// x86_64-unknown-linux-gnu with Rust 1.90 or later (which links that target
/// with rust-lld by default), and nothing in the flags, Cargo's
/// configuration or the environment that picks another linker (`-C linker`,
/// its flavor or features, `-fuse-ld`): GNU ld has no
/// --symbol-ordering-file, and the link would fail. `PUSHGUARD_LAYOUT=0`
/// links without it.
///
/// The names carry crate hashes and ThinLTO's `.llvm.NNN` suffixes, so code
/// changes rename some of them; lld skips the names it does not find (no
/// warning with --no-warn-symbol-ordering): a stale file places fewer
/// functions together and never breaks the build.
fn layout() {
    const LINKER_ENV: &str = "CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_LINKER";
    println!("cargo:rerun-if-changed=layout.order");
    println!("cargo:rerun-if-env-changed=PUSHGUARD_LAYOUT");
    println!("cargo:rerun-if-env-changed=CARGO_ENCODED_RUSTFLAGS");
    println!("cargo:rerun-if-env-changed={LINKER_ENV}");
    if env::var_os("PUSHGUARD_LAYOUT").is_some_and(|v| v == "0")
        || env::var("TARGET").as_deref() != Ok("x86_64-unknown-linux-gnu")
        || env::var("PROFILE").as_deref() != Ok("release")
        || env::var_os(LINKER_ENV).is_some()
        || env::var_os("RUSTC_LINKER").is_some()
        || !rustc_links_with_lld()
    {
        return;
    }
    // `-C linker=…`, `-C linker-flavor=…`, `-Z linker-features=…`,
    // `-C link-self-contained=…`, `-C link-arg=-fuse-ld=…`: any of them may
    // take rust-lld out of the link.
    const OTHER_LINKER: [&str; 5] = [
        "linker=",
        "linker-flavor",
        "linker-features",
        "link-self-contained",
        "fuse-ld",
    ];
    let flags = env::var("CARGO_ENCODED_RUSTFLAGS").unwrap_or_default();
    if flags
        .split('\x1f')
        .any(|flag| OTHER_LINKER.iter().any(|option| flag.contains(option)))
    {
        return;
    }
    let Some(dir) = env::var_os("CARGO_MANIFEST_DIR") else {
        return;
    };
    let order = Path::new(&dir).join("layout.order");
    if !order.is_file() {
        return;
    }
    println!(
        "cargo:rustc-link-arg-bins=-Wl,--symbol-ordering-file={}",
        order.display()
    );
    println!("cargo:rustc-link-arg-bins=-Wl,--no-warn-symbol-ordering");
}

/// Whether the compiler is Rust 1.90 or later, from `rustc -vV`'s `release:`
/// line: from 1.90 on it links x86_64-unknown-linux-gnu with rust-lld.
fn rustc_links_with_lld() -> bool {
    let rustc = env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let Ok(output) = Command::new(rustc).arg("-vV").output() else {
        return false;
    };
    let text = String::from_utf8_lossy(&output.stdout);
    let Some(release) = text.lines().find_map(|l| l.strip_prefix("release: ")) else {
        return false;
    };
    let mut parts = release.trim().split(['.', '-']);
    let major = parts.next().and_then(|p| p.parse::<u32>().ok());
    let minor = parts.next().and_then(|p| p.parse::<u32>().ok());
    matches!((major, minor), (Some(major), Some(minor)) if (major, minor) >= (1, 90))
}
