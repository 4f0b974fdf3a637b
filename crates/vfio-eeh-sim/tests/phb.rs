//! PHB-wide errors on the simulator (issue 13 item 1, research Q4): a fence
//! freezes every PE under the PHB, a PE reset cannot clear it, the host
//! recovers the PHB with a complete reset (PEs unavailable meanwhile, with
//! the true remaining time), then thaws the PEs it owns and leaves passed PEs
//! frozen for their owner; fences are counted on the PHB, and a dead PHB
//! fails every PE under it for good.

use std::sync::Arc;
use std::time::Duration;

use vfio_eeh::addr::{Buid, GuestAddr, PciAddr, PeId};
use vfio_eeh::backend::{errno, EehBackend, PeStatus};
use vfio_eeh::mapping::VmId;
use vfio_eeh::ops::{EehOp, PeState, ResetKind};
use vfio_eeh::pe::FreezePolicy;
use vfio_eeh::rtas::RtasPolicy;
use vfio_eeh_sim::clock::{Clock, VirtualClock};
use vfio_eeh_sim::config::SimConfig;
use vfio_eeh_sim::event::SimEventKind;
use vfio_eeh_sim::guest::{GuestConfig, GuestEeh, GuestEventKind, Outcome};
use vfio_eeh_sim::phb::{PhbCondition, PhbError, PhbRecoveryTiming};
use vfio_eeh_sim::spec::TopologySpec;
use vfio_eeh_sim::vmm::{EehModel, SimVmm};
use vfio_eeh_sim::SimHost;

const NVME: &str = "0000:01:00.0"; // PE 0, PHB 0
const NIC0: &str = "0000:02:00.0"; // PE 1, PHB 0
const MLX: &str = "0001:01:00.0"; // PE 3, PHB 1
const MS: Duration = Duration::from_millis(1);
/// PHB 0.
const PHB: u32 = 0;

fn addr(s: &str) -> PciAddr {
    s.parse().unwrap()
}

/// The built-in host with a 10 ms notice delay; EEH on every PE.
fn host_with(config: SimConfig) -> (Arc<SimHost>, Arc<VirtualClock>) {
    let clock = Arc::new(VirtualClock::new());
    let host = Arc::new(SimHost::new(&TopologySpec::builtin(), config, clock.clone()));
    for pe in host.pe_ids().collect::<Vec<_>>() {
        host.enable(pe).unwrap();
    }
    (host, clock)
}

fn timing() -> PhbRecoveryTiming {
    PhbRecoveryTiming { notice: 10 * MS, ..PhbRecoveryTiming::default() }
}

fn host() -> (Arc<SimHost>, Arc<VirtualClock>) {
    host_with(SimConfig { phb_timing: timing(), ..SimConfig::default() })
}

fn status(host: &SimHost, pe: PeId) -> PeStatus {
    host.status(pe).unwrap()
}

