//! The host eehd owns: what the daemon needs beyond [`EehBackend`]
//! (topology, injection, the event stream, saving and restoring PE state),
//! for the simulator and for the real Linux host.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use vfio_eeh::addr::{PciAddr, PeId};
use vfio_eeh::backend::{BackendError, EehBackend};
use vfio_eeh::ops::{EehOp, PeState, ResetKind};
use vfio_eeh::pe::FreezeScope;
use vfio_eeh::topology::Topology;
use vfio_eeh_linux::VfioHost;
use vfio_eeh_sim::event::SimEventKind;
use vfio_eeh_sim::phb::PhbError;
use vfio_eeh_sim::spec::{BarKind, DeviceModel};
use vfio_eeh_sim::{AccessError, DeviceBus, SimHost};

use crate::protocol::{AttachedBar, DeviceSpace, PeEventKind, PhbView};

/// Something that happened to a PE, as the daemon tracks it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostEvent {
    /// The host's order.
    pub seq: u64,
    /// When, in ns of the host clock.
    pub at_ns: u64,
    /// The PE.
    pub pe: PeId,
    /// Whether EEH was enabled on the PE by this event.
    pub enabled: bool,
    /// What subscribers are told, if anything.
    pub kind: Option<PeEventKind>,
}

/// Where a PE is, as the state file keeps it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "condition", rename_all = "snake_case")]
pub enum SavedCondition {
    /// Usable (a settling PE is saved as usable: it would be by the time a
    /// restarted daemon answers).
    Normal,
    /// MMIO and DMA stopped.
    Stopped,
    /// DMA stopped.
    StoppedDma,
    /// Reset asserted.
    Reset {
        /// Which reset.
        reset: ResetKind,
    },
    /// Failed for good.
    Failed,
}

/// A PE's saved state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeRecord {
    /// The PE.
    pub pe: PeId,
    /// Whether EEH was enabled on it.
    pub enabled: bool,
    /// Freezes in the current window.
    pub freezes: u32,
    /// Where it is.
    #[serde(flatten)]
    pub condition: SavedCondition,
}

impl PeRecord {
    /// A PE as the host starts it.
    pub const fn fresh(pe: PeId) -> Self {
        PeRecord { pe, enabled: false, freezes: 0, condition: SavedCondition::Normal }
    }
}

/// A host eehd can own.
pub trait DaemonHost: EehBackend {
    /// `sim` or `linux`.
    fn kind(&self) -> &'static str;

    /// The PHBs, PEs and devices.
    fn topology(&self) -> Result<Topology, BackendError>;

    /// Freezes a PE now, as a hardware error would.
    fn freeze(&self, pe: PeId) -> Result<(), BackendError>;

    /// A PHB-wide error: a fence, or (`dead`) the PHB's death.
    fn inject_phb(&self, domain: u32, dead: bool) -> Result<(), BackendError>;

    /// Events with a sequence number above `seq`, oldest first.
    fn events_after(&self, seq: u64) -> Vec<HostEvent>;

    /// Whether PE state belongs to the daemon (the simulator: saved and
    /// restored) or to the kernel (Linux: neither).
    fn keeps_pe_state(&self) -> bool;

    /// Drives a fresh host's PE to a saved state.
    fn restore(&self, record: &PeRecord) -> Result<(), BackendError>;

    /// A VM claimed (`true`) or released a PE: its VMM now holds the PE's
    /// devices as a VFIO user would, so the host sees the PE passed through
    /// (`eeh_dev_open`/`eeh_dev_release`) and leaves its freezes to the guest.
    fn hold(&self, pe: PeId, held: bool) -> Result<(), BackendError>;

    /// Whether the host sees the PE passed through to a VFIO user, where it
    /// can tell.
    fn passed(&self, pe: PeId) -> Option<bool>;

    /// A function's BARs, for a VMM that attaches its group (none marked
    /// shared: the shared memory decides that).
    fn bars(&self, device: PciAddr) -> Result<Vec<AttachedBar>, BackendError>;

    /// A function-level reset (`VFIO_DEVICE_RESET`).
    fn function_reset(&self, device: PciAddr) -> Result<(), BackendError>;

    /// The MSI-X vectors of a function's device model when the model does
    /// DMA and raises interrupts (it needs a VMM's bus); `None` for a
    /// function without one.
    fn bus_model(&self, device: PciAddr) -> Option<u16>;

