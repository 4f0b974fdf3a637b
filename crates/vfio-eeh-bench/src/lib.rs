//! Performance figures: the scenarios the benchmarks measure, and quick
//! measurements of them for `eehctl bench` and the tests. Only benchmarks
//! and `eehctl bench` link this crate; the preload library and the
//! simulator never do.
//!
//! Each scenario is set up here once, and both the criterion benchmarks
//! (`cargo bench -p vfio-eeh-bench`) and [`measure::measure`] (a few seconds,
//! for `eehctl bench`) drive the same code:
//!
//! * [`resolve::ResolveTable`]: guest (BUID, config address) → host device
//!   and PE in an [`AddrMaps`](vfio_eeh::mapping::AddrMaps) of N devices
//!   spread over 256 VMs;
//! * [`rtas::RtasBench`]: one whole RTAS EEH call (decode → resolve →
//!   simulator op → encode) for `read-slot-reset-state2` and
//!   `set-eeh-option`;
//! * [`rtas::null_syscall`]: the cheapest real trip to the kernel
//!   (`getppid`), the floor of every real path to a host;
//! * [`cycle::HostCycle`] and [`cycle::GuestCycle`]: inject → detect → full
//!   recovery on the simulator, straight on the host and through the guest
//!   model's RTAS;
//! * [`memory::mapping_memory`]: bytes per mapping entry, with
//!   [`memory::CountingAlloc`] installed as the global allocator of a binary
//!   of its own;
//! * [`downtime::downtime`]: a guest's recovery downtime on the virtual clock
//!   under the Linux/QEMU host policy and ours
//!   ([`downtime::DOWNTIME_CASES`]).
//!
//! Timed figures are wall-clock and depend on the machine; downtimes and
//! memory are exact and repeatable.

pub mod cycle;
pub mod downtime;
pub mod measure;
pub mod memory;
pub mod resolve;
pub mod rtas;

use std::sync::Arc;
use std::time::Duration;

use vfio_eeh::addr::{Buid, GuestAddr, PciAddr};
use vfio_eeh::backend::BackendError;
use vfio_eeh::mapping::VmId;
use vfio_eeh::ops::{ErrFunc, ErrInjection, ErrType};
use vfio_eeh::rtas::RtasPolicy;
use vfio_eeh_sim::guest::Outcome;
use vfio_eeh_sim::vmm::{HostPath, SimVmm, VmmError};
use vfio_eeh_sim::SimHost;

/// The device the single-device scenarios use: the built-in host's NVMe
/// (PE 0, ready 200 ms after a reset).
pub const NVME: (u32, u8, u8, u8) = (0, 1, 0, 0);

/// An `unreachable!`-free way to name a built-in device.
fn pci(addr: (u32, u8, u8, u8)) -> PciAddr {
    PciAddr::new(addr.0, addr.1, addr.2, addr.3).expect("a valid built-in address")
}

/// The guest address the single-device scenarios map their device at.
pub fn guest_slot(slot: u8) -> GuestAddr {
    GuestAddr::new(Buid::SPAPR_BASE, 0, slot, 0).expect("a valid slot")
}

/// The injection every scenario uses: the next MMIO load of the PE fails.
const LOAD_ERROR: ErrInjection = ErrInjection { kind: ErrType::Bus64, func: ErrFunc::LoadMemAddr, addr: 0, mask: 0 };

/// Why a figure could not be produced (a bug in the scenario, reported
/// rather than panicking so `eehctl bench` can say which).
#[derive(Debug, thiserror::Error)]
pub enum FigureError {
    /// The VM could not be set up.
    #[error("Scenario setup")]
    Setup(#[from] VmmError),
    /// The host refused an op the scenario needs.
    #[error("Host")]
    Host(#[from] BackendError),
    /// The guest did not recover.
    #[error("The guest did not recover: {0:?}")]
    NotRecovered(Outcome),
}

/// A VM for the figures: the simulator's guest platform ([`SimVmm`]) on
/// `host`, VM 1, whose RTAS reaches `path` (such as
/// [`downtime::PollingResetHost`]) and keeps no per-call record, with
/// `devices` (host, guest) passed through under the virtual PHB
/// [`Buid::SPAPR_BASE`].
pub fn figure_vm<P: HostPath>(
    host: Arc<SimHost>,
    path: P,
    policy: RtasPolicy,
    devices: &[(PciAddr, GuestAddr)],
) -> Result<SimVmm<P>, VmmError> {
    let mut vm = SimVmm::with_path(host, path, VmId(1), policy);
    vm.add_phb(Buid::SPAPR_BASE)?;
    for &(host, guest) in devices {
        vm.pass_through(host, guest)?;
    }
    Ok(vm)
}

/// `d` in (fractional) milliseconds.
fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
