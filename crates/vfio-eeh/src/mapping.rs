//! The address-mapping table: which host device each guest address names, per
//! VM.
//!
//! A VMM declares its VM's virtual PHBs (BUIDs) and the host PEs it was given,
//! then maps each passed-through host function to a guest address (the seed's
//! `VFIO_DEVICE_SET_ADDR_MAPPING`). The RTAS front end then resolves the
//! (BUID, config address) a guest names to the host device and its PE.
//!
//! Rules, each a [`MapError`] with the errno it maps to; a refused call
//! changes nothing:
//! * a guest address is unique within its VM;
//! * a host device is mapped at most once, host-wide;
//! * the BUID must be one of the VM's virtual PHBs;
//! * the device's PE must be owned by the VM, and a PE is owned by one VM;
//! * all mapped functions of one PE sit under one virtual PHB (a reset of the
//!   PE must not reach across PHBs the guest thinks independent);
//! * removing what is not there is an error.
//!
//! Lookups are hash-map lookups, O(1) whatever the table's size. The maps
//! use rustc's Fx hash rather than SipHash: keys are addresses the VMM and
//! the host topology choose, never the guest (a guest only looks up), so
//! hash flooding is not a concern, and resolution is on every RTAS call.
//!
//! ```
//! use vfio_eeh::addr::{Buid, ConfigAddr, GuestAddr, PciAddr, PeId};
//! use vfio_eeh::mapping::{AddrMaps, VmId};
//!
//! let mut maps = AddrMaps::default();
//! let vm = VmId(1);
//! maps.add_vm(vm)?;
//! maps.add_phb(vm, Buid::SPAPR_BASE)?;
//! maps.assign_pe(vm, PeId(3))?;
//! let host: PciAddr = "0000:01:00.0".parse().unwrap();
//! let guest = GuestAddr::new(Buid::SPAPR_BASE, 0, 1, 0).unwrap();
//! maps.insert(vm, host, PeId(3), guest)?;
//!
//! let found = maps.resolve(vm, Buid::SPAPR_BASE, guest.config_addr())?;
//! assert_eq!((found.host, found.pe), (host, PeId(3)));
//! # Ok::<(), vfio_eeh::mapping::MapError>(())
//! ```

use std::collections::{HashMap, HashSet};
use std::fmt;

use rustc_hash::FxBuildHasher;

use serde::{Deserialize, Serialize};

use crate::addr::{Buid, ConfigAddr, Devfn, GuestAddr, PciAddr, PeId};
use crate::backend::errno;

/// A virtual machine, as the broker names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct VmId(pub u32);

impl fmt::Display for VmId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "vm{}", self.0)
    }
}

/// Why a mapping call was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "error")]
pub enum MapError {
    /// No such VM.
    #[error("No VM {0}")]
    UnknownVm(VmId),
    /// The VM exists already.
    #[error("VM {0} exists already")]
    VmExists(VmId),
    /// The BUID is not one of the VM's virtual PHBs.
    #[error("BUID {buid} is not a virtual PHB of {vm}")]
    UnknownPhb {
        /// The VM.
        vm: VmId,
        /// The BUID named.
        buid: Buid,
    },
    /// The VM has this virtual PHB already.
    #[error("{vm} has a virtual PHB with BUID {buid} already")]
    PhbExists {
        /// The VM.
        vm: VmId,
        /// The BUID named.
        buid: Buid,
    },
    /// Devices are still mapped under the PHB.
    #[error("Virtual PHB {buid} of {vm} still has mapped devices")]
    PhbInUse {
        /// The VM.
        vm: VmId,
        /// The BUID named.
        buid: Buid,
    },
    /// The PE belongs to another VM.
    #[error("PE {pe} is owned by {owner}")]
    PeOwnedByOther {
        /// The PE.
        pe: PeId,
        /// Its owner.
        owner: VmId,
    },
    /// The VM does not own the PE.
    #[error("{vm} does not own PE {pe}")]
    PeNotOwned {
        /// The VM.
        vm: VmId,
        /// The PE.
        pe: PeId,
    },
    /// Devices of the PE are still mapped.
    #[error("PE {pe} still has mapped devices")]
    PeInUse {
        /// The PE.
        pe: PeId,
    },
    /// Another function of the PE is mapped under a different virtual PHB.
    #[error("PE {pe} is mapped under virtual PHB {existing}; all its functions must be under one PHB")]
    PeSplitAcrossPhbs {
        /// The PE.
        pe: PeId,
        /// The PHB its other functions are under.
        existing: Buid,
    },
    /// The guest address is taken.
    #[error("Guest address {guest} is already mapped to {host}")]
    GuestAddrInUse {
        /// The guest address.
        guest: GuestAddr,
        /// The device it names.
        host: PciAddr,
    },
    /// The host device is mapped already.
    #[error("Host device {host} is already mapped to {guest}")]
    HostAlreadyMapped {
        /// The host device.
        host: PciAddr,
        /// Its guest address.
        guest: GuestAddr,
    },
    /// Nothing is mapped at this guest address.
    #[error("No device is mapped at guest address {0}")]
    GuestNotMapped(GuestAddr),
    /// The host device is not mapped in this VM.
    #[error("Host device {0} is not mapped")]
    HostNotMapped(PciAddr),
}

