use std::sync::Arc;

use vfio_eeh::addr::{Buid, GuestAddr};
use vfio_eeh::ops::PeState;
use vfio_eeh::rtas::{status, RtasArgs, TokenTable};
use vfio_eeh_sim::clock::VirtualClock;
use vfio_eeh_sim::spec::BUILTIN_TOML;
use vfio_eeh_sim::SimHost;

use super::*;
use crate::protocol::{DeviceSpace, PeAction};

const ROOT: Peer = Peer { pid: 1, uid: 0, gid: 0 };
const NIC: &str = "0000:02:00.0"; // PE 1
const PHB_A: Buid = Buid(0x0800_0000_2000_0000);
const PHB_B: Buid = Buid(0x0800_0000_2100_0000);

fn sim(toml: &str) -> SimHost {
    SimHost::from_toml_str(toml, "test.toml", Arc::new(VirtualClock::new())).unwrap()
}

fn core_on(host: SimHost, dir: &std::path::Path) -> Core<SimHost> {
    Core::start(host, Policy::default(), Store::open(dir).unwrap(), Arc::default()).unwrap()
}

fn open(core: &Core<SimHost>, vm: Option<&str>) -> Session {
    let mut session = Session::new(ROOT);
    let outcome = core.handle(&mut session, &Request::Hello { version: PROTOCOL_VERSION, vm: vm.map(Into::into) });
    assert!(matches!(outcome.frame, ServerFrame::Ok(Answer::Hello { .. })), "{outcome:?}");
    session
}

fn ok(core: &Core<SimHost>, session: &mut Session, request: Request) -> Answer {
    match core.handle(session, &request).frame {
        ServerFrame::Ok(answer) => answer,
        other => panic!("{request:?}: {other:?}"),
    }
}

fn error(core: &Core<SimHost>, session: &mut Session, request: Request) -> WireError {
    match core.handle(session, &request).frame {
        ServerFrame::Error(error) => error,
        other => panic!("{request:?}: {other:?}"),
    }
}

fn guest(buid: Buid, slot: u8) -> GuestAddr {
    GuestAddr::new(buid, 0, slot, 0).unwrap()
}

/// `ibm,read-slot-reset-state2` on `(buid, slot)` as raw cells.
fn read_state_cells(buid: Buid, slot: u8) -> Vec<u32> {
    let (hi, lo) = (u32::try_from(buid.0 >> 32).unwrap(), u32::try_from(buid.0 & 0xffff_ffff).unwrap());
    let token = TokenTable::default().token(RtasCall::ReadSlotResetState2).unwrap();
    let config = guest(buid, slot).config_addr().raw();
    let buf = RtasArgs::new(token, &[config, hi, lo], 4).encode();
    buf.chunks_exact(4).map(|c| u32::from_be_bytes(c.try_into().unwrap())).collect()
}

/// Sets up VM "a" with PE 1's NIC at PHB_A slot 1.
fn give_a_the_nic(core: &Core<SimHost>) -> Session {
    let mut a = open(core, Some("a"));
    ok(core, &mut a, Request::Claim { group: PeId(1) });
    ok(core, &mut a, Request::PhbAdd { buid: PHB_A });
    ok(core, &mut a, Request::MapSet { host: NIC.parse().unwrap(), guest: guest(PHB_A, 1) });
    a
}

#[test]
fn another_vms_resources_answer_exactly_as_nonexistent_ones() {
    let nic: PciAddr = NIC.parse().unwrap();
    let probes = vec![
        Request::Claim { group: PeId(1) },
        Request::Release { group: PeId(1) },
        Request::PeOp { group: PeId(1), action: PeAction::GetState },
        Request::PeOp { group: PeId(1), action: PeAction::ResetHot },
        Request::MapSet { host: nic, guest: guest(PHB_B, 1) },
        Request::MapSet { host: "0000:02:00.1".parse().unwrap(), guest: guest(PHB_B, 2) },
        Request::MapGet { host: nic },
        Request::MapClear { host: nic },
        Request::PhbRemove { buid: PHB_A },
        Request::Rtas { cells: read_state_cells(PHB_A, 1), memory: None },
        Request::Rtas { cells: read_state_cells(PHB_B, 1), memory: None },
        Request::State,
        Request::MapList,
    ];
    let answers = |toml: &str, a_has_the_nic: bool| {
        let dir = tempfile::tempdir().unwrap();
        let core = core_on(sim(toml), dir.path());
        if a_has_the_nic {
            give_a_the_nic(&core);
        } else {
            open(&core, Some("a"));
        }
        let mut b = open(&core, Some("b"));
        ok(&core, &mut b, Request::PhbAdd { buid: PHB_B });
        probes.iter().map(|p| serde_json::to_vec(&core.handle(&mut b, p).frame).unwrap()).collect::<Vec<_>>()
    };
    // The same host without PE 1 at all.
    let start = BUILTIN_TOML.find("[[phb.pe]]\ngroup = 1").unwrap();
    let end = BUILTIN_TOML.find("[[phb.pe]]\ngroup = 2").unwrap();
    let without_pe1 = format!("{}{}", &BUILTIN_TOML[..start], &BUILTIN_TOML[end..]);
    let taken = answers(BUILTIN_TOML, true);
    let absent = answers(&without_pe1, false);
    for ((probe, taken), absent) in probes.iter().zip(&taken).zip(&absent) {
        assert_eq!(String::from_utf8_lossy(taken), String::from_utf8_lossy(absent), "{probe:?}");
    }
    // And the probes were refusals, not empty successes.
    assert!(String::from_utf8_lossy(&taken[0]).contains("\"errno\":19"));
    assert!(String::from_utf8_lossy(&taken[9]).contains(&format!("{}", status::PARAMETER_ERROR.cast_unsigned())));
}

