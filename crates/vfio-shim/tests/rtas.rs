//! The design's path end to end from C (tests/c/vfio_eeh_rtas.c, issue 15
//! item 4): a VMM maps two devices with `VFIO_DEVICE_ADDR_MAPPING` and
//! drives a guest's whole EEH recovery as raw RTAS buffers through the
//! preload library's `vfio_eeh_rtas` (include/vfio_eeh.h), with every
//! mapping conflict, another VM's addresses and bad buffers: on the
//! in-process host, and as two VMs of one real eehd.

mod common;
#[path = "common/eehd.rs"]
mod eehd;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use eehd::Eehd;

/// Builds the C program against include/vfio_eeh.h (a copy per test
/// process: tests may build it at once).
fn program() -> PathBuf {
    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("vfio_eeh_rtas-{}", std::process::id()));
    let status = Command::new("gcc")
        .args(["-O2", "-Wall", "-Wextra", "-Werror", "-I"])
        .arg(common::repo().join("include"))
        .arg("-o")
        .arg(&out)
        .arg(common::repo().join("tests/c/vfio_eeh_rtas.c"))
        .status()
        .expect("gcc runs");
    assert!(status.success(), "building tests/c/vfio_eeh_rtas.c failed");
    out
}

/// Runs the C program under the preload library with `env`.
fn run(program: &Path, args: &[&str], env: &[(&str, &std::ffi::OsStr)]) -> Output {
    Command::new(program)
        .args(args)
        .env("LD_PRELOAD", common::preload_library())
        .env("VFIO_EEH_SHIM_PLATFORM", "powernv")
        .envs(env.iter().copied())
        .output()
        .expect("the program runs")
}

fn assert_ok(out: &Output) {
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.starts_with("ok ("), "{stdout}");
}

#[test]
fn a_c_vmm_maps_devices_and_drives_the_guests_recovery_through_rtas_buffers() {
    assert_ok(&run(&program(), &[], &[("VFIO_EEH_SHIM_RESET", "report-unavailable".as_ref())]));
}

#[test]
fn two_c_vmms_of_one_eehd_each_reach_only_their_own_vm() {
    let program = program();
    let dir = tempfile::tempdir().unwrap();
    let (_eehd, socket) = Eehd::start(&eehd::debug_binary(), dir.path(), &[]);
    let vm = |name: &'static str| [("VFIO_EEH_SHIM_CONNECT", socket.as_os_str()), ("VFIO_EEH_SHIM_VM", name.as_ref())];
    assert_ok(&run(&program, &[], &vm("a")));
    // A's groups stay claimed and mapped after its VMM exits (eehd keeps
    // the claims of VMMs that are gone): B meets them.
    assert_ok(&run(&program, &["--other-vm"], &vm("b")));
}