#[test]
fn a_fence_freezes_every_pe_under_the_phb_and_the_host_recovers_it() {
    let (host, clock) = host();
    let (nvme, nic) = (PeId(0), PeId(1));
    // The NVMe's PE is passed to a VFIO user; the NIC's is the host's.
    assert!(host.dev_open(addr(NVME)).unwrap());
    host.inject_phb(PHB, PhbError::Fence).unwrap();

    // Before the host notices: every PE reads frozen (phb4_eeh_freeze_status
    // reports a fenced PHB as every PE MMIO+DMA frozen), loads all-ones,
    // stores dropped. The other PHB is untouched.
    for pe in [nvme, nic] {
        assert_eq!(status(&host, pe), PeStatus::of(PeState::Stopped), "{pe}");
        assert_eq!(host.pe_op(pe, EehOp::GetState).unwrap().ioctl_value(), 2);
    }
    assert_eq!(host.config_read(addr(NVME), 0, 2).unwrap(), 0xffff);
    assert_eq!(host.bar_read(addr(NIC0), 0, 0, 4).unwrap(), 0xffff_ffff);
    host.bar_write(addr(NIC0), 0, 0x40, 4, 0xdead).unwrap();
    assert_eq!(status(&host, PeId(3)).state, PeState::Normal);
    assert_eq!(host.phb_status(PHB).unwrap().condition, PhbCondition::Fenced);

    // The host notices after 10 ms and recovers with a complete reset: the
    // PEs are unavailable (eeh_pe_get_state's parent check) with the true
    // remaining time, creset 1270 ms + settle 1800 ms (not all PEs are
    // passed, so no hotplug sleep).
    clock.sleep(10 * MS);
    let end = 10 * MS + Duration::from_millis(1270 + 1800);
    for pe in [nvme, nic] {
        assert_eq!(status(&host, pe), PeStatus { state: PeState::Unavailable, unavailable_for: Some(end - 10 * MS) });
    }
    clock.sleep(Duration::from_millis(3000));
    assert_eq!(status(&host, nic).unavailable_for, Some(70 * MS));
    assert_eq!(host.config_read(addr(NIC0), 0, 2).unwrap(), 0xffff);

    // Back: the host's PE is thawed, BARs restored; the passed PE stays
    // frozen (eeh_pe_refreeze_passed) for its owner to reset.
    clock.sleep(70 * MS);
    assert_eq!(status(&host, nic).state, PeState::Normal);
    assert_eq!(host.bar_read(addr(NIC0), 0, 0x40, 4).unwrap(), 0, "the store was dropped, device memory reset");
    assert_eq!(status(&host, nvme).state, PeState::Stopped);
    assert_eq!(host.config_read(addr(NVME), 0, 2).unwrap(), 0xffff);
    host.reset(nvme, ResetKind::Hot).unwrap();
    host.pe_op(nvme, EehOp::ResetDeactivate).unwrap();
    assert_eq!(status(&host, nvme).state, PeState::Normal);
    assert_eq!(host.config_read(addr(NVME), 0, 2).unwrap(), 0x144d);

    let phb = host.phb_status(PHB).unwrap();
    assert_eq!((phb.condition, phb.fences, phb.recoveries), (PhbCondition::Healthy, 1, 1));
    let phb_events: Vec<(PeId, u64, SimEventKind)> = host
        .events()
        .into_iter()
        .filter(|e| {
            matches!(
                e.kind,
                SimEventKind::PhbFenced { .. } | SimEventKind::PhbRecovering { .. } | SimEventKind::PhbRecovered { .. }
            )
        })
        .map(|e| (e.pe, e.at_ns, e.kind))
        .collect();
    let until_ns = vfio_eeh_sim::event::nanos(end);
    for pe in [nvme, nic] {
        let mine: Vec<_> = phb_events.iter().filter(|e| e.0 == pe).map(|e| (e.1, e.2)).collect();
        assert_eq!(
            mine,
            [
                (0, SimEventKind::PhbFenced { domain: PHB, count: 1 }),
                (10_000_000, SimEventKind::PhbRecovering { domain: PHB, until_ns }),
                (until_ns, SimEventKind::PhbRecovered { domain: PHB, refrozen: pe == nvme }),
            ],
            "{pe}"
        );
    }
}

#[test]
fn a_pe_reset_cannot_clear_a_fence() {
    let (host, clock) = host_with(SimConfig {
        phb_timing: PhbRecoveryTiming { notice: Duration::from_secs(1), ..PhbRecoveryTiming::default() },
        ..SimConfig::default()
    });
    let pe = PeId(0);
    host.inject_phb(PHB, PhbError::Fence).unwrap();
    // The hot reset is issued, but thawing is a freeze clear, which fails
    // on a fenced PHB (phb4_eeh_freeze_clear: OPAL_HARDWARE -> EIO).
    host.reset(pe, ResetKind::Hot).unwrap();
    clock.sleep(250 * MS);
    for op in [EehOp::ResetDeactivate, EehOp::UnfreezeIo, EehOp::UnfreezeDma, EehOp::Enable] {
        assert_eq!(host.pe_op(pe, op).unwrap_err().errno(), errno::EIO, "{op:?}");
    }
    assert_eq!(status(&host, pe).state, PeState::Stopped);
    // While the host recovers the PHB, no PE op but get-state, configure,
    // disable and injection goes through.
    clock.sleep(Duration::from_secs(1));
    assert_eq!(status(&host, pe).state, PeState::Unavailable);
    for op in [EehOp::Reset(ResetKind::Hot), EehOp::ResetDeactivate, EehOp::UnfreezeIo, EehOp::Enable] {
        assert_eq!(host.pe_op(pe, op).unwrap_err().errno(), errno::EIO, "{op:?}");
    }
    host.pe_op(pe, EehOp::Configure).unwrap();
    // A VFIO user opening a device now cannot thaw the PE, so the PE is
    // not passed (eeh_dev_open: eeh_pe_change_owner failed).
    assert!(!host.dev_open(addr(NVME)).unwrap());
    // Once recovered the PE, not passed, is the host's and thawed.
    clock.sleep(Duration::from_secs(4));
    assert_eq!(status(&host, pe).state, PeState::Normal);
}