#[test]
fn mapping_rules_answer_with_their_errno() {
    let dir = tempfile::tempdir().unwrap();
    let core = core_on(SimHost::builtin(Arc::new(VirtualClock::new())), dir.path());
    let mut a = give_a_the_nic(&core);
    let nic: PciAddr = NIC.parse().unwrap();
    let cases = [
        (Request::MapSet { host: nic, guest: guest(PHB_A, 3) }, errno::EBUSY),
        (Request::MapSet { host: "0000:02:00.1".parse().unwrap(), guest: guest(PHB_A, 1) }, errno::EEXIST),
        (Request::MapSet { host: "0000:02:00.1".parse().unwrap(), guest: guest(PHB_B, 1) }, errno::EINVAL),
        (Request::MapSet { host: "0000:01:00.0".parse().unwrap(), guest: guest(PHB_A, 2) }, errno::EPERM),
        (Request::MapClear { host: "0000:02:00.1".parse().unwrap() }, errno::ENOENT),
        (Request::Release { group: PeId(1) }, errno::EBUSY),
        (Request::PhbRemove { buid: PHB_A }, errno::EBUSY),
        (Request::PhbAdd { buid: PHB_A }, errno::EEXIST),
        (Request::Claim { group: PeId(77) }, errno::ENODEV),
    ];
    for (request, expected) in cases {
        assert_eq!(error(&core, &mut a, request.clone()).errno, expected, "{request:?}");
    }
    assert_eq!(ok(&core, &mut a, Request::MapGet { host: nic }), Answer::Mapping { host: nic, guest: guest(PHB_A, 1) });
    let rtas = ok(&core, &mut a, Request::Rtas { cells: read_state_cells(PHB_A, 1), memory: None });
    let Answer::Rtas { cells, status: 0, call: Some(call), .. } = rtas else { panic!("{rtas:?}") };
    assert_eq!(call, "ibm,read-slot-reset-state2");
    assert_eq!((cells[6], cells[7]), (0, PeState::Normal.raw()));
}

use vfio_eeh::backend::errno;

#[test]
fn hello_comes_first_speaks_one_version_and_follows_the_policy() {
    let dir = tempfile::tempdir().unwrap();
    let core = core_on(SimHost::builtin(Arc::new(VirtualClock::new())), dir.path());
    let mut session = Session::new(ROOT);
    assert_eq!(error(&core, &mut session, Request::State).kind, ErrorKind::HelloRequired);
    let outcome = core.handle(&mut session, &Request::Hello { version: 9, vm: Some("a".into()) });
    assert!(outcome.close && matches!(outcome.frame, ServerFrame::Error(WireError { kind: ErrorKind::Version, .. })));
    let outcome = core.handle_frame(&mut session, b"{\"op\":");
    assert!(
        !outcome.close && matches!(outcome.frame, ServerFrame::Error(WireError { kind: ErrorKind::BadRequest, .. }))
    );

    let mut user = Session::new(Peer { pid: 9, uid: 1000, gid: 1000 });
    let outcome = core.handle(&mut user, &Request::Hello { version: PROTOCOL_VERSION, vm: Some("a".into()) });
    assert!(outcome.close && matches!(outcome.frame, ServerFrame::Error(WireError { kind: ErrorKind::Denied, .. })));

    let mut bad_name = Session::new(ROOT);
    let outcome = core.handle(&mut bad_name, &Request::Hello { version: PROTOCOL_VERSION, vm: Some("a/b".into()) });
    assert!(matches!(outcome.frame, ServerFrame::Error(WireError { kind: ErrorKind::BadRequest, .. })));

    let mut operator = open(&core, None);
    assert_eq!(error(&core, &mut operator, Request::State).kind, ErrorKind::Denied);
    assert!(matches!(ok(&core, &mut operator, Request::Claims), Answer::Claims { .. }));
}

