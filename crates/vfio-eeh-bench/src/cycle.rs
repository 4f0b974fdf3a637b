//! Recovery cycles: inject → detect → full recovery on the simulator, as
//! fast as it goes, straight on the host and through the guest model.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use vfio_eeh::addr::{GuestAddr, PciAddr, PeId};
use vfio_eeh::backend::{BackendError, EehBackend};
use vfio_eeh::ops::{EehOp, PeState, ResetKind};
use vfio_eeh::pe::FreezePolicy;
use vfio_eeh::rtas::RtasPolicy;
use vfio_eeh_sim::clock::VirtualClock;
use vfio_eeh_sim::config::{DeactivatePolicy, SimConfig};
use vfio_eeh_sim::guest::{GuestConfig, GuestEeh, Outcome};
use vfio_eeh_sim::spec::TopologySpec;
use vfio_eeh_sim::vmm::SimVmm;
use vfio_eeh_sim::SimHost;

use crate::{figure_vm, guest_slot, FigureError, LOAD_ERROR, NVME};

/// The host policy of the recovery loops: Linux's, but with freezes never
/// counted out (a loop freezes a PE millions of times).
fn endless_config(deactivate: DeactivatePolicy) -> SimConfig {
    SimConfig {
        freeze_policy: FreezePolicy { max_freezes: u32::MAX, window: Duration::from_secs(3600) },
        deactivate,
        ..SimConfig::default()
    }
}

/// Single-function PEs of the built-in host, one per thread of the
/// multi-threaded loops: the NVMe (PE 0) and the IBM adapter (PE 4).
pub const CYCLE_DEVICES: [(u32, u8, u8, u8); 2] = [NVME, (1, 2, 0, 0)];

/// The built-in host with the endless-freeze policy, on a virtual clock.
pub fn cycle_host(deactivate: DeactivatePolicy) -> (Arc<SimHost>, Arc<VirtualClock>) {
    let clock = Arc::new(VirtualClock::new());
    let host = SimHost::new(&TopologySpec::builtin(), endless_config(deactivate), clock.clone());
    (Arc::new(host), clock)
}

/// Inject → detect → recover straight on the simulated host, as a host-side
/// agent would: arm a load error, an MMIO load fires it, the state reads
/// stopped, the log is taken, a hot reset, deassert, wait out the settle on
/// the virtual clock, and the device answers again.
pub struct HostCycle {
    host: Arc<SimHost>,
    clock: Arc<VirtualClock>,
    dev: PciAddr,
    pe: PeId,
}

impl HostCycle {
    /// A loop on device `dev` of `host` (whose clock is `clock`); enables
    /// EEH on its PE.
    pub fn new(host: Arc<SimHost>, clock: Arc<VirtualClock>, dev: PciAddr) -> Result<Self, BackendError> {
        let pe = host.pe_of(dev)?;
        host.enable(pe)?;
        Ok(HostCycle { host, clock, dev, pe })
    }

    /// One cycle; returns whether the device came back.
    pub fn cycle(&self) -> Result<bool, BackendError> {
        let host = &*self.host;
        host.inject(self.pe, LOAD_ERROR)?;
        let fired = host.bar_read(self.dev, 0, 0, 4).map_or(true, |v| v == u64::from(u32::MAX));
        if !fired || host.status(self.pe)?.state != PeState::Stopped {
            return Ok(false);
        }
        black_box(host.error_log(self.pe)?);
        host.reset(self.pe, ResetKind::Hot)?;
        host.pe_op(self.pe, EehOp::ResetDeactivate)?;
        loop {
            let status = host.status(self.pe)?;
            match (status.state, status.unavailable_for) {
                (PeState::Normal, _) => break,
                (PeState::Unavailable, Some(d)) if !d.is_zero() => self.clock.advance(d),
                _ => return Ok(false),
            }
        }
        Ok(host.bar_read(self.dev, 0, 0, 4).is_ok_and(|v| v != u64::from(u32::MAX)))
    }
}

/// Inject → detect → full recovery through the guest model: the host arms a
/// load error, the guest's `eeh_readl` reads all-ones, asks
/// `read-slot-reset-state2`, and runs Linux's whole recovery over RTAS
/// (log, hot reset, settle, configure, BAR restore).
pub struct GuestCycle {
    vm: SimVmm<Arc<SimHost>>,
    guest: GuestEeh,
    dev: GuestAddr,
    pe: PeId,
    cycles: u32,
}

impl GuestCycle {
    /// A loop on host device `dev` of `host`, probed by an unmodified Linux
    /// guest model (freeze limit lifted).
    pub fn new(host: Arc<SimHost>, dev: PciAddr) -> Result<Self, FigureError> {
        let pe = host.pe_of(dev)?;
        let guest_dev = guest_slot(1);
        let mut vm = figure_vm(host.clone(), host, RtasPolicy::default(), &[(dev, guest_dev)])?;
        let mut guest = GuestEeh::new(GuestConfig { max_freezes: u32::MAX, ..GuestConfig::default() });
        guest.probe(&mut vm, &[guest_dev]);
        Ok(GuestCycle { vm, guest, dev: guest_dev, pe, cycles: 0 })
    }

    /// One cycle; returns how it ended.
    pub fn cycle(&mut self) -> Result<Outcome, BackendError> {
        self.vm.host().inject(self.pe, LOAD_ERROR)?;
        let outcome = self.guest.check_mmio(&mut self.vm, self.dev, 0, 0);
        self.cycles = self.cycles.wrapping_add(1);
        if self.cycles.is_multiple_of(1024) {
            self.guest.clear_events();
        }
        Ok(outcome)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pci;

    #[test]
    fn host_and_guest_cycles_recover_every_time() {
        let (host, clock) = cycle_host(DeactivatePolicy::Reporting);
        let cycle = HostCycle::new(host, clock, pci(NVME)).unwrap();
        for _ in 0..20 {
            assert!(cycle.cycle().unwrap());
        }
        let (host, _) = cycle_host(DeactivatePolicy::Blocking);
        let mut cycle = GuestCycle::new(host, pci(CYCLE_DEVICES[1])).unwrap();
        for _ in 0..20 {
            assert!(matches!(cycle.cycle().unwrap(), Outcome::Recovered(_)));
        }
    }
}
