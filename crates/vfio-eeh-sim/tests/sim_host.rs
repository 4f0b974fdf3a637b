//! The simulated host through its public API: freezes on each kind of
//! access, thaws, resets on the virtual clock (blocking and reporting),
//! device readiness, the error log, bad input with Linux's errno, seeded
//! campaigns, and many threads at once.

use std::sync::Arc;
use std::time::Duration;

use vfio_eeh::addr::{PciAddr, PeId};
use vfio_eeh::backend::{errno, BackendError, EehBackend, PeStatus};
use vfio_eeh::container::serve_pe_op;
use vfio_eeh::ops::{EehOp, ErrFunc, ErrInjection, ErrType, PeState, ResetKind};
use vfio_eeh::pe::{FreezePolicy, FreezeScope, ResetTiming};
use vfio_eeh::uapi::{VfioEehPeErr, VfioEehPeOp, VFIO_EEH_PE_GET_STATE, VFIO_EEH_PE_INJECT_ERR};
use vfio_eeh_sim::campaign::FaultCampaign;
use vfio_eeh_sim::clock::{Clock, VirtualClock};
use vfio_eeh_sim::config::{DeactivatePolicy, InjectionMode, SimConfig};
use vfio_eeh_sim::diag::PhbDiag;
use vfio_eeh_sim::event::{FreezeCause, SimEventKind};
use vfio_eeh_sim::spec::TopologySpec;
use vfio_eeh_sim::{AccessError, DmaDir, DmaRefusal, SimHost};
use zerocopy::IntoBytes;

const NVME: &str = "0000:01:00.0";
const NIC0: &str = "0000:02:00.0";
const GPU: &str = "0000:03:00.0";

fn addr(s: &str) -> PciAddr {
    s.parse().unwrap()
}

fn host_with(config: SimConfig) -> (SimHost, Arc<VirtualClock>) {
    let clock = Arc::new(VirtualClock::new());
    (SimHost::new(&TopologySpec::builtin(), config, clock.clone()), clock)
}

/// The built-in host, EEH enabled on every PE.
fn host() -> (SimHost, Arc<VirtualClock>) {
    let (host, clock) = host_with(SimConfig::default());
    for pe in host.pe_ids().collect::<Vec<_>>() {
        host.enable(pe).unwrap();
    }
    (host, clock)
}

fn inj(func: ErrFunc, addr: u64, mask: u64) -> ErrInjection {
    ErrInjection { kind: ErrType::Bus64, func, addr, mask }
}

fn state(host: &SimHost, pe: PeId) -> PeState {
    host.status(pe).unwrap().state
}

#[test]
fn topology_lists_every_device_bound_to_vfio_pci() {
    let (host, _) = host();
    let topo = host.topology();
    assert_eq!(topo.phbs.iter().map(|p| p.domain).collect::<Vec<_>>(), [0, 1]);
    assert_eq!(topo.devices().count(), 7);
    assert!(topo.devices().all(|(_, d)| d.driver.as_deref() == Some("vfio-pci")));
    for (group, dev) in topo.devices() {
        assert_eq!(host.pe_of(dev.addr).unwrap(), group.pe);
        assert!(host.devices_of(group.pe).unwrap().contains(&dev.addr));
    }
    assert_eq!(host.devices_of(PeId(1)).unwrap(), [addr(NIC0), addr("0000:02:00.1")]);
}