    /// Lends a function's device model a VMM's bus (`None` takes it back).
    fn attach_bus(&self, device: PciAddr, bus: Option<Arc<dyn DeviceBus>>) -> Result<(), BackendError>;

    /// Whether a BAR access to the PE's functions would now be plain
    /// memory, so that a VMM sharing the memory may access it directly.
    fn plain_memory_access(&self, pe: PeId) -> bool;

    /// Reads `width` bytes at `offset` of a function's config space or BAR
    /// (all-ones while its PE is frozen).
    fn device_read(&self, device: PciAddr, space: DeviceSpace, offset: u64, width: u8) -> Result<u64, BackendError>;

    /// Writes the low `width` bytes of `value` at `offset` of a function's
    /// config space or BAR (dropped while its PE is frozen).
    fn device_write(
        &self,
        device: PciAddr,
        space: DeviceSpace,
        offset: u64,
        width: u8,
        value: u64,
    ) -> Result<(), BackendError>;
}

/// A simulated device access's refusal as the host seam words it.
fn access_error(error: AccessError) -> BackendError {
    match error {
        AccessError::NoDevice(device) => BackendError::NoDevice(device),
        other => BackendError::InvalidArgument(other.to_string()),
    }
}

/// A config-space offset, which is below 4 KiB.
fn config_offset(offset: u64) -> Result<u16, BackendError> {
    u16::try_from(offset).map_err(|_| BackendError::InvalidArgument(format!("config offset {offset:#x}")))
}

/// The sim's event as the daemon tracks it.
fn host_event(seq: u64, at_ns: u64, pe: PeId, kind: &SimEventKind) -> HostEvent {
    let (enabled, wire) = match *kind {
        SimEventKind::Enabled { thawed } => (true, thawed.then_some(PeEventKind::Recovered)),
        SimEventKind::Frozen { count, .. } => (false, Some(PeEventKind::Frozen { count })),
        SimEventKind::PermanentFailure { count, .. } => (false, Some(PeEventKind::PermanentlyFailed { count })),
        SimEventKind::Thawed { state } => (false, (state == PeState::Normal).then_some(PeEventKind::Recovered)),
        SimEventKind::ResetAsserted { kind } => (false, Some(PeEventKind::Reset { reset: kind })),
        SimEventKind::Settled | SimEventKind::Reenabled => (false, Some(PeEventKind::Recovered)),
        SimEventKind::PhbFenced { domain, .. } => (false, Some(PeEventKind::PhbFrozen { domain })),
        SimEventKind::PhbRecovered { refrozen, .. } => (false, (!refrozen).then_some(PeEventKind::Recovered)),
        SimEventKind::PhbDead { domain } => (false, Some(PeEventKind::PhbDead { domain })),
        SimEventKind::ResetDeasserted { .. }
        | SimEventKind::Configured
        | SimEventKind::Passed { .. }
        | SimEventKind::Released { .. }
        | SimEventKind::InjectionArmed { .. }
        | SimEventKind::InjectionReplaced { .. }
        | SimEventKind::InjectionFired { .. }
        | SimEventKind::PhbRecovering { .. }
        | SimEventKind::ErrorLogRead => (false, None),
    };
    HostEvent { seq, at_ns, pe, enabled, kind: wire }
}