impl MapError {
    /// The errno the VFIO / broker interface answers with.
    pub fn errno(&self) -> i32 {
        match self {
            MapError::UnknownVm(_) | MapError::GuestNotMapped(_) | MapError::HostNotMapped(_) => errno::ENOENT,
            MapError::VmExists(_) | MapError::PhbExists { .. } | MapError::GuestAddrInUse { .. } => errno::EEXIST,
            MapError::UnknownPhb { .. } | MapError::PeSplitAcrossPhbs { .. } => errno::EINVAL,
            MapError::PeNotOwned { .. } => errno::EPERM,
            MapError::PeOwnedByOther { .. }
            | MapError::PhbInUse { .. }
            | MapError::PeInUse { .. }
            | MapError::HostAlreadyMapped { .. } => errno::EBUSY,
        }
    }
}

/// A host device found for a guest address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mapped {
    /// The guest address.
    pub guest: GuestAddr,
    /// The host device.
    pub host: PciAddr,
    /// The host device's PE.
    pub pe: PeId,
}

/// The guest functions of one PE: the PHB they sit under (meaningful while
/// any is mapped) and their (bus, devfn), sorted so the first names the PE.
/// A boxed sorted slice: a PE has a handful of functions, changed rarely, and
/// a B-tree node (or a vector's spare capacity) per PE cost more than the
/// mapping itself.
#[derive(Debug, Clone)]
struct PeMembers {
    buid: Buid,
    functions: Box<[(u8, Devfn)]>,
}

impl PeMembers {
    fn new() -> Self {
        PeMembers { buid: Buid(0), functions: Box::new([]) }
    }

    /// The PHB of the mapped functions; `None` while none is mapped.
    fn phb(&self) -> Option<Buid> {
        (!self.functions.is_empty()).then_some(self.buid)
    }

    fn add(&mut self, buid: Buid, function: (u8, Devfn)) {
        self.buid = buid;
        if let Err(at) = self.functions.binary_search(&function) {
            let mut functions = std::mem::take(&mut self.functions).into_vec();
            functions.insert(at, function);
            self.functions = functions.into_boxed_slice();
        }
    }

    fn remove(&mut self, function: (u8, Devfn)) {
        if let Ok(at) = self.functions.binary_search(&function) {
            let mut functions = std::mem::take(&mut self.functions).into_vec();
            functions.remove(at);
            self.functions = functions.into_boxed_slice();
        }
    }
}

type Map<K, V> = HashMap<K, V, FxBuildHasher>;
type Set<T> = HashSet<T, FxBuildHasher>;

/// One VM's table.
#[derive(Debug, Clone, Default)]
pub struct VmMap {
    phbs: Set<Buid>,
    pes: Map<PeId, PeMembers>,
    by_guest: Map<GuestAddr, (PciAddr, PeId)>,
    by_host: Map<PciAddr, GuestAddr>,
}

impl VmMap {
    /// The device mapped at a guest address.
    pub fn host_of(&self, guest: GuestAddr) -> Option<Mapped> {
        self.by_guest.get(&guest).map(|&(host, pe)| Mapped { guest, host, pe })
    }

    /// The guest address of a host device.
    pub fn guest_of(&self, host: PciAddr) -> Option<GuestAddr> {
        self.by_host.get(&host).copied()
    }

    /// Whether the VM has this virtual PHB.
    pub fn has_phb(&self, buid: Buid) -> bool {
        self.phbs.contains(&buid)
    }