#[test]
fn an_armed_injection_fires_on_the_first_matching_access_only() {
    let (host, clock) = host();
    let nvme = addr(NVME);
    let pe = host.pe_of(nvme).unwrap();
    let bar0 = host.bars(nvme).unwrap()[0];
    host.bar_write(nvme, 0, 0x40, 4, 0x1234).unwrap();
    host.inject(pe, inj(ErrFunc::LoadMemAddr, bar0.addr + 0x80, !0xf)).unwrap();
    // A store, and a load elsewhere, do not match.
    host.bar_write(nvme, 0, 0x80, 4, 7).unwrap();
    assert_eq!(host.bar_read(nvme, 0, 0x40, 4).unwrap(), 0x1234);
    assert_eq!(state(&host, pe), PeState::Normal);
    clock.advance(Duration::from_secs(5));
    // This load matches (the mask ignores the low 4 bits).
    assert_eq!(host.bar_read(nvme, 0, 0x84, 4).unwrap(), 0xffff_ffff);
    assert_eq!(state(&host, pe), PeState::Stopped);
    // Frozen: loads all-ones, stores dropped, DMA refused, config all-ones.
    assert_eq!(host.bar_read(nvme, 0, 0x40, 8).unwrap(), u64::MAX);
    assert_eq!(host.bar_read(nvme, 0, 0x40, 1).unwrap(), 0xff);
    assert_eq!(host.config_read(nvme, 0, 2).unwrap(), 0xffff);
    host.bar_write(nvme, 0, 0x40, 4, 0xdead).unwrap();
    let refused = host.dma(nvme, DmaDir::Write, 0x1000).unwrap_err();
    assert_eq!(refused, AccessError::DmaRefused { dev: nvme, why: DmaRefusal::Stopped });
    // The error log names cause, device, address and time, once.
    let log = host.error_log(pe).unwrap().expect("A frozen PE has a log");
    let diag = PhbDiag::from_bytes(&log).unwrap();
    assert_eq!(diag.cause, FreezeCause::Injected(ErrFunc::LoadMemAddr));
    assert_eq!((diag.pe, diag.device, diag.addr), (pe, Some(nvme), bar0.addr + 0x84));
    assert_eq!(diag.at_ns, 5_000_000_000);
    assert_eq!(host.error_log(pe).unwrap(), None);
    // Thawing MMIO shows the store was dropped; the armed injection is gone.
    host.pe_op(pe, EehOp::UnfreezeIo).unwrap();
    assert_eq!(state(&host, pe), PeState::StoppedDma);
    assert_eq!(host.bar_read(nvme, 0, 0x40, 4).unwrap(), 0x1234);
    assert_eq!(host.bar_read(nvme, 0, 0x84, 4).unwrap(), 0);
    assert!(host.dma(nvme, DmaDir::Read, 0).is_err(), "DMA still stopped");
    host.pe_op(pe, EehOp::UnfreezeDma).unwrap();
    assert_eq!(state(&host, pe), PeState::Normal);
    host.dma(nvme, DmaDir::Read, 0).unwrap();
}

#[test]
fn every_access_kind_can_fire_an_injection() {
    let nic = addr(NIC0);
    type Access<'a> = &'a dyn Fn(&SimHost);
    let accesses: [(ErrFunc, Access); 8] = [
        (ErrFunc::LoadMemData, &|h| drop(h.bar_read(nic, 0, 0, 4))),
        (ErrFunc::StoreMemAddr, &|h| drop(h.bar_write(nic, 4, 8, 8, 1))),
        (ErrFunc::LoadIoAddr, &|h| drop(h.bar_read(nic, 2, 4, 4))),
        (ErrFunc::StoreIoData, &|h| drop(h.bar_write(nic, 2, 0, 2, 1))),
        (ErrFunc::LoadConfigAddr, &|h| drop(h.config_read(nic, 0x40, 1))),
        (ErrFunc::StoreConfigData, &|h| drop(h.config_write(nic, 0x3c, 1, 5))),
        (ErrFunc::DmaReadTarget, &|h| drop(h.dma(nic, DmaDir::Read, 0x10_0000))),
        (ErrFunc::DmaWriteMaster, &|h| drop(h.dma(nic, DmaDir::Write, 0x10_0000))),
    ];
    for (func, access) in accesses {
        let (host, _) = host();
        let pe = host.pe_of(nic).unwrap();
        host.inject(pe, inj(func, 0, 0)).unwrap();
        access(&host);
        assert_eq!(state(&host, pe), PeState::Stopped, "{func:?}");
        let kinds: Vec<SimEventKind> = host.events().into_iter().map(|e| e.kind).collect();
        assert!(kinds
            .iter()
            .any(|k| matches!(k, SimEventKind::InjectionFired { injection, .. } if injection.func == func)));
        let diag = PhbDiag::from_bytes(&host.error_log(pe).unwrap().unwrap()).unwrap();
        assert_eq!(diag.cause, FreezeCause::Injected(func));
    }
}

#[test]
fn immediate_mode_freezes_without_an_access() {
    let (host, _) = host_with(SimConfig { injection: InjectionMode::Immediate, ..SimConfig::default() });
    let pe = PeId(0);
    host.inject(pe, inj(ErrFunc::LoadConfigAddr, 0, 0)).unwrap();
    assert_eq!(state(&host, pe), PeState::Stopped);
}

