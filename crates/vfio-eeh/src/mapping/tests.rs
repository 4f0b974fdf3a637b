use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;

const VM: VmId = VmId(1);
const OTHER: VmId = VmId(2);
const PHB: Buid = Buid::SPAPR_BASE;
const PHB2: Buid = Buid(0x0800_0000_2000_0001);

fn host(s: &str) -> PciAddr {
    s.parse().unwrap()
}

fn guest(buid: Buid, slot: u8, func: u8) -> GuestAddr {
    GuestAddr::new(buid, 0, slot, func).unwrap()
}

/// Two VMs; VM owns PEs 1 and 2 and has PHB and PHB2; OTHER owns PE 9.
fn setup() -> AddrMaps {
    let mut maps = AddrMaps::default();
    for vm in [VM, OTHER] {
        maps.add_vm(vm).unwrap();
        maps.add_phb(vm, PHB).unwrap();
    }
    maps.add_phb(VM, PHB2).unwrap();
    maps.assign_pe(VM, PeId(1)).unwrap();
    maps.assign_pe(VM, PeId(2)).unwrap();
    maps.assign_pe(OTHER, PeId(9)).unwrap();
    maps
}

/// Checks that a refused call left the table exactly as it was.
fn refused(maps: &mut AddrMaps, call: impl FnOnce(&mut AddrMaps) -> Result<(), MapError>) -> MapError {
    let before = format!("{:?}", snapshot(maps));
    let err = call(maps).expect_err("call should be refused");
    assert_eq!(format!("{:?}", snapshot(maps)), before, "a refused call changed the table");
    err
}

/// One VM's PHBs, PEs and mappings.
type VmSnapshot = (VmId, Vec<Buid>, Vec<PeId>, Vec<Mapped>);

fn snapshot(maps: &AddrMaps) -> Vec<VmSnapshot> {
    maps.vms()
        .into_iter()
        .map(|vm| {
            let m = maps.vm(vm).unwrap();
            (vm, m.phbs(), m.pes(), m.entries())
        })
        .collect()
}

#[test]
fn insert_then_query_both_ways_and_resolve() {
    let mut maps = setup();
    let h = host("0000:01:00.0");
    let g = guest(PHB, 1, 0);
    maps.insert(VM, h, PeId(1), g).unwrap();
    let vm = maps.vm(VM).unwrap();
    assert_eq!(vm.guest_of(h), Some(g));
    assert_eq!(vm.host_of(g), Some(Mapped { guest: g, host: h, pe: PeId(1) }));
    // Register bits are ignored: the PE address (register 1) resolves too.
    let with_reg = ConfigAddr::new(0, g.devfn(), 0x40).unwrap();
    assert_eq!(maps.resolve(VM, PHB, with_reg).unwrap().host, h);
}

#[test]
fn guest_address_is_unique_within_a_vm_but_not_across_vms() {
    let mut maps = setup();
    let g = guest(PHB, 1, 0);
    maps.insert(VM, host("0000:01:00.0"), PeId(1), g).unwrap();
    let err = refused(&mut maps, |m| m.insert(VM, host("0000:01:00.1"), PeId(1), g));
    assert_eq!(err, MapError::GuestAddrInUse { guest: g, host: host("0000:01:00.0") });
    assert_eq!(err.errno(), errno::EEXIST);
    // Another VM has its own guest address space.
    maps.insert(OTHER, host("0002:01:00.0"), PeId(9), g).unwrap();
}

#[test]
fn a_host_device_is_mapped_at_most_once_host_wide() {
    let mut maps = setup();
    let h = host("0000:01:00.0");
    maps.insert(VM, h, PeId(1), guest(PHB, 1, 0)).unwrap();
    let err = refused(&mut maps, |m| m.insert(VM, h, PeId(1), guest(PHB, 2, 0)));
    assert!(matches!(err, MapError::HostAlreadyMapped { .. }));
    assert_eq!(err.errno(), errno::EBUSY);
    let err = refused(&mut maps, |m| m.insert(OTHER, h, PeId(9), guest(PHB, 2, 0)));
    assert!(matches!(err, MapError::HostAlreadyMapped { .. }));
}

#[test]
fn buid_must_be_a_phb_of_the_vm() {
    let mut maps = setup();
    let err = refused(&mut maps, |m| m.insert(OTHER, host("0002:01:00.0"), PeId(9), guest(PHB2, 1, 0)));
    assert_eq!(err, MapError::UnknownPhb { vm: OTHER, buid: PHB2 });
    assert_eq!(err.errno(), errno::EINVAL);
    assert_eq!(
        maps.resolve(OTHER, PHB2, ConfigAddr::from_raw(0).unwrap()),
        Err(MapError::UnknownPhb { vm: OTHER, buid: PHB2 })
    );
}