impl DaemonHost for SimHost {
    fn kind(&self) -> &'static str {
        "sim"
    }

    fn topology(&self) -> Result<Topology, BackendError> {
        Ok(SimHost::topology(self))
    }

    fn freeze(&self, pe: PeId) -> Result<(), BackendError> {
        SimHost::freeze(self, pe, FreezeScope::All)
    }

    fn inject_phb(&self, domain: u32, dead: bool) -> Result<(), BackendError> {
        SimHost::inject_phb(self, domain, if dead { PhbError::Dead } else { PhbError::Fence })
    }

    fn events_after(&self, seq: u64) -> Vec<HostEvent> {
        SimHost::events_after(self, seq).iter().map(|e| host_event(e.seq, e.at_ns, e.pe, &e.kind)).collect()
    }

    fn keeps_pe_state(&self) -> bool {
        true
    }

    fn hold(&self, pe: PeId, held: bool) -> Result<(), BackendError> {
        for device in self.devices_of(pe)? {
            if held {
                self.dev_open(device)?;
            } else {
                self.dev_release(device)?;
            }
        }
        Ok(())
    }

    fn passed(&self, pe: PeId) -> Option<bool> {
        SimHost::passed(self, pe).ok()
    }

    /// The simulator offers no way to set a PE's state, so a fresh PE is
    /// driven there through the operations a guest could issue: enable,
    /// then `freezes` freezes (each but a kept last one thawed), then a
    /// reset. The freeze window restarts at the restart.
    fn restore(&self, record: &PeRecord) -> Result<(), BackendError> {
        let pe = record.pe;
        if record.enabled {
            self.enable(pe)?;
        }
        let last_scope = match record.condition {
            SavedCondition::Stopped | SavedCondition::Failed => Some(FreezeScope::All),
            SavedCondition::StoppedDma => Some(FreezeScope::Dma),
            SavedCondition::Normal | SavedCondition::Reset { .. } => None,
        };
        let thawed = record.freezes.saturating_sub(u32::from(last_scope.is_some()));
        for _ in 0..thawed {
            SimHost::freeze(self, pe, FreezeScope::All)?;
            self.pe_op(pe, EehOp::UnfreezeIo)?;
            self.pe_op(pe, EehOp::UnfreezeDma)?;
        }
        if let Some(scope) = last_scope {
            SimHost::freeze(self, pe, scope)?;
        }
        if let SavedCondition::Reset { reset } = record.condition {
            self.reset(pe, reset)?;
        }
        Ok(())
    }

    fn bars(&self, device: PciAddr) -> Result<Vec<AttachedBar>, BackendError> {
        let bars = SimHost::bars(self, device).map_err(access_error)?;
        Ok(bars
            .iter()
            .map(|b| AttachedBar { index: b.index, size: b.size, io: b.kind == BarKind::Io, shared: false })
            .collect())
    }

    fn plain_memory_access(&self, pe: PeId) -> bool {
        SimHost::plain_memory_access(self, pe).unwrap_or(false)
    }

    fn function_reset(&self, device: PciAddr) -> Result<(), BackendError> {
        SimHost::function_reset(self, device).map_err(access_error)
    }

    fn bus_model(&self, device: PciAddr) -> Option<u16> {
        match &self.device(device).ok()?.model {
            DeviceModel::Nvme(spec) => Some(spec.vectors()),
            _ => None,
        }
    }

    fn attach_bus(&self, device: PciAddr, bus: Option<Arc<dyn DeviceBus>>) -> Result<(), BackendError> {
        SimHost::attach_bus(self, device, bus).map_err(access_error)
    }

    fn device_read(&self, device: PciAddr, space: DeviceSpace, offset: u64, width: u8) -> Result<u64, BackendError> {
        match space {
            DeviceSpace::Config => self.config_read(device, config_offset(offset)?, width).map(u64::from),
            DeviceSpace::Bar(bar) => self.bar_read(device, bar, offset, width),
        }
        .map_err(access_error)
    }

    fn device_write(
        &self,
        device: PciAddr,
        space: DeviceSpace,
        offset: u64,
        width: u8,
        value: u64,
    ) -> Result<(), BackendError> {
        match space {
            DeviceSpace::Config => {
                let value = u32::try_from(value)
                    .map_err(|_| BackendError::InvalidArgument(format!("config value {value:#x} above 32 bits")))?;
                self.config_write(device, config_offset(offset)?, width, value)
            }
            DeviceSpace::Bar(bar) => self.bar_write(device, bar, offset, width, value),
        }
        .map_err(access_error)
    }
}

