//! The design's path end to end from C (tests/c/vfio_eeh_rtas.c, issue 15
//! item 4): a VMM maps two devices with `VFIO_DEVICE_ADDR_MAPPING` and
//! drives a guest's whole EEH recovery as raw RTAS buffers through the
//! preload library's `vfio_eeh_rtas` (include/vfio_eeh.h), with every
//! mapping conflict, another VM's addresses and bad buffers.

mod common;

use std::path::PathBuf;
use std::process::Command;

/// Builds the C program against include/vfio_eeh.h.
fn program() -> PathBuf {
    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("vfio_eeh_rtas");
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

#[test]
fn a_c_vmm_maps_devices_and_drives_the_guests_recovery_through_rtas_buffers() {
    let out = Command::new(program())
        .env("LD_PRELOAD", common::preload_library())
        .env("VFIO_EEH_SHIM_PLATFORM", "powernv")
        .env("VFIO_EEH_SHIM_RESET", "report-unavailable")
        .output()
        .expect("the program runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.starts_with("ok ("), "{stdout}");
}
