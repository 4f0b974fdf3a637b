//! Shared by the integration tests: builds the preload library.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

/// The workspace root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Builds `libvfio_eeh_shim.so` with the `preload` feature, once per test
/// binary, into a target directory of its own (the outer cargo holds the
/// main one, and the feature would flip-flop the library there).
pub fn preload_library() -> PathBuf {
    static LIB: OnceLock<PathBuf> = OnceLock::new();
    LIB.get_or_init(|| {
        let target = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("preload");
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let status = Command::new(cargo)
            .current_dir(repo())
            .args(["build", "--quiet", "-p", "vfio-shim", "--features", "preload", "--lib", "--target-dir"])
            .arg(&target)
            .status()
            .expect("cargo runs");
        assert!(status.success(), "building the preload library failed");
        target.join("debug/libvfio_eeh_shim.so")
    })
    .clone()
}
