//! Freeze accounting for PEs passed through to a VFIO user, as Linux does it
//! (research Q3): `eeh_dev_open` / `eeh_dev_release` thaw the PE through
//! `eeh_pe_change_owner` and move `pass_dev_cnt`; the host's only freeze
//! counter (`eeh_handle_normal_event`) is never reached for a passed PE,
//! because `pnv_eeh_next_error` and `eeh_dev_check_failure` both drop it on
//! `eeh_pe_passed`.

use std::sync::Arc;
use std::time::Duration;

use vfio_eeh::addr::{PciAddr, PeId};
use vfio_eeh::backend::EehBackend;
use vfio_eeh::ops::PeState;
use vfio_eeh::pe::{FreezePolicy, FreezeScope};
use vfio_eeh_sim::clock::{Clock, VirtualClock};
use vfio_eeh_sim::config::SimConfig;
use vfio_eeh_sim::demo::{self, DemoConfig};
use vfio_eeh_sim::event::SimEventKind;
use vfio_eeh_sim::spec::TopologySpec;
use vfio_eeh_sim::SimHost;

const NIC0: &str = "0000:02:00.0";
const NIC1: &str = "0000:02:00.1";

fn addr(s: &str) -> PciAddr {
    s.parse().unwrap()
}

/// The built-in host with a freeze limit of 2 per minute, EEH on PE 1.
fn host() -> (SimHost, Arc<VirtualClock>) {
    let clock = Arc::new(VirtualClock::new());
    let policy = FreezePolicy { max_freezes: 2, window: Duration::from_secs(60) };
    let host = SimHost::new(
        &TopologySpec::builtin(),
        SimConfig { freeze_policy: policy, ..SimConfig::default() },
        clock.clone(),
    );
    host.enable(PeId(1)).unwrap();
    (host, clock)
}

/// Freezes the PE and thaws it the way its owner would (`ENABLE`).
fn freeze_and_thaw(host: &SimHost, clock: &VirtualClock, pe: PeId) {
    host.freeze(pe, FreezeScope::All).unwrap();
    assert_eq!(host.status(pe).unwrap().state, PeState::Stopped);
    host.enable(pe).unwrap();
    clock.sleep(Duration::from_secs(1));
}

#[test]
fn the_host_never_counts_freezes_of_a_passed_pe() {
    let (host, clock) = host();
    let pe = PeId(1);
    assert!(!host.passed(pe).unwrap());
    assert!(host.dev_open(addr(NIC0)).unwrap());
    assert!(host.passed(pe).unwrap());
    // Far past the host's limit of 2: the guest keeps its own count.
    for _ in 0..10 {
        freeze_and_thaw(&host, &clock, pe);
    }
    assert_eq!(host.status(pe).unwrap().state, PeState::Normal);
    let frozen: Vec<(u32, bool)> = host
        .events()
        .iter()
        .filter_map(|e| match e.kind {
            SimEventKind::Frozen { count, passed, .. } => Some((count, passed)),
            _ => None,
        })
        .collect();
    assert_eq!(frozen, vec![(0, true); 10]);
    assert!(!host.events().iter().any(|e| matches!(e.kind, SimEventKind::PermanentFailure { .. })));
}

#[test]
fn release_hands_counting_back_to_the_host_and_every_device_counts() {
    let (host, clock) = host();
    let pe = PeId(1);
    // Two devices of the PE open: `pass_dev_cnt` is 2.
    host.dev_open(addr(NIC0)).unwrap();
    host.dev_open(addr(NIC1)).unwrap();
    host.dev_release(addr(NIC0)).unwrap();
    assert!(host.passed(pe).unwrap(), "one device is still open");
    freeze_and_thaw(&host, &clock, pe);
    host.dev_release(addr(NIC1)).unwrap();
    assert!(!host.passed(pe).unwrap());
    // A second release is a no-op (`eeh_dev_release` bails on a PE not passed).
    host.dev_release(addr(NIC1)).unwrap();
    // Not passed: the host counts again, from where it was (0), and fails
    // the PE on the third freeze within the window.
    freeze_and_thaw(&host, &clock, pe);
    freeze_and_thaw(&host, &clock, pe);
    host.freeze(pe, FreezeScope::All).unwrap();
    let status = host.status(pe).unwrap();
    assert_eq!((status.state, status.unavailable_for), (PeState::Unavailable, Some(Duration::ZERO)));
    assert!(host.events().iter().any(|e| matches!(e.kind, SimEventKind::PermanentFailure { count: 3, .. })));
}

#[test]
fn open_and_release_thaw_a_frozen_pe_without_touching_the_count() {
    let (host, _) = host();
    let pe = PeId(1);
    host.freeze(pe, FreezeScope::All).unwrap();
    // eeh_dev_open -> eeh_pe_change_owner -> eeh_unfreeze_pe.
    assert!(host.dev_open(addr(NIC0)).unwrap());
    assert_eq!(host.status(pe).unwrap().state, PeState::Normal);
    host.freeze(pe, FreezeScope::Dma).unwrap();
    // eeh_dev_release thaws again, so the host never inherits a freeze.
    host.dev_release(addr(NIC0)).unwrap();
    assert_eq!(host.status(pe).unwrap().state, PeState::Normal);
    let counts: Vec<u32> = host
        .events()
        .iter()
        .filter_map(|e| match e.kind {
            SimEventKind::Frozen { count, .. } => Some(count),
            _ => None,
        })
        .collect();
    assert_eq!(counts, [1, 1], "the passed freeze left the host's count at 1");
    let kinds: Vec<SimEventKind> = host.events().into_iter().map(|e| e.kind).collect();
    assert!(kinds.contains(&SimEventKind::Passed { device: addr(NIC0) }));
    assert!(kinds.contains(&SimEventKind::Released { device: addr(NIC0) }));
}

/// Issue 13 item 2: this run exited 1 with "host: PE failed after 6
/// freezes" while the guest's own limit was 10. The VMM's devices are now
/// passed, so only the guest counts, and it fails no PE before its limit.
#[test]
fn a_guest_with_a_higher_limit_than_the_host_is_not_failed_by_the_host() {
    let config = DemoConfig { seed: 3, errors: 30, max_freezes: 10, rounds: 2000, ..DemoConfig::default() };
    let report = demo::run(config).unwrap();
    assert!(report.unexpected().is_empty(), "{:#?}", report.pes);
    assert!(!report.timeline.iter().any(|e| e.event.starts_with("host: PE failed")));
    assert!(report.pes.iter().all(|row| row.passed), "{:#?}", report.pes);
    // The case still exercises a PE beyond the host's default limit of 5.
    assert!(report.pes.iter().any(|row| row.freezes > 5), "{:#?}", report.pes);
}