#[test]
fn claims_mappings_and_pe_states_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let core = core_on(SimHost::builtin(Arc::new(VirtualClock::new())), dir.path());
    let mut a = give_a_the_nic(&core);
    ok(&core, &mut a, Request::PeOp { group: PeId(1), action: PeAction::Enable });
    let mut operator = open(&core, None);
    for _ in 0..2 {
        ok(&core, &mut operator, Request::Inject { target: InjectTarget::PeFreeze { pe: PeId(1) } });
        ok(&core, &mut a, Request::PeOp { group: PeId(1), action: PeAction::Enable });
    }
    ok(&core, &mut operator, Request::Inject { target: InjectTarget::PeFreeze { pe: PeId(1) } });
    // An unclaimed PE is the host's own: its freezes are counted.
    ok(&core, &mut operator, Request::Inject { target: InjectTarget::PeFreeze { pe: PeId(3) } });
    let before = ok(&core, &mut operator, Request::Claims);
    drop(core);

    let core = core_on(SimHost::builtin(Arc::new(VirtualClock::new())), dir.path());
    let mut session = Session::new(ROOT);
    let hello = core.handle(&mut session, &Request::Hello { version: PROTOCOL_VERSION, vm: Some("a".into()) });
    assert!(matches!(hello.frame, ServerFrame::Ok(Answer::Hello { ref claims, .. }) if claims == &[PeId(1)]));
    assert_eq!(ok(&core, &mut open(&core, None), Request::Claims), before);
    let Answer::State { pes } = ok(&core, &mut session, Request::State) else { panic!() };
    assert_eq!(pes[0].state, PeState::Stopped);
    // The claim came back as held devices: the PE is passed through again,
    // so the host leaves its freezes to the guest (eeh_pe_passed).
    assert_eq!(pes[0].passed, Some(true));
    assert_eq!(core.registry.read().unwrap().tracks[&PeId(1)].freezes, 0);
    assert!(core.registry.read().unwrap().tracks[&PeId(1)].enabled);
    // The host's own PE kept its count and its freeze.
    assert_eq!(core.registry.read().unwrap().tracks[&PeId(3)].freezes, 1);
    assert_eq!(vfio_eeh::backend::EehBackend::status(&core.host, PeId(3)).unwrap().state, PeState::Stopped);
}

#[test]
fn a_failed_commit_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let core = core_on(SimHost::builtin(Arc::new(VirtualClock::new())), &state);
    let mut a = open(&core, Some("a"));
    ok(&core, &mut a, Request::Claim { group: PeId(0) });
    std::fs::remove_dir_all(&state).unwrap();
    std::fs::write(&state, b"not a directory").unwrap();
    assert_eq!(error(&core, &mut a, Request::Claim { group: PeId(1) }).kind, ErrorKind::Storage);
    let Answer::Maps(view) = ok(&core, &mut a, Request::MapList) else { panic!() };
    assert_eq!(view.claims, [PeId(0)]);
}

#[test]
fn events_go_to_the_owning_vm_only() {
    let dir = tempfile::tempdir().unwrap();
    let core = core_on(SimHost::builtin(Arc::new(VirtualClock::new())), dir.path());
    let mut a = give_a_the_nic(&core);
    let mut b = open(&core, Some("b"));
    ok(&core, &mut b, Request::Claim { group: PeId(3) });
    let vm_a = a.vm().unwrap();
    let mut operator = open(&core, None);
    let outcome = core.handle(&mut operator, &Request::Inject { target: InjectTarget::PeFreeze { pe: PeId(1) } });
    assert_eq!(outcome.deliveries.len(), 1);
    assert_eq!(outcome.deliveries[0].vm, vm_a);
    // A claimed PE is passed through: the host does not count its freezes.
    assert_eq!(outcome.deliveries[0].event.kind, PeEventKind::Frozen { count: 0 });
    let outcome = core.handle(&mut a, &Request::PeOp { group: PeId(1), action: PeAction::Enable });
    let kinds: Vec<_> = outcome.deliveries.iter().map(|d| (d.vm, d.event.kind)).collect();
    assert_eq!(kinds, [(vm_a, PeEventKind::Recovered)]);
    let outcome = core.handle(&mut operator, &Request::Inject { target: InjectTarget::Phb { domain: 0, dead: false } });
    let phb: Vec<_> =
        outcome.deliveries.iter().filter(|d| matches!(d.event.kind, PeEventKind::PhbFrozen { .. })).collect();
    assert_eq!(phb.len(), 1);
    assert_eq!((phb[0].vm, phb[0].event.pe), (vm_a, PeId(1)));
    assert!(outcome.deliveries.iter().all(|d| d.vm == vm_a));
    assert!(core.poll_events().is_empty());
}