    /// Whether the VM owns this PE.
    pub fn owns(&self, pe: PeId) -> bool {
        self.pes.contains_key(&pe)
    }

    /// The VM's virtual PHBs, sorted.
    pub fn phbs(&self) -> Vec<Buid> {
        sorted(self.phbs.iter().copied())
    }

    /// The PEs the VM owns, sorted.
    pub fn pes(&self) -> Vec<PeId> {
        sorted(self.pes.keys().copied())
    }

    /// Every mapping, sorted by guest address.
    pub fn entries(&self) -> Vec<Mapped> {
        let mut all: Vec<Mapped> =
            self.by_guest.iter().map(|(&guest, &(host, pe))| Mapped { guest, host, pe }).collect();
        all.sort_by_key(|m| m.guest);
        all
    }

    /// The PE's guest config address: its lowest mapped function, with the
    /// low register byte 1 (as QEMU does) so that no PE address is 0, which
    /// Linux guests before 5.10 refuse. `None` if nothing of it is mapped.
    pub fn pe_config_addr(&self, pe: PeId) -> Option<(Buid, ConfigAddr)> {
        let members = self.pes.get(&pe)?;
        let &(bus, devfn) = members.functions.first()?;
        let config = ConfigAddr::new(bus, devfn, 1).expect("register 1 is in range");
        Some((members.phb()?, config))
    }

    /// How many functions of the PE are mapped in this VM.
    pub fn pe_function_count(&self, pe: PeId) -> usize {
        self.pes.get(&pe).map_or(0, |m| m.functions.len())
    }

    /// Number of mapped devices.
    pub fn len(&self) -> usize {
        self.by_guest.len()
    }

    /// Whether nothing is mapped.
    pub fn is_empty(&self) -> bool {
        self.by_guest.is_empty()
    }
}

fn sorted<T: Ord>(items: impl Iterator<Item = T>) -> Vec<T> {
    let mut v: Vec<T> = items.collect();
    v.sort();
    v
}

/// Every VM's table, with the host-wide rules (a PE has one owner).
#[derive(Debug, Clone, Default)]
pub struct AddrMaps {
    vms: Map<VmId, VmMap>,
    pe_owner: Map<PeId, VmId>,
    /// Every mapped host device's guest address, whichever VM maps it: a
    /// device belongs to at most one VM's table.
    host_guest: Map<PciAddr, GuestAddr>,
}

impl AddrMaps {
    /// Adds an empty VM.
    pub fn add_vm(&mut self, vm: VmId) -> Result<(), MapError> {
        if self.vms.contains_key(&vm) {
            return Err(MapError::VmExists(vm));
        }
        self.vms.insert(vm, VmMap::default());
        Ok(())
    }

    /// Removes a VM with all its PHBs, PEs and mappings.
    pub fn remove_vm(&mut self, vm: VmId) -> Result<VmMap, MapError> {
        let map = self.vms.remove(&vm).ok_or(MapError::UnknownVm(vm))?;
        for pe in map.pes.keys() {
            self.pe_owner.remove(pe);
        }
        for host in map.by_host.keys() {
            self.host_guest.remove(host);
        }
        Ok(map)
    }

    /// One VM's table.
    pub fn vm(&self, vm: VmId) -> Result<&VmMap, MapError> {
        self.vms.get(&vm).ok_or(MapError::UnknownVm(vm))
    }

    fn vm_mut(&mut self, vm: VmId) -> Result<&mut VmMap, MapError> {
        self.vms.get_mut(&vm).ok_or(MapError::UnknownVm(vm))
    }

    /// The VMs, sorted.
    pub fn vms(&self) -> Vec<VmId> {
        sorted(self.vms.keys().copied())
    }

    /// The VM that owns a PE.
    pub fn owner_of(&self, pe: PeId) -> Option<VmId> {
        self.pe_owner.get(&pe).copied()
    }

    /// Gives a VM a virtual PHB.
    pub fn add_phb(&mut self, vm: VmId, buid: Buid) -> Result<(), MapError> {
        let map = self.vm_mut(vm)?;
        if !map.phbs.insert(buid) {
            return Err(MapError::PhbExists { vm, buid });
        }
        Ok(())
    }

    /// Takes a virtual PHB away; refused while devices are mapped under it.
    pub fn remove_phb(&mut self, vm: VmId, buid: Buid) -> Result<(), MapError> {
        let map = self.vm_mut(vm)?;
        if !map.phbs.contains(&buid) {
            return Err(MapError::UnknownPhb { vm, buid });
        }
        if map.pes.values().any(|m| m.phb() == Some(buid)) {
            return Err(MapError::PhbInUse { vm, buid });
        }
        map.phbs.remove(&buid);
        Ok(())
    }

