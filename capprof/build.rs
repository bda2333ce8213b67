//! Builds `capprof-ebpf` for `bpfel-unknown-none` and leaves the object in OUT_DIR, where
//! `src/loader.rs` embeds it with `include_bytes_aligned!`.
//!
//! The eBPF crate needs a rustc whose `core` exists for the BPF target: on Debian that is the
//! system rustc linked as the rustup toolchain `debian-bpf` (scripts/setup.sh), with
//! `RUSTC_BOOTSTRAP=1` for aya-ebpf's `#![feature]`s. `CAPPROF_EBPF_TOOLCHAIN` overrides it
//! (e.g. `nightly` where a nightly with rust-src exists).
//!
//! aya-build relays every line of the eBPF cargo's output as a `cargo:warning` (a hundred lines
//! a newcomer reads as problems). The build runs in a child of this script, so its lines are
//! shown only when it fails; on success only the other `cargo:` directives are passed on.
use anyhow::{anyhow, Context as _};
use aya_build::Toolchain;

const CHILD: &str = "CAPPROF_EBPF_BUILD_CHILD";

fn main() -> anyhow::Result<()> {
    if std::env::var_os(CHILD).is_some() {
        return build();
    }
    println!("cargo:rerun-if-env-changed=CAPPROF_EBPF_VERBOSE");
    let out = std::process::Command::new(std::env::current_exe().context("this build script's path")?)
        .env(CHILD, "1")
        .output()
        .context("running the eBPF build")?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let verbose = !out.status.success() || std::env::var_os("CAPPROF_EBPF_VERBOSE").is_some();
    for line in stdout.lines().filter(|l| verbose || !l.starts_with("cargo:warning=")) {
        println!("{line}");
    }
    if !out.status.success() {
        eprint!("{}", String::from_utf8_lossy(&out.stderr));
        return Err(anyhow!("building the eBPF programs failed (its output is above, as warnings)"));
    }
    Ok(())
}

fn build() -> anyhow::Result<()> {
    println!("cargo:rerun-if-env-changed=CAPPROF_EBPF_TOOLCHAIN");
    let toolchain = std::env::var("CAPPROF_EBPF_TOOLCHAIN").unwrap_or_else(|_| "debian-bpf".into());
    if std::env::var_os("RUSTC_BOOTSTRAP").is_none() {
        // Only this build script's children (the eBPF cargo) see it.
        std::env::set_var("RUSTC_BOOTSTRAP", "1");
    }
    let cargo_metadata::Metadata { packages, .. } = cargo_metadata::MetadataCommand::new()
        .no_deps()
        .exec()
        .context("cargo metadata")?;
    let ebpf = packages
        .into_iter()
        .find(|p| p.name.as_str() == "capprof-ebpf")
        .ok_or_else(|| anyhow!("capprof-ebpf package not found"))?;
    let root = ebpf
        .manifest_path
        .parent()
        .ok_or_else(|| anyhow!("no parent for {}", ebpf.manifest_path))?;
    let package = aya_build::Package {
        name: ebpf.name.as_str(),
        root_dir: root.as_str(),
        ..Default::default()
    };
    aya_build::build_ebpf([package], Toolchain::Custom(&toolchain))
        .context("building the eBPF programs (run scripts/setup.sh first: it installs bpf-linker and the debian-bpf toolchain)")
}