#[test]
fn blocking_reset_sleeps_hold_and_settle_and_returns_normal_with_bars_restored() {
    let (host, clock) = host();
    let gpu = addr(GPU);
    let pe = host.pe_of(gpu).unwrap();
    host.bar_write(gpu, 1, 0x1000, 8, 42).unwrap();
    host.config_write(gpu, 0x10, 4, u32::MAX).unwrap(); // Sizing, not undone.
    host.freeze(pe, FreezeScope::All).unwrap();
    let t0 = clock.now();
    host.reset(pe, ResetKind::Fundamental).unwrap();
    assert_eq!(clock.now() - t0, Duration::from_millis(250));
    assert_eq!(state(&host, pe), PeState::Reset);
    assert_eq!(host.config_read(gpu, 0, 4).unwrap(), u32::MAX, "Blocked during reset");
    host.pe_op(pe, EehOp::ResetDeactivate).unwrap();
    assert_eq!(clock.now() - t0, Duration::from_millis(250 + 1800));
    assert_eq!(host.status(pe).unwrap(), PeStatus::of(PeState::Normal));
    // Saved BARs back, decoding on, device memory reset.
    let bar0 = host.bars(gpu).unwrap()[0];
    assert_eq!(host.config_read(gpu, 0x10, 4).unwrap(), u32::try_from(bar0.addr).unwrap());
    assert_eq!(host.bar_read(gpu, 1, 0x1000, 8).unwrap(), 0);
    assert_eq!(host.pe_op(pe, EehOp::Configure).unwrap().ioctl_value(), 0);
    let kinds: Vec<_> = host.events().into_iter().filter(|e| e.pe == pe).map(|e| e.kind).collect();
    assert!(matches!(
        kinds[kinds.len() - 4..],
        [
            SimEventKind::ResetAsserted { kind: ResetKind::Fundamental },
            SimEventKind::ResetDeasserted { .. },
            SimEventKind::Settled,
            SimEventKind::Configured,
        ]
    ));
}

#[test]
fn reporting_reset_says_unavailable_with_the_true_remaining_delay() {
    let (host, clock) = host_with(SimConfig { deactivate: DeactivatePolicy::Reporting, ..SimConfig::default() });
    let pe = PeId(0);
    let nvme = addr(NVME);
    host.enable(pe).unwrap();
    host.reset(pe, ResetKind::Hot).unwrap();
    clock.advance(Duration::from_millis(300));
    host.pe_op(pe, EehOp::ResetDeactivate).unwrap();
    assert_eq!(clock.now(), Duration::from_millis(300), "Reporting does not sleep");
    let status = host.status(pe).unwrap();
    assert_eq!(status, PeStatus { state: PeState::Unavailable, unavailable_for: Some(Duration::from_millis(1800)) });
    assert_eq!(host.pe_op(pe, EehOp::GetState).unwrap().ioctl_value(), 5);
    assert_eq!(host.config_read(nvme, 0, 2).unwrap(), 0xffff);
    assert_eq!(host.pe_op(pe, EehOp::ResetDeactivate).unwrap_err().errno(), errno::EIO);
    clock.advance(Duration::from_millis(1799));
    assert_eq!(host.status(pe).unwrap().unavailable_for, Some(Duration::from_millis(1)));
    clock.advance(Duration::from_millis(1));
    assert_eq!(state(&host, pe), PeState::Normal);
    assert_eq!(host.config_read(nvme, 0, 2).unwrap(), 0x144d);
}

#[test]
fn a_short_settle_leaves_slow_devices_answering_retry() {
    let config = SimConfig {
        reset: ResetTiming { settle: Duration::from_millis(100), ..ResetTiming::default() },
        ..SimConfig::default()
    };
    let (host, clock) = host_with(config);
    let gpu = addr(GPU); // Ready 300 ms after deassert.
    let pe = host.pe_of(gpu).unwrap();
    host.enable(pe).unwrap();
    host.reset(pe, ResetKind::Hot).unwrap();
    let deassert = clock.now();
    host.pe_op(pe, EehOp::ResetDeactivate).unwrap();
    assert_eq!(state(&host, pe), PeState::Normal);
    assert!(!host.device_ready(gpu).unwrap());
    assert_eq!(host.config_read(gpu, 0, 2).unwrap(), 0x0001, "Configuration Request Retry");
    assert_eq!(host.bar_read(gpu, 0, 0, 4).unwrap(), 0xffff_ffff);
    assert_eq!(host.dma(gpu, DmaDir::Read, 0).unwrap_err().errno(), errno::EIO);
    clock.advance(Duration::from_millis(300) - (clock.now() - deassert));
    assert!(host.device_ready(gpu).unwrap());
    assert_eq!(host.config_read(gpu, 0, 2).unwrap(), 0x10de);
    assert_eq!(state(&host, pe), PeState::Normal, "Readiness polling froze nothing");
}

