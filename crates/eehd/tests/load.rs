//! A real eehd under load: many VMs at once with every answer checked,
//! isolation between them, `kill -9` in the middle, SIGTERM under load.

mod common;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{device_of, guest, Daemon};
use eehd::client::{Client, ClientError};
use eehd::protocol::{Answer, ErrorKind, InjectTarget, PeAction, PeEventKind, Request};
use rustix::process::Signal;
use vfio_eeh::addr::PeId;
use vfio_eeh::backend::errno;
use vfio_eeh::ops::PeState;
use vfio_eeh::rtas::{RtasArgs, RtasCall, TokenTable};

const VMS: u32 = 32;
const BUID: u64 = 0x0800_0000_2000_0000;

fn refused(result: Result<Answer, ClientError>) -> eehd::protocol::WireError {
    match result {
        Err(ClientError::Refused(error)) => error,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

fn read_state(client: &mut Client, slot: u8) -> (i32, u32) {
    let token = TokenTable::default().token(RtasCall::ReadSlotResetState2).unwrap();
    let config = guest(BUID, slot).config_addr().raw();
    let buf = RtasArgs::new(token, &[config, 0x0800_0000, 0x2000_0000], 4).encode();
    let cells = buf.chunks_exact(4).map(|c| u32::from_be_bytes(c.try_into().unwrap())).collect();
    match client.request(&Request::Rtas { cells, memory: None }).unwrap() {
        Answer::Rtas { cells, status, .. } => {
            assert_eq!(cells.len(), 10);
            (status, cells[7])
        }
        other => panic!("{other:?}"),
    }
}

/// VM `i` owns PEs `2i` and `2i + 1`.
fn pes_of(i: u32) -> [PeId; 2] {
    [PeId(2 * i), PeId(2 * i + 1)]
}

#[test]
fn thirty_two_vms_at_once_each_see_only_their_own() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(dir.path(), &[]);
    let socket = daemon.socket.clone();
    let ready = Arc::new(std::sync::Barrier::new(usize::try_from(VMS).unwrap() + 1));
    let workers: Vec<_> = (0..VMS)
        .map(|i| {
            let (socket, ready) = (socket.clone(), Arc::clone(&ready));
            std::thread::spawn(move || {
                let name = format!("vm-{i}");
                let mut vm = Client::connect(&socket, Some(&name)).unwrap();
                let mut events = Client::connect(&socket, Some(&name)).unwrap();
                assert_eq!(events.request(&Request::Subscribe).unwrap(), Answer::Done);
                let mine = pes_of(i);
                vm.request(&Request::PhbAdd { buid: vfio_eeh::addr::Buid(BUID) }).unwrap();
                for (slot, pe) in (1u8..).zip(mine) {
                    assert_eq!(vm.request(&Request::Claim { group: pe }).unwrap(), Answer::Done);
                    let host = device_of(pe);
                    vm.request(&Request::MapSet { host, guest: guest(BUID, slot) }).unwrap();
                    assert_eq!(
                        vm.request(&Request::MapGet { host }).unwrap(),
                        Answer::Mapping { host, guest: guest(BUID, slot) }
                    );
                    assert_eq!(
                        vm.request(&Request::PeOp { group: pe, action: PeAction::Enable }).unwrap(),
                        Answer::PeOp { value: 0 }
                    );
                }
                // Neighbours' groups and devices look like none at all.
                let theirs = pes_of((i + 1) % VMS)[0];
                ready.wait();
                for round in 0..20 {
                    assert_eq!(read_state(&mut vm, 1), (0, PeState::Normal.raw()));
                    assert_eq!(read_state(&mut vm, 9).0, -3);
                    let state = vm.request(&Request::PeOp { group: mine[1], action: PeAction::GetState }).unwrap();
                    assert_eq!(state, Answer::PeOp { value: PeState::Normal.raw() });
                    let error = refused(vm.request(&Request::Claim { group: theirs }));
                    assert_eq!((error.errno, error.kind), (errno::ENODEV, ErrorKind::Host));
                    let error = refused(vm.request(&Request::PeOp { group: theirs, action: PeAction::ResetHot }));
                    assert_eq!(error.errno, errno::ENODEV);
                    let error =
                        refused(vm.request(&Request::MapSet { host: device_of(theirs), guest: guest(BUID, 20) }));
                    assert_eq!(error.errno, errno::ENODEV);
                    if round % 5 == 0 {
                        let Answer::State { pes } = vm.request(&Request::State).unwrap() else { panic!() };
                        assert_eq!(pes.iter().map(|p| p.pe).collect::<Vec<_>>(), mine);
                        let Answer::Maps(view) = vm.request(&Request::MapList).unwrap() else { panic!() };
                        assert_eq!((view.vm.as_str(), view.claims.as_slice()), (name.as_str(), &mine[..]));
                    }
                }
                ready.wait();
                // The operator freezes our first PE: we hear of it, nobody else does.
                let mut seen = Vec::new();
                while let Some(event) = events.next_event(Duration::from_secs(5)).unwrap() {
                    assert!(mine.contains(&event.pe), "{name} saw {event:?}");
                    seen.push((event.pe, event.kind));
                    // Claimed PEs are passed through: the host counts none of their freezes.
                    if event.kind == (PeEventKind::Frozen { count: 0 }) {
                        break;
                    }
                }
                assert_eq!(seen.last(), Some(&(mine[0], PeEventKind::Frozen { count: 0 })), "{name}");
                assert_eq!(read_state(&mut vm, 1), (0, PeState::Stopped.raw()));
                assert_eq!(read_state(&mut vm, 2), (0, PeState::Normal.raw()));
            })
        })
        .collect();
    ready.wait(); // Set up.
    ready.wait(); // Rounds done.
    let mut operator = daemon.client(None);
    for i in 0..VMS {
        operator.request(&Request::Inject { target: InjectTarget::PeFreeze { pe: pes_of(i)[0] } }).unwrap();
    }
    for worker in workers {
        worker.join().unwrap();
    }
    let Answer::Claims { vms } = operator.request(&Request::Claims).unwrap() else { panic!() };
    assert_eq!(vms.len(), usize::try_from(VMS).unwrap());
    assert!(vms.iter().all(|vm| vm.mappings.len() == 2));
}

/// What one VM has been told is done.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Model {
    claims: BTreeSet<PeId>,
    mapped: BTreeSet<PeId>,
}

