//! The Linux backend (crates/vfio-eeh-linux), which does its syscalls
//! through libc, runs against the emulated /dev/vfio: container, group,
//! device, config reads and every EEH operation, end to end through the
//! real syscall path that will run on a POWER host.
//!
//! The test re-runs its own binary with `LD_PRELOAD` set; the inner run
//! does the work.

#[path = "../../vfio-shim/tests/common/mod.rs"]
mod common;

use std::path::PathBuf;

use vfio_eeh::addr::{PciAddr, PeId};
use vfio_eeh::backend::EehBackend;
use vfio_eeh::ops::{EehOp, ErrFunc, ErrInjection, ErrType, PeState, ResetKind};
use vfio_eeh_linux::sys::Sys;
use vfio_eeh_linux::sysfs::Sysfs;
use vfio_eeh_linux::vfio::{Container, Group};
use vfio_eeh_linux::VfioHost;
use vfio_eeh_shim::config::ShimConfig;
use vfio_shim_launch::prepare::prepare;

const INNER: &str = "VFIO_SHIM_TEST_SYSFS";

fn inner(sysfs: PathBuf) {
    let nvme: PciAddr = "0000:01:00.0".parse().unwrap();
    let dev_dir = PathBuf::from("/dev/vfio");

    // The wrappers: container, group, device and config space.
    let container = Container::open(&Sys, &dev_dir).unwrap();
    assert_eq!(container.api_version().unwrap(), 0);
    container.require_eeh().unwrap();
    let group = Group::open(&Sys, &dev_dir, PeId(0)).unwrap();
    assert!(group.status().unwrap().viable);
    group.attach(&container).unwrap();
    container.set_iommu(container.best_iommu().unwrap()).unwrap();
    let device = group.device(nvme).unwrap();
    assert_eq!(device.info().unwrap().num_regions, 9);
    assert_eq!(device.config_read_u16(0).unwrap(), 0x144d);
    assert_eq!(device.config_read_u32(0).unwrap(), 0xa824_144d);
    drop(device);
    group.detach().unwrap();
    drop((group, container));

    // The backend: every EEH operation on the PE.
    let host = VfioHost::new(Sysfs::new(sysfs), dev_dir);
    let pe = host.pe_of(nvme).unwrap();
    assert_eq!(host.devices_of(pe).unwrap(), vec![nvme]);
    host.enable(pe).unwrap();
    assert_eq!(host.status(pe).unwrap().state, PeState::Normal);
    let injection = ErrInjection { kind: ErrType::Bus32, func: ErrFunc::LoadConfigAddr, addr: 0, mask: 0 };
    host.inject(pe, injection).unwrap();
    assert_eq!(host.status(pe).unwrap().state, PeState::Stopped);
    host.pe_op(pe, EehOp::UnfreezeIo).unwrap();
    assert_eq!(host.status(pe).unwrap().state, PeState::StoppedDma);
    host.reset(pe, ResetKind::Hot).unwrap();
    host.pe_op(pe, EehOp::ResetDeactivate).unwrap();
    host.pe_op(pe, EehOp::Configure).unwrap();
    assert_eq!(host.status(pe).unwrap().state, PeState::Normal);
    host.pe_op(pe, EehOp::UnfreezeDma).unwrap();
    host.reset(pe, ResetKind::Fundamental).unwrap();
    host.pe_op(pe, EehOp::ResetDeactivate).unwrap();
    host.pe_op(pe, EehOp::Disable).unwrap();
    let mem = ErrInjection { func: ErrFunc::LoadMemAddr, ..injection };
    let refused = host.inject(pe, mem).unwrap_err();
    assert_eq!(refused.errno(), libc::EIO, "PHB4 firmware refuses MMIO injection: {refused}");
}

#[test]
fn linux_backend_through_the_preload_library() {
    if let Some(sysfs) = std::env::var_os(INNER) {
        inner(sysfs.into());
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let library = common::preload_library();
    let prepared = prepare(dir.path(), &[], &ShimConfig::default(), &library).unwrap();
    let exe = std::env::current_exe().unwrap();
    let output = prepared
        .command(exe)
        .args(["--exact", "linux_backend_through_the_preload_library", "--nocapture", "--test-threads=1"])
        .env(INNER, &prepared.sysfs)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "inner run failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