impl DaemonHost for VfioHost {
    fn kind(&self) -> &'static str {
        "linux"
    }

    fn topology(&self) -> Result<Topology, BackendError> {
        VfioHost::topology(self).map_err(|e| BackendError::Io(vfio_eeh::error_chain(&e)))
    }

    fn freeze(&self, pe: PeId) -> Result<(), BackendError> {
        Err(BackendError::NotSupported(format!("freezing PE {pe} outright (inject an error instead)")))
    }

    /// No kernel or firmware interface fences a PHB on request
    /// (`OPAL_PCI_FENCE_PHB` was never implemented).
    fn inject_phb(&self, domain: u32, _dead: bool) -> Result<(), BackendError> {
        Err(BackendError::NotSupported(format!("a PHB-wide error on PHB {domain:04x}")))
    }

    /// The kernel's EEH events are not followed (yet): none.
    fn events_after(&self, _seq: u64) -> Vec<HostEvent> {
        Vec::new()
    }

    fn keeps_pe_state(&self) -> bool {
        false
    }

    fn restore(&self, _record: &PeRecord) -> Result<(), BackendError> {
        Ok(())
    }

    /// The kernel sees the VMM's own opens of the device fds; a claim in
    /// eehd opens nothing.
    fn hold(&self, _pe: PeId, _held: bool) -> Result<(), BackendError> {
        Ok(())
    }

    /// Not exposed by the kernel (`pass_dev_cnt` has no sysfs file).
    fn passed(&self, _pe: PeId) -> Option<bool> {
        None
    }

    fn bars(&self, device: PciAddr) -> Result<Vec<AttachedBar>, BackendError> {
        Err(no_device_access(device))
    }

    fn plain_memory_access(&self, _pe: PeId) -> bool {
        false
    }

    fn function_reset(&self, device: PciAddr) -> Result<(), BackendError> {
        Err(no_device_access(device))
    }

    /// A real function does its own DMA.
    fn bus_model(&self, _device: PciAddr) -> Option<u16> {
        None
    }

    fn attach_bus(&self, device: PciAddr, _bus: Option<Arc<dyn DeviceBus>>) -> Result<(), BackendError> {
        Err(no_device_access(device))
    }

    /// A VMM reaches its devices through their VFIO device fds, not eehd.
    fn device_read(&self, device: PciAddr, _: DeviceSpace, _: u64, _: u8) -> Result<u64, BackendError> {
        Err(no_device_access(device))
    }

    fn device_write(&self, device: PciAddr, _: DeviceSpace, _: u64, _: u8, _: u64) -> Result<(), BackendError> {
        Err(no_device_access(device))
    }
}

fn no_device_access(device: PciAddr) -> BackendError {
    BackendError::NotSupported(format!("accessing {device} through eehd on the Linux host (use its VFIO device fd)"))
}

/// A PE's saved condition from its status and the last reset asserted.
pub fn saved_condition(
    state: PeState,
    unavailable_for: Option<std::time::Duration>,
    last_reset: ResetKind,
) -> SavedCondition {
    match state {
        PeState::Normal => SavedCondition::Normal,
        PeState::Stopped => SavedCondition::Stopped,
        PeState::StoppedDma => SavedCondition::StoppedDma,
        PeState::Reset => SavedCondition::Reset { reset: last_reset },
        PeState::Unavailable if unavailable_for == Some(std::time::Duration::ZERO) => SavedCondition::Failed,
        PeState::Unavailable => SavedCondition::Normal,
    }
}

/// The PHBs of a topology as views, each PE described by `view`.
pub fn phb_views(topology: &Topology, mut view: impl FnMut(PeId) -> crate::protocol::PeView) -> Vec<PhbView> {
    topology
        .phbs
        .iter()
        .map(|phb| PhbView { domain: phb.domain, pes: phb.groups.iter().map(|g| view(g.pe)).collect() })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use vfio_eeh_sim::clock::VirtualClock;

    use super::*;

    fn record_of(host: &SimHost, pe: PeId) -> (PeState, u32, bool) {
        let events = DaemonHost::events_after(host, 0);
        let mine = events.iter().filter(|e| e.pe == pe);
        let freezes = mine
            .clone()
            .rev()
            .find_map(|e| match e.kind {
                Some(PeEventKind::Frozen { count } | PeEventKind::PermanentlyFailed { count }) => Some(count),
                _ => None,
            })
            .unwrap_or(0);
        (host.status(pe).unwrap().state, freezes, mine.clone().any(|e| e.enabled))
    }

    #[test]
    fn restore_drives_a_fresh_pe_to_the_saved_state() {
        let cases = [
            (PeRecord { pe: PeId(1), enabled: true, freezes: 3, condition: SavedCondition::Stopped }, PeState::Stopped),
            (
                PeRecord { pe: PeId(1), enabled: false, freezes: 2, condition: SavedCondition::StoppedDma },
                PeState::StoppedDma,
            ),
            (
                PeRecord {
                    pe: PeId(1),
                    enabled: true,
                    freezes: 1,
                    condition: SavedCondition::Reset { reset: ResetKind::Hot },
                },
                PeState::Reset,
            ),
            (
                PeRecord { pe: PeId(1), enabled: true, freezes: 6, condition: SavedCondition::Failed },
                PeState::Unavailable,
            ),
            (PeRecord { pe: PeId(1), enabled: true, freezes: 2, condition: SavedCondition::Normal }, PeState::Normal),
        ];
        for (record, state) in cases {
            let host = SimHost::builtin(Arc::new(VirtualClock::new()));
            DaemonHost::restore(&host, &record).unwrap();
            assert_eq!(record_of(&host, record.pe), (state, record.freezes, record.enabled), "{record:?}");
        }
    }
}