#[test]
fn the_host_never_recovers_a_frozen_pe_but_enable_and_deactivate_do() {
    let (host, clock) = host();
    let pe = PeId(3);
    host.freeze(pe, FreezeScope::Dma).unwrap();
    clock.advance(Duration::from_secs(24 * 3600));
    assert_eq!(state(&host, pe), PeState::StoppedDma);
    host.freeze(pe, FreezeScope::All).unwrap();
    host.enable(pe).unwrap();
    assert_eq!(state(&host, pe), PeState::Normal);
    host.freeze(pe, FreezeScope::All).unwrap();
    let t = clock.now();
    host.pe_op(pe, EehOp::ResetDeactivate).unwrap();
    assert_eq!((state(&host, pe), clock.now()), (PeState::Normal, t), "No reset to settle");
}

#[test]
fn memory_access_with_decoding_off_is_an_unsupported_request() {
    let (host, _) = host();
    let nvme = addr(NVME);
    let pe = host.pe_of(nvme).unwrap();
    host.config_write(nvme, 0x04, 2, 0x0004).unwrap(); // Memory decoding off.
    assert_eq!(host.dma(nvme, DmaDir::Read, 0), Ok(()));
    assert_eq!(host.bar_read(nvme, 0, 0, 4).unwrap(), 0xffff_ffff);
    assert_eq!(state(&host, pe), PeState::Stopped);
    let diag = PhbDiag::from_bytes(&host.error_log(pe).unwrap().unwrap()).unwrap();
    assert_eq!(diag.cause, FreezeCause::UnsupportedRequest);
    host.enable(pe).unwrap();
    host.config_write(nvme, 0x04, 2, 0).unwrap();
    assert_eq!(host.dma(nvme, DmaDir::Read, 0).unwrap_err().errno(), errno::EIO, "Bus master off");
}

#[test]
fn bad_input_gives_linux_errno_and_changes_nothing() {
    let (host, _) = host_with(SimConfig::default());
    let nope = PeId(99);
    let missing = addr("0000:09:00.0");
    assert_eq!(host.pe_op(nope, EehOp::GetState).unwrap_err(), BackendError::NoPe(nope));
    assert_eq!(host.status(nope).unwrap_err().errno(), errno::ENODEV);
    assert_eq!(host.devices_of(nope).unwrap_err().errno(), errno::ENODEV);
    assert_eq!(host.error_log(nope).unwrap_err().errno(), errno::ENODEV);
    assert_eq!(host.freeze(nope, FreezeScope::All).unwrap_err().errno(), errno::ENODEV);
    assert_eq!(host.pe_of(missing).unwrap_err(), BackendError::NoDevice(missing));
    assert_eq!(host.config_read(missing, 0, 4).unwrap_err().errno(), errno::ENODEV);

    // Reset without EEH enabled: EIO, nothing happens.
    let pe = PeId(0);
    for op in [EehOp::Reset(ResetKind::Hot), EehOp::Reset(ResetKind::Fundamental), EehOp::ResetDeactivate] {
        assert_eq!(host.pe_op(pe, op).unwrap_err(), BackendError::NotEnabled(pe));
    }
    assert_eq!(state(&host, pe), PeState::Normal);
    assert!(host.events().is_empty());

    // Injection parameters out of range: EINVAL for the function (Linux's
    // core check), ERANGE for the type (PowerNV's); EINVAL for the
    // core checks.
    let raw = |op, type_, func, addr| VfioEehPeOp::new(op, VfioEehPeErr { type_, func, addr, mask: 0 });
    let ioctl = |pe, r: VfioEehPeOp| serve_pe_op(&host, pe, r.as_bytes());
    let err = |r: VfioEehPeOp| ioctl(pe, r).unwrap_err();
    assert_eq!(err(raw(VFIO_EEH_PE_INJECT_ERR, 0, 20, 0)), errno::EINVAL);
    assert_eq!(err(raw(VFIO_EEH_PE_INJECT_ERR, 2, 0, 0)), errno::ERANGE);
    assert_eq!(err(raw(VFIO_EEH_PE_INJECT_ERR, 0, 0, 1 << 32)), errno::ERANGE, "32-bit type, 64-bit address");
    assert_eq!(err(raw(11, 0, 0, 0)), errno::EINVAL);
    let mut flagged = raw(VFIO_EEH_PE_GET_STATE, 0, 0, 0);
    flagged.flags = 1;
    assert_eq!(err(flagged), errno::EINVAL);
    assert_eq!(ioctl(nope, raw(VFIO_EEH_PE_GET_STATE, 0, 0, 0)), Err(errno::ENODEV));
    assert_eq!(ioctl(pe, raw(VFIO_EEH_PE_GET_STATE, 0, 0, 0)), Ok(0));
    assert!(host.events().is_empty(), "Nothing was armed");

    // Access parameters.
    let nvme = addr(NVME);
    assert_eq!(host.config_read(nvme, 1, 2).unwrap_err().errno(), errno::EINVAL);
    assert_eq!(host.config_read(nvme, 0xffe, 4).unwrap_err().errno(), errno::EINVAL);
    assert_eq!(host.config_read(nvme, 0, 3), Err(AccessError::Width(3)));
    assert_eq!(host.bar_read(nvme, 1, 0, 4), Err(AccessError::NoBar { dev: nvme, bar: 1 }));
    assert!(matches!(host.bar_read(nvme, 0, 16 * 1024, 4), Err(AccessError::Range { .. })));
    assert!(matches!(host.bar_write(nvme, 0, u64::MAX - 3, 4, 0), Err(AccessError::Range { .. })));
}

