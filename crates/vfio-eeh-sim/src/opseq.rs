//! The `VFIO_EEH_PE_OP` sequence the guest model makes, recorded the way
//! the preload library's op log prints it (`name=result`), so that CI can
//! compare it op for op with a real guest's (`tests/qemu/e2e.sh`,
//! `eehctl model-ops`).

use std::sync::{Arc, Mutex, PoisonError};

use vfio_eeh::addr::{AddrError, Buid, GuestAddr, PciAddr, PeId};
use vfio_eeh::backend::{BackendError, EehBackend, PeOpReply};
use vfio_eeh::container::ContainerPath;
use vfio_eeh::mapping::VmId;
use vfio_eeh::ops::EehOp;
use vfio_eeh::pe::FreezeScope;
use vfio_eeh::rtas::RtasPolicy;

use crate::clock::VirtualClock;
use crate::guest::{DriverResponse, GuestConfig, GuestEeh, Outcome};
use crate::vmm::{SimVmm, VmmError};
use crate::SimHost;

/// The host as QEMU reaches it (`VFIO_EEH_PE_OP` on a container), recording
/// every op with its result as `name=result` (`get-state=2`,
/// `reset-hot=0`, `enable=-25`).
#[derive(Debug)]
pub struct RecordingBackend {
    host: Arc<SimHost>,
    ops: Mutex<Vec<String>>,
}

impl RecordingBackend {
    /// Records the ops served by `host`.
    pub fn new(host: Arc<SimHost>) -> Self {
        RecordingBackend { host, ops: Mutex::default() }
    }

    /// The ops so far, oldest first.
    pub fn ops(&self) -> Vec<String> {
        self.ops.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }
}

impl EehBackend for RecordingBackend {
    fn pe_of(&self, device: PciAddr) -> Result<PeId, BackendError> {
        self.host.pe_of(device)
    }

    fn devices_of(&self, pe: PeId) -> Result<Vec<PciAddr>, BackendError> {
        self.host.devices_of(pe)
    }

    fn pe_op(&self, pe: PeId, op: EehOp) -> Result<PeOpReply, BackendError> {
        let reply = self.host.pe_op(pe, op);
        let result = match &reply {
            Ok(reply) => i64::from(reply.ioctl_value()),
            Err(e) => -i64::from(e.errno()),
        };
        self.ops.lock().unwrap_or_else(PoisonError::into_inner).push(format!("{}={result}", op.name()));
        reply
    }
}

/// Why the scenario did not run to its end.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    /// The VMM refused a set-up step.
    #[error("VMM set-up failed")]
    Vmm(#[from] VmmError),
    /// The guest address is invalid.
    #[error("Bad guest address")]
    Addr(#[from] AddrError),
    /// The host refused the freeze.
    #[error("The freeze failed")]
    Backend(#[from] BackendError),
    /// The guest did not take EEH on, or did not recover.
    #[error("The guest model {0}")]
    Guest(&'static str),
}

/// The real e2e guest's `recover` scenario on the model: `device` of the
/// built-in host passed through QEMU-style (one PE per container, QEMU's
/// RTAS answers) to a guest with no driver for it, frozen at once as
/// `eehctl inject --pe` does, then detected by a config read and recovered
/// by "Reset with hotplug activity". Returns the `VFIO_EEH_PE_OP` sequence
/// from the freeze to the end of the recovery.
pub fn no_driver_recovery(device: PciAddr) -> Result<Vec<String>, ScenarioError> {
    let host = Arc::new(SimHost::builtin(Arc::new(VirtualClock::new())));
    let pe = host.pe_of(device)?;
    let recording = Arc::new(RecordingBackend::new(Arc::clone(&host)));
    let path = ContainerPath::new(Arc::clone(&recording), [pe]);
    let mut vmm = SimVmm::with_path(Arc::clone(&host), path, VmId(1), RtasPolicy::QEMU);
    vmm.add_phb(Buid::SPAPR_BASE)?;
    let guest_dev = GuestAddr::new(Buid::SPAPR_BASE, 0, 0, 0)?;
    vmm.pass_through(device, guest_dev)?;
    let mut guest = GuestEeh::new(GuestConfig { driver: DriverResponse::NoDriver, ..GuestConfig::default() });
    if guest.probe(&mut vmm, &[guest_dev]) != [guest_dev] {
        return Err(ScenarioError::Guest("did not enable EEH on the device"));
    }
    let probed = recording.ops().len();
    host.freeze(pe, FreezeScope::All)?;
    if !matches!(guest.check_config(&mut vmm, guest_dev), Outcome::Recovered(_)) {
        return Err(ScenarioError::Guest("did not recover"));
    }
    Ok(recording.ops().split_off(probed))
}
