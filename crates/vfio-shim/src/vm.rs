//! This process's VM: what its VMM declared and holds (virtual PHBs, the
//! groups it opened, the guest address of each mapped device) and its RTAS
//! EEH firmware, on [`vfio_eeh::vm::Vms`] as `eehd` keeps them.
//!
//! This is the one place of the emulation that serves "mapping set, clear,
//! get" and "RTAS call" for the VM: the address-mapping ioctl
//! ([`super::vfio`]'s device files) and the exported RTAS entry point reach
//! the VM only through [`ThisVm`]'s methods, each answering a positive
//! errno at this edge. The VM's virtual PHBs are the configured ones
//! ([`ShimConfig::virtual_phbs`](crate::config::ShimConfig::virtual_phbs)).
//!
//! * In the in-process mode ([`ThisVm::Local`]) the VM is the process: one
//!   VM of its own [`Vms`], owning the PEs of the groups the process has
//!   open.
//! * Under eehd ([`ThisVm::Eehd`]) the VM is eehd's, shared with the VMMs
//!   acting for the same VM: its PHBs are declared to eehd, its PEs are the
//!   groups eehd lent, and every call is a request on the socket, answered
//!   by the same [`Vms`] rules ([`EehdHost`]'s VM requests).

use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use vfio_eeh::addr::{Buid, GuestAddr, PciAddr, PeId};
use vfio_eeh::backend::errno::EINVAL;
use vfio_eeh::backend::EehBackend;
use vfio_eeh::mapping::VmId;
use vfio_eeh::rtas::{GuestMemory, RtasCall, RtasOutcome};
use vfio_eeh::vm::Vms;

use crate::daemon::EehdHost;

/// The id of the process's VM within its own [`Vms`].
const THIS_VM: VmId = VmId(1);

/// The process's VM.
#[derive(Debug)]
pub(crate) enum ThisVm {
    /// The VM of the in-process host, kept in this process.
    Local(RwLock<Vms>),
    /// The VM eehd keeps, reached through the host's session.
    Eehd(Arc<EehdHost>),
}

impl ThisVm {
    /// An in-process VM with the virtual PHBs `phbs`, owning no PE yet.
    pub(crate) fn local(phbs: &[Buid]) -> Self {
        let mut vms = Vms::default();
        vms.add_vm(THIS_VM).expect("the first VM");
        for &buid in phbs {
            // A BUID named twice is one PHB.
            let _ = vms.add_phb(THIS_VM, buid);
        }
        ThisVm::Local(RwLock::new(vms))
    }

    /// The VMM opened the group of `pe`: the VM owns it (under eehd the
    /// group's attach claimed it already).
    pub(crate) fn claim(&self, pe: PeId) {
        if let ThisVm::Local(vms) = self {
            // One VM: no other owner can refuse it.
            let _ = write(vms).claim(THIS_VM, pe);
        }
    }

    /// The VMM closes the group of `pe`: its devices leave the VM with
    /// their mappings.
    pub(crate) fn release(&self, pe: PeId) {
        match self {
            // Claimed when the group was opened.
            ThisVm::Local(vms) => drop(write(vms).release_with_mappings(THIS_VM, pe)),
            ThisVm::Eehd(eehd) => eehd.clear_mappings_of(pe),
        }
    }

    /// `VFIO_DEVICE_ADDR_MAPPING_SET`.
    pub(crate) fn map_set(&self, backend: &dyn EehBackend, host: PciAddr, guest: GuestAddr) -> Result<(), i32> {
        match self {
            ThisVm::Local(vms) => write(vms).map_set(THIS_VM, backend, host, guest).map_err(|e| e.errno()),
            ThisVm::Eehd(eehd) => eehd.map_set(host, guest),
        }
    }

    /// `VFIO_DEVICE_ADDR_MAPPING_CLEAR`.
    pub(crate) fn map_clear(&self, host: PciAddr) -> Result<(), i32> {
        match self {
            ThisVm::Local(vms) => write(vms).map_clear(THIS_VM, host).map(drop).map_err(|e| e.errno()),
            ThisVm::Eehd(eehd) => eehd.map_clear(host),
        }
    }

    /// `VFIO_DEVICE_ADDR_MAPPING_GET`.
    pub(crate) fn map_get(&self, host: PciAddr) -> Result<GuestAddr, i32> {
        match self {
            ThisVm::Local(vms) => read(vms).map_get(THIS_VM, host).map_err(|e| e.errno()),
            ThisVm::Eehd(eehd) => eehd.map_get(host),
        }
    }

    /// The token of the RTAS call named `name` (`ibm,set-eeh-option`, ...).
    pub(crate) fn rtas_token(&self, name: &str) -> Option<u32> {
        let call = RtasCall::from_name(name)?;
        match self {
            ThisVm::Local(vms) => read(vms).token(THIS_VM, call),
            ThisVm::Eehd(_) => crate::daemon::eehds_tokens().token(call),
        }
    }

    /// Serves the RTAS call in `buf` through this VM's mappings only,
    /// writing its return cells in place and what it writes into guest
    /// memory into `memory`. A buffer that is no RTAS call is `EINVAL`;
    /// under eehd, a call that does not reach it `EIO`.
    pub(crate) fn rtas(
        &self,
        buf: &mut [u8],
        backend: &dyn EehBackend,
        memory: &mut dyn GuestMemory,
    ) -> Result<RtasOutcome, i32> {
        match self {
            ThisVm::Local(vms) => read(vms).serve_rtas(THIS_VM, buf, backend, memory).map_err(|_| EINVAL),
            ThisVm::Eehd(eehd) => eehd.rtas(buf, memory),
        }
    }
}

fn read(vms: &RwLock<Vms>) -> RwLockReadGuard<'_, Vms> {
    vms.read().unwrap_or_else(PoisonError::into_inner)
}

fn write(vms: &RwLock<Vms>) -> RwLockWriteGuard<'_, Vms> {
    vms.write().unwrap_or_else(PoisonError::into_inner)
}