#[test]
fn too_many_freezes_fail_the_pe_permanently() {
    let policy = FreezePolicy { max_freezes: 2, window: Duration::from_secs(60) };
    let (host, clock) = host_with(SimConfig { freeze_policy: policy, ..SimConfig::default() });
    let pe = PeId(1);
    let nic = addr(NIC0);
    host.enable(pe).unwrap();
    for _ in 0..2 {
        host.freeze(pe, FreezeScope::All).unwrap();
        host.enable(pe).unwrap();
        clock.advance(Duration::from_secs(10));
    }
    host.freeze(pe, FreezeScope::All).unwrap();
    assert_eq!(
        host.status(pe).unwrap(),
        PeStatus { state: PeState::Unavailable, unavailable_for: Some(Duration::ZERO) }
    );
    assert!(host.events().iter().any(|e| matches!(e.kind, SimEventKind::PermanentFailure { count: 3, .. })));
    let ops = [
        EehOp::Enable,
        EehOp::Disable,
        EehOp::UnfreezeIo,
        EehOp::UnfreezeDma,
        EehOp::ResetDeactivate,
        EehOp::Reset(ResetKind::Hot),
        EehOp::Configure,
        EehOp::InjectErr(inj(ErrFunc::LoadMemAddr, 0, 0)),
    ];
    for op in ops {
        let e = host.pe_op(pe, op).unwrap_err();
        assert_eq!((e.clone(), e.errno()), (BackendError::PermanentlyFailed(pe), errno::EIO), "{op:?}");
    }
    assert_eq!(host.pe_op(pe, EehOp::GetState).unwrap().ioctl_value(), 5);
    assert_eq!(host.config_read(nic, 0, 4).unwrap(), u32::MAX);
}

#[test]
fn campaigns_are_reproducible_from_their_seed() {
    let run = |seed| {
        let (host, _) = host_with(SimConfig::default());
        let campaign = FaultCampaign { seed, faults: 60, mean_gap: Duration::from_secs(30) };
        campaign.run(&host).unwrap()
    };
    let a = run(7);
    let b = run(7);
    assert_eq!(a, b);
    assert!(a.injected > 0 && a.recovered > 0);
    assert!(a.events.iter().any(|e| matches!(e.kind, SimEventKind::InjectionFired { .. })));
    // 60 faults over five PEs within an hour exceed the freeze limit.
    assert!(!a.failed.is_empty());
    assert_ne!(run(8).events, a.events);
    let json = serde_json::to_string(&a.events).unwrap();
    assert!(json.contains("\"event\":\"frozen\""));
}