    /// Gives a VM a host PE. Assigning a PE it owns already is a no-op.
    pub fn assign_pe(&mut self, vm: VmId, pe: PeId) -> Result<(), MapError> {
        self.vm(vm)?;
        match self.pe_owner.get(&pe) {
            Some(&owner) if owner == vm => return Ok(()),
            Some(&owner) => return Err(MapError::PeOwnedByOther { pe, owner }),
            None => {}
        }
        self.pe_owner.insert(pe, vm);
        self.vm_mut(vm)?.pes.insert(pe, PeMembers::new());
        Ok(())
    }

    /// Takes a PE back from a VM; refused while its devices are mapped.
    pub fn release_pe(&mut self, vm: VmId, pe: PeId) -> Result<(), MapError> {
        let map = self.vm_mut(vm)?;
        let members = map.pes.get(&pe).ok_or(MapError::PeNotOwned { vm, pe })?;
        if !members.functions.is_empty() {
            return Err(MapError::PeInUse { pe });
        }
        map.pes.remove(&pe);
        self.pe_owner.remove(&pe);
        Ok(())
    }

    /// Maps host device `host`, which sits in PE `pe`, at `guest`.
    pub fn insert(&mut self, vm: VmId, host: PciAddr, pe: PeId, guest: GuestAddr) -> Result<(), MapError> {
        // Host-wide rule first: a device belongs to at most one VM's table.
        if let Some(&existing) = self.host_guest.get(&host) {
            return Err(MapError::HostAlreadyMapped { host, guest: existing });
        }
        let map = self.vm_mut(vm)?;
        if !map.phbs.contains(&guest.buid()) {
            return Err(MapError::UnknownPhb { vm, buid: guest.buid() });
        }
        let members = map.pes.get(&pe).ok_or(MapError::PeNotOwned { vm, pe })?;
        if let Some(existing) = members.phb().filter(|&b| b != guest.buid()) {
            return Err(MapError::PeSplitAcrossPhbs { pe, existing });
        }
        if let Some(&(taken_by, _)) = map.by_guest.get(&guest) {
            return Err(MapError::GuestAddrInUse { guest, host: taken_by });
        }
        let members = map.pes.get_mut(&pe).expect("checked above");
        members.add(guest.buid(), (guest.bus(), guest.devfn()));
        map.by_guest.insert(guest, (host, pe));
        map.by_host.insert(host, guest);
        self.host_guest.insert(host, guest);
        Ok(())
    }

    /// Removes the mapping of host device `host`; returns its guest address.
    pub fn remove_host(&mut self, vm: VmId, host: PciAddr) -> Result<GuestAddr, MapError> {
        let map = self.vm_mut(vm)?;
        let guest = map.by_host.remove(&host).ok_or(MapError::HostNotMapped(host))?;
        let (_, pe) = map.by_guest.remove(&guest).expect("both directions are kept together");
        let members = map.pes.get_mut(&pe).expect("a mapped PE is owned");
        members.remove((guest.bus(), guest.devfn()));
        self.host_guest.remove(&host);
        Ok(guest)
    }

    /// Removes the mapping at a guest address; returns what it named.
    pub fn remove_guest(&mut self, vm: VmId, guest: GuestAddr) -> Result<Mapped, MapError> {
        let mapped = self.vm(vm)?.host_of(guest).ok_or(MapError::GuestNotMapped(guest))?;
        self.remove_host(vm, mapped.host)?;
        Ok(mapped)
    }

    /// Resolves the (BUID, config address) a guest names to the host device
    /// and its PE. The register bits of `config` are ignored, so a PE config
    /// address resolves like the address of the function it names.
    pub fn resolve(&self, vm: VmId, buid: Buid, config: ConfigAddr) -> Result<Mapped, MapError> {
        let map = self.vm(vm)?;
        let guest = GuestAddr::from_config(buid, config);
        match map.host_of(guest) {
            Some(found) => Ok(found),
            None if !map.has_phb(buid) => Err(MapError::UnknownPhb { vm, buid }),
            None => Err(MapError::GuestNotMapped(guest)),
        }
    }
}

#[cfg(test)]
mod tests;