#[test]
fn device_must_belong_to_a_pe_the_vm_owns() {
    let mut maps = setup();
    let err = refused(&mut maps, |m| m.insert(VM, host("0002:01:00.0"), PeId(9), guest(PHB, 1, 0)));
    assert_eq!(err, MapError::PeNotOwned { vm: VM, pe: PeId(9) });
    assert_eq!(err.errno(), errno::EPERM);
    let err = refused(&mut maps, |m| m.assign_pe(VM, PeId(9)));
    assert_eq!(err, MapError::PeOwnedByOther { pe: PeId(9), owner: OTHER });
    maps.assign_pe(VM, PeId(1)).expect("re-assigning to the owner is a no-op");
}

#[test]
fn a_pe_stays_under_one_phb() {
    let mut maps = setup();
    maps.insert(VM, host("0000:01:00.0"), PeId(1), guest(PHB, 1, 0)).unwrap();
    let err = refused(&mut maps, |m| m.insert(VM, host("0000:01:00.1"), PeId(1), guest(PHB2, 1, 1)));
    assert_eq!(err, MapError::PeSplitAcrossPhbs { pe: PeId(1), existing: PHB });
    // Once the PE has no mapped function it may move.
    maps.remove_host(VM, host("0000:01:00.0")).unwrap();
    maps.insert(VM, host("0000:01:00.1"), PeId(1), guest(PHB2, 1, 1)).unwrap();
}

#[test]
fn removing_absent_things_is_an_error() {
    let mut maps = setup();
    let err = refused(&mut maps, |m| m.remove_host(VM, host("0000:01:00.0")).map(drop));
    assert_eq!(err.errno(), errno::ENOENT);
    let err = refused(&mut maps, |m| m.remove_guest(VM, guest(PHB, 1, 0)).map(drop));
    assert_eq!(err, MapError::GuestNotMapped(guest(PHB, 1, 0)));
    assert_eq!(refused(&mut maps, |m| m.remove_vm(VmId(7)).map(drop)), MapError::UnknownVm(VmId(7)));
    assert_eq!(refused(&mut maps, |m| m.release_pe(VM, PeId(9))), MapError::PeNotOwned { vm: VM, pe: PeId(9) });
    assert_eq!(refused(&mut maps, |m| m.remove_phb(OTHER, PHB2)), MapError::UnknownPhb { vm: OTHER, buid: PHB2 });
}

#[test]
fn in_use_phbs_and_pes_cannot_be_taken_away() {
    let mut maps = setup();
    maps.insert(VM, host("0000:01:00.0"), PeId(1), guest(PHB, 1, 0)).unwrap();
    assert_eq!(refused(&mut maps, |m| m.remove_phb(VM, PHB)), MapError::PhbInUse { vm: VM, buid: PHB });
    assert_eq!(refused(&mut maps, |m| m.release_pe(VM, PeId(1))), MapError::PeInUse { pe: PeId(1) });
    assert_eq!(refused(&mut maps, |m| m.add_phb(VM, PHB)), MapError::PhbExists { vm: VM, buid: PHB });
    assert_eq!(refused(&mut maps, |m| m.add_vm(VM)), MapError::VmExists(VM));
    maps.remove_phb(VM, PHB2).unwrap();
    maps.release_pe(VM, PeId(2)).unwrap();
    assert_eq!(maps.owner_of(PeId(2)), None);
}

#[test]
fn a_phb_is_free_again_once_its_last_function_is_unmapped() {
    let mut maps = setup();
    maps.insert(VM, host("0000:01:00.0"), PeId(1), guest(PHB2, 1, 0)).unwrap();
    maps.remove_host(VM, host("0000:01:00.0")).unwrap();
    // PE 1 is still owned, with nothing mapped: it holds no PHB.
    maps.remove_phb(VM, PHB2).unwrap();
    maps.insert(VM, host("0000:01:00.0"), PeId(1), guest(PHB, 1, 0)).unwrap();
    assert_eq!(maps.vm(VM).unwrap().pe_config_addr(PeId(1)).map(|(b, _)| b), Some(PHB));
}

#[test]
fn removing_a_vm_frees_its_pes_and_devices() {
    let mut maps = setup();
    let h = host("0000:01:00.0");
    maps.insert(VM, h, PeId(1), guest(PHB, 1, 0)).unwrap();
    maps.remove_vm(VM).unwrap();
    assert_eq!(maps.owner_of(PeId(1)), None);
    maps.assign_pe(OTHER, PeId(1)).unwrap();
    maps.insert(OTHER, h, PeId(1), guest(PHB, 3, 0)).unwrap();
}