#[test]
fn reporting_campaigns_wait_out_the_settle() {
    let (host, _) = host_with(SimConfig { deactivate: DeactivatePolicy::Reporting, ..SimConfig::default() });
    let report = FaultCampaign { seed: 1, faults: 10, mean_gap: Duration::from_secs(600) }.run(&host).unwrap();
    assert_eq!(report.recovered, report.injected);
    assert!(host.pe_ids().all(|pe| host.status(pe).unwrap().state == PeState::Normal));
}

#[test]
fn many_threads_hammer_the_host_and_invariants_hold() {
    let (host, _) = host();
    let host = Arc::new(host);
    let devices: Vec<PciAddr> = host.topology().devices().map(|(_, d)| d.addr).collect();
    let threads: Vec<_> = (0..6u64)
        .map(|t| {
            let host = Arc::clone(&host);
            let devices = devices.clone();
            std::thread::spawn(move || {
                let mut rng = fastrand::Rng::with_seed(t);
                for _ in 0..3000 {
                    let dev = devices[rng.usize(..devices.len())];
                    let pe = host.pe_of(dev).unwrap();
                    let info = host.device(dev).unwrap().clone();
                    match rng.u8(..10) {
                        0..=3 => {
                            let v = host.config_read(dev, 0, 2).unwrap();
                            let ok = [u32::from(info.vendor), 0xffff, 0x0001];
                            assert!(ok.contains(&v), "Vendor id read {v:#x}");
                        }
                        4 => {
                            let _ = host.bar_write(dev, info.bars[0].index, 0, 4, t);
                            let _ = host.bar_read(dev, info.bars[0].index, 0, 4).unwrap();
                        }
                        5 => {
                            let _ = host.dma(dev, DmaDir::Write, 0);
                        }
                        6 => host.inject(pe, inj(ErrFunc::LoadConfigData, 0, 0)).unwrap_or(()),
                        7 => {
                            let _ = host.reset(pe, ResetKind::Hot);
                            let _ = host.pe_op(pe, EehOp::ResetDeactivate);
                        }
                        8 => {
                            let _ = host.enable(pe);
                            let _ = host.error_log(pe);
                        }
                        _ => {
                            let s = host.status(pe).unwrap();
                            assert_eq!(s.unavailable_for.is_some(), s.state == PeState::Unavailable);
                        }
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("A worker panicked");
    }
    let events = host.events();
    assert!(events.windows(2).all(|w| w[0].seq < w[1].seq), "Sequence numbers are unique and ordered");
    for pe in host.pe_ids() {
        let mine: Vec<_> = events.iter().filter(|e| e.pe == pe).collect();
        assert!(mine.windows(2).all(|w| w[0].at_ns <= w[1].at_ns), "PE {pe} events go back in time");
        let status = host.status(pe).unwrap();
        let dev = host.devices_of(pe).unwrap()[0];
        let vendor = host.config_read(dev, 0, 2).unwrap();
        match status.state {
            PeState::Normal | PeState::StoppedDma if host.device_ready(dev).unwrap() => {
                assert_eq!(vendor, u32::from(host.device(dev).unwrap().vendor), "PE {pe} usable but reads {vendor:#x}")
            }
            PeState::Normal | PeState::StoppedDma => assert_eq!(vendor, 1),
            _ => assert_eq!(vendor, 0xffff),
        }
        // Any PE can be brought back unless it failed for good.
        if status.unavailable_for != Some(Duration::ZERO) {
            host.enable(pe).unwrap();
            host.reset(pe, ResetKind::Hot).unwrap();
            host.pe_op(pe, EehOp::ResetDeactivate).unwrap();
            host.clock().sleep(Duration::from_secs(1));
            assert_eq!(state(&host, pe), PeState::Normal);
        }
    }
}

#[test]
fn a_function_reset_loses_device_memory_but_keeps_config() {
    let (host, _) = host();
    let nvme = addr(NVME);
    host.config_write(nvme, 4, 2, 0x0006).unwrap(); // Memory and bus master on.
    host.bar_write(nvme, 0, 0x40, 4, 0xdead_beef).unwrap();
    let bar0 = host.config_read(nvme, 0x10, 4).unwrap();
    host.function_reset(nvme).unwrap();
    assert_eq!(host.bar_read(nvme, 0, 0x40, 4).unwrap(), 0);
    assert_eq!(host.config_read(nvme, 0x10, 4).unwrap(), bar0);
    assert_eq!(host.config_read(nvme, 4, 2).unwrap() & 0x6, 0x6);
    assert_eq!(host.function_reset(addr("0000:09:00.0")).unwrap_err().errno(), errno::ENODEV);
}
