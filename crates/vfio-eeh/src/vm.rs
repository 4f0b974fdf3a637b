//! The per-VM authority of one host: every VM's virtual PHBs, owned PEs,
//! address mappings ([`AddrMaps`]) and RTAS firmware ([`EehRtas`]), and the
//! rules a VMM's requests go through.
//!
//! `eehd` serves it to many VMMs over its socket; the preload library's
//! in-process mode serves it to one VM, the process it is loaded into. Both
//! call the same methods and turn a [`VmError`] into their own answer at
//! their edge (a wire error, an errno).
//!
//! Isolation: a VM acts only within itself. A device in another VM's PE is
//! answered as one the host lacks, and RTAS calls resolve only through the
//! calling VM's own mappings, so another VM's guest addresses are answered
//! as addresses that name nothing (PAPR -3, parameter error).
//!
//! ```
//! use vfio_eeh::addr::{Buid, GuestAddr, PciAddr, PeId};
//! use vfio_eeh::backend::{BackendError, EehBackend, PeOpReply};
//! use vfio_eeh::mapping::VmId;
//! use vfio_eeh::ops::EehOp;
//! use vfio_eeh::vm::Vms;
//!
//! /// A host with one function, 0000:01:00.0, in PE 0.
//! struct OneDevice;
//! impl EehBackend for OneDevice {
//!     fn pe_of(&self, device: PciAddr) -> Result<PeId, BackendError> {
//!         (device.to_string() == "0000:01:00.0").then_some(PeId(0)).ok_or(BackendError::NoDevice(device))
//!     }
//!     fn devices_of(&self, pe: PeId) -> Result<Vec<PciAddr>, BackendError> {
//!         Ok(vec!["0000:01:00.0".parse().unwrap()])
//!     }
//!     fn pe_op(&self, _: PeId, _: EehOp) -> Result<PeOpReply, BackendError> {
//!         Ok(PeOpReply::Done)
//!     }
//! }
//!
//! let mut vms = Vms::default();
//! let vm = VmId(1);
//! vms.add_vm(vm)?;
//! vms.add_phb(vm, Buid::SPAPR_BASE)?;
//! vms.claim(vm, PeId(0))?;
//! let host: PciAddr = "0000:01:00.0".parse().unwrap();
//! let guest = GuestAddr::new(Buid::SPAPR_BASE, 0, 1, 0).unwrap();
//! vms.map_set(vm, &OneDevice, host, guest)?;
//! assert_eq!(vms.map_get(vm, host)?, guest);
//! # Ok::<(), vfio_eeh::vm::VmError>(())
//! ```

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use crate::addr::{Buid, GuestAddr, PciAddr, PeId};
use crate::backend::{BackendError, EehBackend};
use crate::mapping::{AddrMaps, MapError, VmId, VmMap};
use crate::rtas::{DecodeError, EehRtas, GuestMemory, RtasCall, RtasContext, RtasOutcome, RtasPolicy, TokenTable};