#[test]
fn pe_config_address_is_the_lowest_function_with_register_1() {
    let mut maps = setup();
    assert_eq!(maps.vm(VM).unwrap().pe_config_addr(PeId(1)), None);
    maps.insert(VM, host("0000:01:00.1"), PeId(1), guest(PHB, 4, 1)).unwrap();
    maps.insert(VM, host("0000:01:00.0"), PeId(1), guest(PHB, 4, 0)).unwrap();
    maps.insert(VM, host("0000:02:00.0"), PeId(2), guest(PHB, 5, 0)).unwrap();
    let vm = maps.vm(VM).unwrap();
    assert_eq!(vm.pe_config_addr(PeId(1)), Some((PHB, ConfigAddr::from_raw(4 << 11 | 1).unwrap())));
    assert_eq!(vm.pe_config_addr(PeId(2)), Some((PHB, ConfigAddr::from_raw(5 << 11 | 1).unwrap())));
    assert_eq!((vm.pe_function_count(PeId(1)), vm.pe_function_count(PeId(2))), (2, 1));
    // Every function of PE 1, and its PE address, resolve to PE 1.
    let (_, pe_addr) = vm.pe_config_addr(PeId(1)).unwrap();
    assert_eq!(maps.resolve(VM, PHB, pe_addr).unwrap().pe, PeId(1));
}

#[test]
fn resolve_is_scoped_to_the_calling_vm() {
    let mut maps = setup();
    maps.insert(OTHER, host("0002:01:00.0"), PeId(9), guest(PHB, 1, 0)).unwrap();
    let config = guest(PHB, 1, 0).config_addr();
    assert_eq!(maps.resolve(VM, PHB, config), Err(MapError::GuestNotMapped(guest(PHB, 1, 0))));
    assert_eq!(maps.resolve(OTHER, PHB, config).unwrap().pe, PeId(9));
}

/// One step of the model-based property test.
#[derive(Debug, Clone)]
enum Step {
    Insert { host: u8, pe: u8, slot: u8, phb: bool },
    RemoveHost(u8),
    RemoveGuest { slot: u8, phb: bool },
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        (0u8..12, 0u8..4, 0u8..6, any::<bool>()).prop_map(|(host, pe, slot, phb)| Step::Insert { host, pe, slot, phb }),
        (0u8..12).prop_map(Step::RemoveHost),
        (0u8..6, any::<bool>()).prop_map(|(slot, phb)| Step::RemoveGuest { slot, phb }),
    ]
}

proptest! {
    /// Random insert/remove/query sequences agree with a plain model: a map
    /// from guest address to (host, pe), where inserts follow the rules.
    #[test]
    fn agrees_with_a_simple_model(steps in proptest::collection::vec(step(), 1..60)) {
        let mut maps = AddrMaps::default();
        maps.add_vm(VM).unwrap();
        maps.add_phb(VM, PHB).unwrap();
        maps.add_phb(VM, PHB2).unwrap();
        for pe in 0..3 { maps.assign_pe(VM, PeId(pe)).unwrap(); } // PE 3 is not owned.
        let mut model: BTreeMap<GuestAddr, (PciAddr, PeId)> = BTreeMap::new();
        let h = |n: u8| PciAddr::new(0, n, 0, 0).unwrap();
        let g = |slot: u8, phb: bool| guest(if phb { PHB2 } else { PHB }, slot, 0);
        for step in steps {
            match step {
                Step::Insert { host, pe, slot, phb } => {
                    let (host, pe, guest) = (h(host), PeId(pe.into()), g(slot, phb));
                    let allowed = pe.0 < 3
                        && !model.contains_key(&guest)
                        && !model.values().any(|&(h2, _)| h2 == host)
                        && !model.iter().any(|(g2, &(_, p2))| p2 == pe && g2.buid() != guest.buid());
                    let result = maps.insert(VM, host, pe, guest);
                    prop_assert_eq!(result.is_ok(), allowed, "{:?}", result);
                    if allowed { model.insert(guest, (host, pe)); }
                }
                Step::RemoveHost(n) => {
                    let found = model.iter().find(|(_, &(h2, _))| h2 == h(n)).map(|(g2, _)| *g2);
                    let result = maps.remove_host(VM, h(n));
                    prop_assert_eq!(result.ok(), found);
                    if let Some(g2) = found { model.remove(&g2); }
                }
                Step::RemoveGuest { slot, phb } => {
                    let result = maps.remove_guest(VM, g(slot, phb));
                    prop_assert_eq!(result.is_ok(), model.remove(&g(slot, phb)).is_some());
                }
            }
            let vm = maps.vm(VM).unwrap();
            prop_assert_eq!(vm.len(), model.len());
            for (&guest, &(host, pe)) in &model {
                prop_assert_eq!(vm.guest_of(host), Some(guest));
                prop_assert_eq!(maps.resolve(VM, guest.buid(), guest.config_addr()).unwrap(), Mapped { guest, host, pe });
            }
            for pe in 0..3 {
                let functions: Vec<_> = model.iter().filter(|(_, &(_, p))| p == PeId(pe)).map(|(g2, _)| *g2).collect();
                prop_assert_eq!(vm.pe_function_count(PeId(pe)), functions.len());
                let expected = functions.iter().min().map(|g2| (g2.buid(), ConfigAddr::new(g2.bus(), g2.devfn(), 1).unwrap()));
                prop_assert_eq!(vm.pe_config_addr(PeId(pe)), expected);
            }
        }
    }
}
