//! Resolution: guest (BUID, config address) → host device and PE in an
//! address table of N devices spread over [`RESOLVE_VMS`] VMs.

use vfio_eeh::addr::{Buid, ConfigAddr, GuestAddr, PciAddr, PeId};
use vfio_eeh::mapping::{AddrMaps, VmId};

/// VMs the resolution table spreads its devices over.
pub const RESOLVE_VMS: u32 = 256;
/// Table sizes the resolution figure is measured at.
pub const RESOLVE_SIZES: [usize; 3] = [1, 1024, 65536];

/// An address table of `devices` mapped functions over [`RESOLVE_VMS`] VMs,
/// one PE per function (as SR-IOV VFs are), with a random sequence of
/// lookups of mapped entries.
pub struct ResolveTable {
    /// The table.
    pub maps: AddrMaps,
    /// (VM, BUID, config address) of mapped functions, in random order; the
    /// length is a power of two.
    pub lookups: Vec<(VmId, Buid, ConfigAddr)>,
}

/// Where the table puts device `i`: its VM, host address, PE and guest
/// address.
fn resolve_entry(i: usize, vms: u32) -> (VmId, PciAddr, PeId, GuestAddr) {
    let vms = vms as usize;
    let field = |v: usize, bits: u32| u8::try_from(v & ((1 << bits) - 1)).expect("masked");
    let vm = VmId(u32::try_from(i % vms).expect("fewer than 2^32 VMs"));
    let host = PciAddr::new(
        u32::try_from(i >> 16).expect("fewer than 2^48 devices"),
        field(i >> 8, 8),
        field(i >> 3, 5),
        field(i, 3),
    )
    .expect("fields are masked into range");
    let pe = PeId(u32::try_from(i).expect("fewer than 2^32 devices"));
    let j = i / vms;
    let guest = GuestAddr::new(Buid::SPAPR_BASE, field(j >> 8, 8), field(j >> 3, 5), field(j, 3))
        .expect("fields are masked into range");
    (vm, host, pe, guest)
}

/// The address table alone (what [`mapping_memory`](crate::memory::mapping_memory) weighs).
///
/// # Panics
/// If `devices / vms` exceeds 65536 (one PHB's worth of guest addresses).
pub fn build_maps(devices: usize, vms: u32) -> AddrMaps {
    assert!(devices.div_ceil(vms as usize) <= 1 << 16, "at most 65536 devices per VM");
    let mut maps = AddrMaps::default();
    for vm in 0..vms {
        maps.add_vm(VmId(vm)).expect("new VM");
        maps.add_phb(VmId(vm), Buid::SPAPR_BASE).expect("new PHB");
    }
    for i in 0..devices {
        let (vm, host, pe, guest) = resolve_entry(i, vms);
        maps.assign_pe(vm, pe).expect("a PE per device");
        maps.insert(vm, host, pe, guest).expect("distinct addresses");
    }
    maps
}

impl ResolveTable {
    /// Lookups generated per table (a power of two).
    pub const LOOKUPS: usize = 1 << 16;

    /// A table of `devices` functions over `vms` VMs.
    pub fn new(devices: usize, vms: u32) -> Self {
        let maps = build_maps(devices, vms);
        let mut rng = fastrand::Rng::with_seed(0xEEE);
        let lookups = (0..Self::LOOKUPS)
            .map(|_| {
                let (vm, _, _, guest) = resolve_entry(rng.usize(..devices.max(1)), vms);
                (vm, guest.buid(), guest.config_addr())
            })
            .collect();
        ResolveTable { maps, lookups }
    }

    /// Resolves lookup `i` (modulo the lookup count); returns the PE.
    #[inline]
    pub fn resolve(&self, i: usize) -> PeId {
        let (vm, buid, config) = self.lookups[i & (Self::LOOKUPS - 1)];
        self.maps.resolve(vm, buid, config).map_or(PeId(u32::MAX), |m| m.pe)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolve_table_finds_every_lookup() {
        for devices in [1, 1000] {
            let table = ResolveTable::new(devices, RESOLVE_VMS);
            assert_eq!(table.maps.vms().len(), RESOLVE_VMS as usize);
            for i in 0..4096 {
                assert_ne!(table.resolve(i), PeId(u32::MAX), "lookup {i} of {devices}");
            }
        }
    }
}
