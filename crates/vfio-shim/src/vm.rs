//! This process's VM: what its VMM declared and holds (virtual PHBs, the
//! groups it opened, the guest address of each mapped device) and its RTAS
//! EEH firmware, on [`vfio_eeh::vm::Vms`] as `eehd` keeps them.
//!
//! This is the one place of the emulation that serves "mapping set, clear,
//! get" and "RTAS call" for the VM: the address-mapping ioctl
//! ([`super::vfio`]'s device files) and the exported RTAS entry point reach
//! the VM only through [`ThisVm`]'s methods, each answering a positive
//! errno at this edge. In the in-process mode the VM is the process: one VM,
//! its virtual PHBs from the configuration
//! ([`ShimConfig::virtual_phbs`](crate::config::ShimConfig::virtual_phbs)),
//! and it owns the PEs of the groups the process has open.

use std::sync::{PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use vfio_eeh::addr::{Buid, GuestAddr, PciAddr, PeId};
use vfio_eeh::backend::EehBackend;
use vfio_eeh::mapping::VmId;
use vfio_eeh::rtas::{GuestMemory, RtasCall, RtasOutcome};
use vfio_eeh::vm::{RtasRefused, Vms};

/// The id of the process's VM within its own [`Vms`].
const THIS_VM: VmId = VmId(1);

/// The process's VM.
#[derive(Debug)]
pub(crate) struct ThisVm {
    vms: RwLock<Vms>,
}

impl ThisVm {
    /// A VM with the virtual PHBs `phbs`, owning no PE yet.
    pub(crate) fn new(phbs: &[Buid]) -> Self {
        let mut vms = Vms::default();
        vms.add_vm(THIS_VM).expect("the first VM");
        for &buid in phbs {
            // A BUID named twice is one PHB.
            let _ = vms.add_phb(THIS_VM, buid);
        }
        ThisVm { vms: RwLock::new(vms) }
    }

    fn read(&self) -> RwLockReadGuard<'_, Vms> {
        self.vms.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, Vms> {
        self.vms.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// The VMM opened the group of `pe`: the VM owns it.
    pub(crate) fn claim(&self, pe: PeId) {
        // One VM: no other owner can refuse it.
        let _ = self.write().claim(THIS_VM, pe);
    }

    /// The VMM closed the group of `pe`: its devices leave the VM with
    /// their mappings.
    pub(crate) fn release(&self, pe: PeId) {
        // Claimed when the group was opened.
        let _ = self.write().release_with_mappings(THIS_VM, pe);
    }

    /// `VFIO_DEVICE_ADDR_MAPPING_SET`.
    pub(crate) fn map_set(&self, backend: &dyn EehBackend, host: PciAddr, guest: GuestAddr) -> Result<(), i32> {
        self.write().map_set(THIS_VM, backend, host, guest).map_err(|e| e.errno())
    }

    /// `VFIO_DEVICE_ADDR_MAPPING_CLEAR`.
    pub(crate) fn map_clear(&self, host: PciAddr) -> Result<GuestAddr, i32> {
        self.write().map_clear(THIS_VM, host).map_err(|e| e.errno())
    }

    /// `VFIO_DEVICE_ADDR_MAPPING_GET`.
    pub(crate) fn map_get(&self, host: PciAddr) -> Result<GuestAddr, i32> {
        self.read().map_get(THIS_VM, host).map_err(|e| e.errno())
    }

    /// The token of the RTAS call named `name` (`ibm,set-eeh-option`, ...).
    pub(crate) fn rtas_token(&self, name: &str) -> Option<u32> {
        RtasCall::from_name(name).and_then(|call| self.read().token(THIS_VM, call))
    }

    /// Serves the RTAS call in `buf` through this VM's mappings only,
    /// writing its return cells in place.
    pub(crate) fn rtas(
        &self,
        buf: &mut [u8],
        backend: &dyn EehBackend,
        memory: &mut dyn GuestMemory,
    ) -> Result<RtasOutcome, RtasRefused> {
        self.read().serve_rtas(THIS_VM, buf, backend, memory)
    }
}