/// Why a VM's request was refused. Nothing was changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VmError {
    /// The mapping rules refused it.
    #[error(transparent)]
    Map(#[from] MapError),
    /// The host lacks the device or PE named, or it is another VM's.
    #[error(transparent)]
    Host(#[from] BackendError),
}

impl VmError {
    /// The errno the VFIO / broker interface answers with.
    pub fn errno(&self) -> i32 {
        match self {
            VmError::Map(error) => error.errno(),
            VmError::Host(error) => error.errno(),
        }
    }
}

/// Every VM of one host: their tables and their RTAS firmware.
///
/// The firmware of each VM sits behind its own lock, so that VMs are served
/// RTAS calls at once through a shared reference while the tables change
/// only through an exclusive one.
#[derive(Debug, Default)]
pub struct Vms {
    maps: AddrMaps,
    firmware: HashMap<VmId, Mutex<EehRtas>>,
}

impl Clone for Vms {
    fn clone(&self) -> Self {
        let firmware = self
            .firmware
            .iter()
            .map(|(&vm, rtas)| (vm, Mutex::new(rtas.lock().unwrap_or_else(PoisonError::into_inner).clone())))
            .collect();
        Vms { maps: self.maps.clone(), firmware }
    }
}

impl Vms {
    /// Adds a VM with no PHB, PE or mapping, and its firmware (the default
    /// token table and answer policy).
    pub fn add_vm(&mut self, vm: VmId) -> Result<(), MapError> {
        self.maps.add_vm(vm)?;
        self.firmware.insert(vm, Mutex::new(EehRtas::new(vm, TokenTable::default(), RtasPolicy::default())));
        Ok(())
    }

    /// Every VM's table, to read.
    pub fn maps(&self) -> &AddrMaps {
        &self.maps
    }

    /// One VM's table.
    pub fn table(&self, vm: VmId) -> Result<&VmMap, MapError> {
        self.maps.vm(vm)
    }

    /// Gives a VM a virtual PHB.
    pub fn add_phb(&mut self, vm: VmId, buid: Buid) -> Result<(), MapError> {
        self.maps.add_phb(vm, buid)
    }

    /// Takes a virtual PHB away; refused while devices are mapped under it.
    pub fn remove_phb(&mut self, vm: VmId, buid: Buid) -> Result<(), MapError> {
        self.maps.remove_phb(vm, buid)
    }

    /// Gives a VM a host PE (its VMM opened the group). Claiming a PE the VM
    /// holds already is a no-op; another VM's is refused.
    pub fn claim(&mut self, vm: VmId, pe: PeId) -> Result<(), MapError> {
        self.maps.assign_pe(vm, pe)
    }

    /// Takes a PE back from a VM; refused while its devices are mapped.
    pub fn release(&mut self, vm: VmId, pe: PeId) -> Result<(), MapError> {
        self.maps.release_pe(vm, pe)
    }

    /// Takes a PE back from a VM together with the mappings of its devices
    /// (its VMM closed the group: the devices are gone from the guest).
    pub fn release_with_mappings(&mut self, vm: VmId, pe: PeId) -> Result<(), MapError> {
        let mapped: Vec<PciAddr> =
            self.maps.vm(vm)?.entries().into_iter().filter(|m| m.pe == pe).map(|m| m.host).collect();
        for host in mapped {
            self.maps.remove_host(vm, host)?;
        }
        self.maps.release_pe(vm, pe)
    }

    /// The PE of `host` if it is a function of one of `vm`'s PEs; any other
    /// device (one the host lacks, one of another VM or of nobody) is
    /// answered as one the host lacks.
    pub fn owned_device(&self, vm: VmId, backend: &dyn EehBackend, host: PciAddr) -> Result<PeId, BackendError> {
        let pe = backend.pe_of(host).map_err(|_| BackendError::NoDevice(host))?;
        if self.maps.owner_of(pe) == Some(vm) {
            Ok(pe)
        } else {
            Err(BackendError::NoDevice(host))
        }
    }

    /// `VFIO_DEVICE_ADDR_MAPPING_SET`: maps host function `host` at `guest`
    /// in `vm`. A device the host lacks or of another VM's PE is answered as
    /// one the host lacks ([`BackendError::NoDevice`]); one of a PE nobody
    /// holds, [`MapError::PeNotOwned`]; then the [`AddrMaps`] rules.
    pub fn map_set(
        &mut self,
        vm: VmId,
        backend: &dyn EehBackend,
        host: PciAddr,
        guest: GuestAddr,
    ) -> Result<(), VmError> {
        let pe = backend.pe_of(host).map_err(|_| BackendError::NoDevice(host))?;
        if self.maps.owner_of(pe).is_some_and(|owner| owner != vm) {
            return Err(BackendError::NoDevice(host).into());
        }
        Ok(self.maps.insert(vm, host, pe, guest)?)
    }

    /// `VFIO_DEVICE_ADDR_MAPPING_CLEAR`: removes the mapping of `host`;
    /// returns the guest address it had.
    pub fn map_clear(&mut self, vm: VmId, host: PciAddr) -> Result<GuestAddr, MapError> {
        self.maps.remove_host(vm, host)
    }

    /// `VFIO_DEVICE_ADDR_MAPPING_GET`: the guest address of `host`.
    pub fn map_get(&self, vm: VmId, host: PciAddr) -> Result<GuestAddr, MapError> {
        self.maps.vm(vm)?.guest_of(host).ok_or(MapError::HostNotMapped(host))
    }

    /// The token `vm`'s firmware gives `call` (what its `/rtas` node says).
    pub fn token(&self, vm: VmId, call: RtasCall) -> Option<u32> {
        let firmware = self.firmware.get(&vm)?.lock().unwrap_or_else(PoisonError::into_inner);
        firmware.tokens().token(call)
    }

    /// Serves the RTAS call in `buf` (the `rtas_args` cells as guest memory
    /// holds them) for `vm`, resolving addresses through its mappings only,
    /// and writes the return cells in place; see [`EehRtas::serve`].
    pub fn serve_rtas(
        &self,
        vm: VmId,
        buf: &mut [u8],
        backend: &dyn EehBackend,
        memory: &mut dyn GuestMemory,
    ) -> Result<RtasOutcome, RtasRefused> {
        let firmware = self.firmware.get(&vm).ok_or(RtasRefused::UnknownVm(vm))?;
        let mut firmware = firmware.lock().unwrap_or_else(PoisonError::into_inner);
        let mut ctx = RtasContext { maps: &self.maps, backend, memory };
        Ok(firmware.serve(buf, &mut ctx)?)
    }
}

/// Why an RTAS buffer was not served at all (no status could be written).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RtasRefused {
    /// No such VM.
    #[error("No VM {0}")]
    UnknownVm(VmId),
    /// The buffer is not an RTAS call.
    #[error(transparent)]
    Buffer(#[from] DecodeError),
}

#[cfg(test)]
mod tests;