#[test]
fn when_every_pe_is_passed_recovery_includes_the_hotplug_sleep() {
    let (host, clock) = host();
    for dev in [NVME, NIC0, "0000:03:00.0"] {
        assert!(host.dev_open(addr(dev)).unwrap());
    }
    host.inject_phb(PHB, PhbError::Fence).unwrap();
    clock.sleep(10 * MS);
    // creset 1270 + settle 1800 + "Reset with hotplug activity" 5000 ms.
    assert_eq!(status(&host, PeId(1)).unavailable_for, Some(Duration::from_millis(8070)));
    clock.sleep(Duration::from_millis(8070));
    for pe in [0, 1, 2].map(PeId) {
        assert_eq!(status(&host, pe).state, PeState::Stopped, "{pe} is passed: refrozen");
    }
}

#[test]
fn fences_are_counted_on_the_phb_and_one_too_many_kills_it() {
    let policy = FreezePolicy { max_freezes: 2, window: Duration::from_secs(3600) };
    let (host, clock) =
        host_with(SimConfig { phb_timing: timing(), phb_freeze_policy: policy, ..SimConfig::default() });
    for round in 1..=2 {
        host.inject_phb(PHB, PhbError::Fence).unwrap();
        // A fence on a fenced PHB is refused, not dropped.
        assert_eq!(host.inject_phb(PHB, PhbError::Fence).unwrap_err().errno(), errno::EIO);
        clock.sleep(Duration::from_secs(10));
        let phb = host.phb_status(PHB).unwrap();
        assert_eq!((phb.condition, phb.fences), (PhbCondition::Healthy, round));
        // The PEs' own freeze counts are untouched: the count is the PHB's.
        assert!(host.events().iter().all(|e| !matches!(e.kind, SimEventKind::Frozen { .. })));
    }
    host.inject_phb(PHB, PhbError::Fence).unwrap();
    clock.sleep(10 * MS);
    assert_eq!(host.phb_status(PHB).unwrap().condition, PhbCondition::Dead);
    assert_permanently_failed(&host, [PeId(0), PeId(1), PeId(2)]);
    clock.sleep(Duration::from_secs(3600));
    assert_permanently_failed(&host, [PeId(0), PeId(1), PeId(2)]);
    assert_eq!(host.inject_phb(PHB, PhbError::Fence).unwrap_err().errno(), errno::EIO);
}

fn assert_permanently_failed(host: &SimHost, pes: [PeId; 3]) {
    for pe in pes {
        assert_eq!(status(host, pe), PeStatus { state: PeState::Unavailable, unavailable_for: Some(Duration::ZERO) });
        assert_eq!(host.pe_op(pe, EehOp::Reset(ResetKind::Hot)).unwrap_err().errno(), errno::EIO);
    }
    assert_eq!(host.config_read(addr(NVME), 0, 4).unwrap(), u32::MAX);
}

#[test]
fn a_dead_phb_fails_every_pe_under_it_at_once_and_only_those() {
    let (host, _) = host();
    host.inject_phb(PHB, PhbError::Dead).unwrap();
    assert_permanently_failed(&host, [PeId(0), PeId(1), PeId(2)]);
    assert_eq!(status(&host, PeId(3)).state, PeState::Normal);
    assert_eq!(host.config_read(addr(MLX), 0, 2).unwrap(), 0x15b3);
    assert_eq!(host.inject_phb(PHB, PhbError::Dead).unwrap_err().errno(), errno::EIO);
    assert_eq!(host.inject_phb(7, PhbError::Fence).unwrap_err().errno(), errno::EINVAL);
    assert!(host.events().iter().any(|e| e.pe == PeId(2) && e.kind == SimEventKind::PhbDead { domain: PHB }));
}

