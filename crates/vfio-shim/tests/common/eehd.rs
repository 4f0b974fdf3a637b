//! A real eehd on the built-in simulated host with virtual time (resets
//! take no wall time), for the tests and the bench that drive the preload
//! library under eehd (`#[path]`-included by each).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Builds eehd (debug, into the preload library's target directory), once
/// per test binary.
#[allow(dead_code, reason = "the bench builds a release eehd of its own")]
pub fn debug_binary() -> PathBuf {
    static BINARY: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BINARY
        .get_or_init(|| {
            let target = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("preload");
            let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
            let status = Command::new(cargo)
                .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
                .args(["build", "--quiet", "-p", "eehd", "--bin", "eehd", "--target-dir"])
                .arg(&target)
                .status()
                .expect("cargo runs");
            assert!(status.success(), "building eehd failed");
            target.join("debug/eehd")
        })
        .clone()
}

/// A running eehd; dropping it kills it.
pub struct Eehd(Child);

impl Eehd {
    /// Starts `binary` on the built-in simulated host (unless `args` names
    /// a `--topology`), with `args`, its state in `dir`; returns it and its
    /// socket once it listens.
    pub fn start(binary: &Path, dir: &Path, args: &[&str]) -> (Self, PathBuf) {
        let socket = dir.join("eehd.sock");
        // A killed eehd leaves its socket behind: wait for the new one.
        let _ = std::fs::remove_file(&socket);
        let child = Command::new(binary)
            .args(["--host", "sim", "--sim-clock", "virtual", "--socket"])
            .arg(&socket)
            .arg("--state-dir")
            .arg(dir.join("state"))
            .args(args)
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("eehd starts");
        let deadline = Instant::now() + Duration::from_secs(20);
        while !socket.exists() {
            assert!(Instant::now() < deadline, "eehd did not listen");
            std::thread::sleep(Duration::from_millis(20));
        }
        (Eehd(child), socket)
    }
}

impl Drop for Eehd {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
