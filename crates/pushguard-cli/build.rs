//! Link settings of the `pushguard` binary.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=PUSHGUARD_PIE");
    let linux_gnu = std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux")
        && std::env::var("CARGO_CFG_TARGET_ENV").as_deref() == Ok("gnu");
    if !linux_gnu {
        return;
    }
    if std::env::var_os("PUSHGUARD_PIE").is_some_and(|v| v != "0") {
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
}