#[test]
fn device_access_reaches_the_vms_own_functions_only() {
    let dir = tempfile::tempdir().unwrap();
    let core = core_on(sim(BUILTIN_TOML), dir.path());
    let mut a = give_a_the_nic(&core);
    let nic: PciAddr = NIC.parse().unwrap();
    let read = |host| Request::DeviceRead { host, space: DeviceSpace::Config, offset: 0, width: 4 };
    let Answer::Value { value, .. } = ok(&core, &mut a, read(nic)) else { panic!("not a value") };
    assert_ne!(value, u64::from(u32::MAX), "the NIC answers its vendor and device id");
    let write = Request::DeviceWrite { host: nic, space: DeviceSpace::Bar(0), offset: 0x40, width: 4, value: 1 };
    assert_eq!(ok(&core, &mut a, write), Answer::Done);
    // A frozen PE reads all-ones.
    let mut operator = open(&core, None);
    ok(&core, &mut operator, Request::Inject { target: InjectTarget::PeFreeze { pe: PeId(1) } });
    assert_eq!(
        ok(&core, &mut a, read(nic)),
        Answer::Value { value: u64::from(u32::MAX), interrupts: Interrupts::default() }
    );
    // Another VM's function and one the host lacks answer alike.
    let mut b = open(&core, Some("b"));
    let theirs = error(&core, &mut b, read(nic));
    let nowhere = error(&core, &mut b, read("0000:09:00.0".parse().unwrap()));
    assert_eq!((theirs.errno, theirs.kind), (nowhere.errno, nowhere.kind));
    assert_eq!(theirs.message.replace(NIC, "0000:09:00.0"), nowhere.message);
    // A misaligned access is refused.
    let misaligned = Request::DeviceRead { host: nic, space: DeviceSpace::Config, offset: 2, width: 4 };
    assert_eq!(error(&core, &mut a, misaligned).kind, ErrorKind::Host);
}

#[test]
fn operators_drive_a_virtual_clock_only() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(VirtualClock::new());
    let host = SimHost::from_toml_str(BUILTIN_TOML, "test.toml", clock.clone()).unwrap();
    let core = core_on(host, dir.path()).with_virtual_clock(clock);
    let mut operator = open(&core, None);
    assert_eq!(ok(&core, &mut operator, Request::Clock { advance_ns: 5 }), Answer::Clock { now_ns: 5 });
    assert_eq!(ok(&core, &mut operator, Request::Clock { advance_ns: 0 }), Answer::Clock { now_ns: 5 });
    // Root's VM sessions are operator sessions too.
    let mut vm = open(&core, Some("a"));
    assert_eq!(ok(&core, &mut vm, Request::Clock { advance_ns: 1 }), Answer::Clock { now_ns: 6 });
    // A real-time host refuses.
    let real_time = core_on(sim(BUILTIN_TOML), tempfile::tempdir().unwrap().path());
    let mut operator = open(&real_time, None);
    let refused = error(&real_time, &mut operator, Request::Clock { advance_ns: 1 });
    assert_eq!((refused.kind, refused.errno), (ErrorKind::Host, vfio_eeh::backend::errno::EOPNOTSUPP));
}

/// VM "a"'s session of this process (its buses reach this process's
/// memory), holding group 0, the built-in host's NVMe controller.
fn a_with_the_nvme(core: &Core<SimHost>) -> (Session, PciAddr) {
    let (end, _other) = rustix::net::socketpair(
        rustix::net::AddressFamily::UNIX,
        rustix::net::SocketType::SEQPACKET,
        rustix::net::SocketFlags::CLOEXEC,
        None,
    )
    .unwrap();
    let mut a = Session::new(ROOT).with_process(Process::peer_of(&end).unwrap());
    let hello = Request::Hello { version: PROTOCOL_VERSION, vm: Some("a".into()) };
    assert!(matches!(core.handle(&mut a, &hello).frame, ServerFrame::Ok(Answer::Hello { .. })));
    let Answer::Attached { devices, .. } = ok(core, &mut a, Request::Attach { group: PeId(0) }) else {
        panic!("not attached")
    };
    assert!(devices[0].bus && devices[0].msix_vectors > 0, "the NVMe model takes a bus: {devices:?}");
    (a, devices[0].host)
}