#[derive(Debug, Clone, Copy)]
enum Step {
    Claim(PeId),
    Map(PeId, u8),
    Clear(PeId),
    Release(PeId),
}

impl Step {
    fn request(self) -> Request {
        match self {
            Step::Claim(pe) => Request::Claim { group: pe },
            Step::Map(pe, slot) => Request::MapSet { host: device_of(pe), guest: guest(BUID, slot) },
            Step::Clear(pe) => Request::MapClear { host: device_of(pe) },
            Step::Release(pe) => Request::Release { group: pe },
        }
    }

    fn apply(self, model: &mut Model) {
        match self {
            Step::Claim(pe) => model.claims.insert(pe),
            Step::Map(pe, _) => model.mapped.insert(pe),
            Step::Clear(pe) => model.mapped.remove(&pe),
            Step::Release(pe) => model.claims.remove(&pe),
        };
    }
}

/// VM `i` cycles claims and mappings of its two PEs until stopped or cut
/// off; returns what was acknowledged and the step in flight.
fn churn(socket: &std::path::Path, i: u32, stop: &AtomicBool) -> (Model, Option<Step>) {
    let mut vm = Client::connect(socket, Some(&format!("vm-{i}"))).unwrap();
    let mut model = Model::default();
    if vm.request(&Request::PhbAdd { buid: vfio_eeh::addr::Buid(BUID) }).is_err() {
        return (model, None);
    }
    let [a, b] = pes_of(i);
    let cycle = [
        Step::Claim(a),
        Step::Map(a, 1),
        Step::Claim(b),
        Step::Map(b, 2),
        Step::Clear(a),
        Step::Release(a),
        Step::Clear(b),
        Step::Release(b),
    ];
    for step in cycle.iter().cycle().copied() {
        if stop.load(Ordering::Relaxed) {
            return (model, None);
        }
        match vm.request(&step.request()) {
            Ok(answer) => {
                assert_eq!(answer, Answer::Done, "{step:?}");
                step.apply(&mut model);
            }
            Err(ClientError::Refused(error)) if error.kind == ErrorKind::ShuttingDown => return (model, None),
            Err(ClientError::Refused(error)) => panic!("vm-{i} {step:?}: {error}"),
            Err(_) => return (model, Some(step)),
        }
    }
    unreachable!("the cycle never ends")
}

