//! Builds the BPF object (`ebpf/programs`, binary `strait`) into `$OUT_DIR/strait`, which the
//! agent embeds with `include_bytes_aligned!`.
//!
//! The BPF target needs `-Z build-std=core`. The machine's stable toolchain allows it under
//! `RUSTC_BOOTSTRAP=1`, which we set for the nested cargo run only, so host crates keep building
//! as plain stable Rust. The linker is bpf-linker, installed by `cargo xtask setup`.

use aya_build::{Package, Toolchain};

fn main() -> anyhow::Result<()> {
    println!("cargo:rerun-if-env-changed=RUSTC_BOOTSTRAP");
    // SAFETY: build scripts are single-threaded at this point; the variable is read by
    // aya-build and inherited by the nested cargo it spawns.
    unsafe { std::env::set_var("RUSTC_BOOTSTRAP", "1") };
    let package = Package {
        name: "strait-ebpf",
        root_dir: concat!(env!("CARGO_MANIFEST_DIR"), "/../ebpf/programs"),
        ..Package::default()
    };
    aya_build::build_ebpf([package], Toolchain::Custom("stable"))
}