#[test]
fn a_bus_goes_only_to_a_model_of_the_vms_own_from_a_session_that_names_its_process() {
    let dir = tempfile::tempdir().unwrap();
    let core = core_on(sim(BUILTIN_TOML), dir.path());
    let (mut a, nvme) = a_with_the_nvme(&core);
    let bus = |host, space| Request::Bus { host, space, msix: true };
    ok(&core, &mut a, Request::Claim { group: PeId(1) });
    let nic: PciAddr = NIC.parse().unwrap();
    assert_eq!(error(&core, &mut a, bus(nic, Some(1))).errno, vfio_eeh::backend::errno::EINVAL, "no model");
    let mut b = open(&core, Some("b"));
    let theirs = error(&core, &mut b, bus(nvme, Some(1)));
    let nowhere = error(&core, &mut b, bus("0000:09:00.0".parse().unwrap(), Some(1)));
    assert_eq!((theirs.errno, theirs.kind), (nowhere.errno, nowhere.kind), "another VM's is as none");
    let mut nameless = open(&core, Some("a"));
    assert_eq!(error(&core, &mut nameless, bus(nvme, Some(1))).errno, vfio_eeh::backend::errno::EOPNOTSUPP);
    assert!(core.lent.lock().unwrap().is_empty(), "nothing lent by a refusal");

    ok(&core, &mut a, bus(nvme, Some(1)));
    assert!(core.lent.lock().unwrap().contains_key(&nvme));
    ok(&core, &mut a, bus(nvme, None));
    assert!(core.lent.lock().unwrap().is_empty(), "taken back");
    // Releasing the group and ending the session take it back too.
    ok(&core, &mut a, bus(nvme, Some(1)));
    ok(&core, &mut a, Request::Release { group: PeId(0) });
    assert!(core.lent.lock().unwrap().is_empty(), "released with its group");
    ok(&core, &mut a, Request::Attach { group: PeId(0) });
    ok(&core, &mut a, bus(nvme, Some(1)));
    core.end_session(&a);
    assert!(core.lent.lock().unwrap().is_empty(), "gone with the session");
}

#[test]
fn dma_mirrors_refuse_bad_changes_and_bound_their_size() {
    let dir = tempfile::tempdir().unwrap();
    let core = core_on(sim(BUILTIN_TOML), dir.path());
    let (mut a, _) = a_with_the_nvme(&core);
    let map = |iova, size| DmaChange::Map { iova, size, vaddr: 0x7000_0000, device_reads: true, device_writes: true };
    let dma = |space, changes| Request::Dma { space, changes };
    ok(&core, &mut a, dma(1, vec![map(0x1000, 0x3000), DmaChange::Unmap { iova: 0x2000, size: 0x1000 }]));
    assert_eq!(locked(&a.spaces[&1]).len(), 2, "the unmap split the mapping");
    let refused = error(&core, &mut a, dma(1, vec![map(0x8000, 0x1000), map(0x9000, 0), map(0xa000, 0x1000)]));
    assert_eq!(refused.kind, ErrorKind::BadRequest);
    assert_eq!(locked(&a.spaces[&1]).len(), 3, "the change before the empty one stays, the one after is refused");
    let too_many = vec![DmaChange::Clear; MAX_DMA_CHANGES + 1];
    assert_eq!(error(&core, &mut a, dma(1, too_many)).errno, vfio_eeh::backend::errno::EINVAL);
    assert_eq!(locked(&a.spaces[&1]).len(), 3, "refused whole");
    ok(&core, &mut a, dma(1, vec![DmaChange::Clear]));
    assert!(locked(&a.spaces[&1]).is_empty());
    for space in 2..=u32::try_from(MAX_SPACES).unwrap() {
        ok(&core, &mut a, dma(space, vec![DmaChange::Clear]));
    }
    assert_eq!(error(&core, &mut a, dma(0, vec![])).errno, wire_errno::ENOSPC, "one space too many");
    let bus = Request::Bus { host: "0000:01:00.0".parse().unwrap(), space: Some(0), msix: true };
    assert_eq!(error(&core, &mut a, bus).errno, wire_errno::ENOSPC, "a bus makes no space beyond the bound either");
    let mut nameless = open(&core, None);
    assert_eq!(error(&core, &mut nameless, dma(1, vec![])).kind, ErrorKind::Denied, "a VM's request");
}