/// A VM with the NVMe and the NIC (two PEs on host PHB 0) on two virtual
/// PHBs, probed by the guest model.
fn guest_on_two_pes(host: Arc<SimHost>) -> (SimVmm, GuestEeh, [GuestAddr; 2]) {
    let mut vmm = SimVmm::new(host, VmId(1), EehModel::HostMapping, RtasPolicy::default());
    let phbs = [Buid::SPAPR_BASE, Buid(Buid::SPAPR_BASE.0 + 1)];
    let guests = phbs.map(|buid| GuestAddr::new(buid, 0, 1, 0).unwrap());
    for ((buid, host_dev), guest_dev) in phbs.into_iter().zip([NVME, NIC0]).zip(guests) {
        vmm.add_phb(buid).unwrap();
        vmm.pass_through(addr(host_dev), guest_dev).unwrap();
    }
    let mut guest = GuestEeh::new(GuestConfig::default());
    assert_eq!(guest.probe(&mut vmm, &guests), guests);
    (vmm, guest, guests)
}

/// The guest, as a pseries Linux guest: each driver's all-ones read is an
/// EEH event; the guest waits on state 5 with the firmware's hint while the
/// host recovers the PHB (eeh_wait_state), then finds the PE frozen (the
/// host re-froze it, as it is passed) and recovers it with its own reset.
#[test]
fn a_guest_recovers_both_pes_of_a_fenced_phb() {
    let (host, clock) = host();
    let (mut vmm, mut guest, guests) = guest_on_two_pes(host.clone());
    host.inject_phb(PHB, PhbError::Fence).unwrap();
    clock.sleep(10 * MS);
    for dev in guests {
        let outcome = guest.check_config(&mut vmm, dev);
        assert!(matches!(outcome, Outcome::Recovered(_)), "{dev}: {outcome:?}");
        assert_eq!(guest.check_config(&mut vmm, dev), Outcome::Healthy);
    }
    for pe in [PeId(0), PeId(1)] {
        assert_eq!(status(&host, pe).state, PeState::Normal);
    }
    // The first PE's detection saw 5, waited the PHB recovery out on the
    // hint, then recovered; the second found its PE frozen (2).
    let detected: Vec<PeState> = guest
        .events()
        .iter()
        .filter_map(|e| match e.what {
            GuestEventKind::FreezeDetected { state, .. } => Some(state),
            _ => None,
        })
        .collect();
    assert_eq!(detected, [PeState::Unavailable, PeState::Stopped]);
    let downtimes: Vec<Duration> = guest
        .events()
        .iter()
        .filter_map(|e| match e.what {
            GuestEventKind::Recovered { downtime } => Some(downtime),
            _ => None,
        })
        .collect();
    // The PHB recovery (3060 ms left; the GPU's PE is the host's, so no
    // hotplug sleep), waited in hint-sized sleeps, then a reset as for a
    // plain freeze (the second PE's whole downtime: the Linux-like host
    // blocks 250 + 1800 ms and the guest sleeps as much again).
    assert_eq!(downtimes.len(), 2);
    assert_eq!(downtimes[1], Duration::from_millis(4100));
    assert!(downtimes[0] >= Duration::from_millis(3060) + downtimes[1], "{downtimes:?}");
    assert!(downtimes[0] < Duration::from_millis(3060 + 1000) + downtimes[1], "{downtimes:?}");
}

#[test]
fn a_guest_gives_up_both_pes_of_a_dead_phb() {
    let (host, _) = host();
    let (mut vmm, mut guest, guests) = guest_on_two_pes(host.clone());
    host.inject_phb(PHB, PhbError::Dead).unwrap();
    for dev in guests {
        assert_eq!(guest.check_config(&mut vmm, dev), Outcome::Failed, "{dev}");
        assert!(guest.is_removed(guest.pe_of(dev).unwrap()));
    }
}