/// What VM `i` holds according to a restarted daemon.
fn held(daemon: &Daemon, i: u32) -> Model {
    let mut vm = daemon.client(Some(&format!("vm-{i}")));
    let Answer::Hello { claims, .. } = vm.hello().clone() else { panic!() };
    let Answer::Maps(view) = vm.request(&Request::MapList).unwrap() else { panic!() };
    assert_eq!(claims, view.claims);
    let model = Model { claims: claims.into_iter().collect(), mapped: view.mappings.iter().map(|m| m.pe).collect() };
    assert!(model.mapped.is_subset(&model.claims), "vm-{i}: a mapping without its claim: {model:?}");
    model
}

fn load_then(
    signal: Signal,
    clients: u32,
    run_for: Duration,
) -> (Vec<(Model, Option<Step>)>, Daemon, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(dir.path(), &[]);
    let stop = Arc::new(AtomicBool::new(false));
    let outcomes = Arc::new(Mutex::new(Vec::new()));
    let workers: Vec<_> = (0..clients)
        .map(|i| {
            let (socket, stop, outcomes) = (daemon.socket.clone(), Arc::clone(&stop), Arc::clone(&outcomes));
            std::thread::spawn(move || {
                let outcome = churn(&socket, i, &stop);
                outcomes.lock().unwrap().push((i, outcome));
            })
        })
        .collect();
    std::thread::sleep(run_for);
    daemon.signal(signal);
    let status = daemon.wait();
    if signal == Signal::TERM {
        assert!(status.success(), "SIGTERM under load: {status:?}");
    }
    stop.store(true, Ordering::Relaxed);
    for worker in workers {
        worker.join().unwrap();
    }
    let mut outcomes = std::mem::take(&mut *outcomes.lock().unwrap());
    outcomes.sort_by_key(|(i, _)| *i);
    let restarted = Daemon::start(dir.path(), &[]);
    (outcomes.into_iter().map(|(_, o)| o).collect(), restarted, dir)
}

#[test]
fn kill_9_under_load_loses_no_acknowledged_change_and_applies_nothing_by_half() {
    let (outcomes, daemon, _dir) = load_then(Signal::KILL, 8, Duration::from_millis(400));
    let mut acknowledged = 0;
    for (i, (model, in_flight)) in (0..).zip(&outcomes) {
        let held = held(&daemon, i);
        let mut with_step = model.clone();
        if let Some(step) = in_flight {
            step.apply(&mut with_step);
        }
        assert!(
            held == *model || held == with_step,
            "vm-{i}: acknowledged {model:?} (in flight {in_flight:?}), held {held:?}"
        );
        acknowledged += model.claims.len() + model.mapped.len();
    }
    assert!(acknowledged > 0 || outcomes.iter().any(|(_, s)| s.is_some()));
}

#[test]
fn sigterm_under_load_finishes_in_flight_requests_and_exits_0() {
    let (outcomes, daemon, _dir) = load_then(Signal::TERM, 8, Duration::from_millis(300));
    for (i, (model, in_flight)) in (0..).zip(&outcomes) {
        let held = held(&daemon, i);
        let mut with_step = model.clone();
        if let Some(step) = in_flight {
            step.apply(&mut with_step);
        }
        assert!(held == *model || held == with_step, "vm-{i}: acknowledged {model:?}, held {held:?}");
    }
}
