//! Injections into a PE that is resetting (issue 12 item 9, research Q5).
//!
//! PowerNV arms the PHB's PAPR error-injection registers and the error fires
//! on the next matching access; no layer checks the PE's state
//! (`eeh_pe_inject_err`, `pnv_eeh_err_inject`, skiboot `phb4_err_inject`),
//! and each call first clears what the last one left ("Clear leftover from
//! last time", `phb4_err_inject_finalize`). A frozen or resetting PE drops
//! MMIO, so in practice the trigger fires on the first matching access once
//! the PE is usable again. The simulator follows that, and records the
//! injections a later one replaced.

use std::sync::Arc;
use std::time::Duration;

use vfio_eeh::addr::{PciAddr, PeId};
use vfio_eeh::backend::EehBackend;
use vfio_eeh::ops::{EehOp, ErrFunc, ErrInjection, ErrType, PeState, ResetKind};
use vfio_eeh_sim::clock::{Clock, VirtualClock};
use vfio_eeh_sim::config::{DeactivatePolicy, InjectionMode, SimConfig};
use vfio_eeh_sim::event::{FreezeCause, SimEventKind};
use vfio_eeh_sim::spec::TopologySpec;
use vfio_eeh_sim::SimHost;

const NVME: &str = "0000:01:00.0";

fn nvme() -> PciAddr {
    NVME.parse().unwrap()
}

/// A reporting host (resets return at once) in `mode`, EEH on the NVMe's PE.
fn host(mode: InjectionMode) -> (SimHost, Arc<VirtualClock>, PeId) {
    let clock = Arc::new(VirtualClock::new());
    let config = SimConfig { deactivate: DeactivatePolicy::Reporting, injection: mode, ..SimConfig::default() };
    let host = SimHost::new(&TopologySpec::builtin(), config, clock.clone());
    let pe = host.pe_of(nvme()).unwrap();
    host.enable(pe).unwrap();
    (host, clock, pe)
}

const FUNCS: [ErrFunc; 4] =
    [ErrFunc::LoadMemAddr, ErrFunc::StoreMemAddr, ErrFunc::LoadConfigAddr, ErrFunc::LoadMemData];

fn inj(func: ErrFunc) -> ErrInjection {
    ErrInjection { kind: ErrType::Bus64, func, addr: 0, mask: 0 }
}

/// Four injections: two while the reset is asserted, two while the PE
/// settles. Every one is accepted.
fn inject_four_during_a_reset(host: &SimHost, clock: &VirtualClock, pe: PeId) {
    host.reset(pe, ResetKind::Hot).unwrap();
    host.inject(pe, inj(FUNCS[0])).unwrap();
    host.inject(pe, inj(FUNCS[1])).unwrap();
    clock.sleep(Duration::from_millis(250));
    host.pe_op(pe, EehOp::ResetDeactivate).unwrap();
    assert_eq!(host.status(pe).unwrap().state, PeState::Unavailable);
    host.inject(pe, inj(FUNCS[2])).unwrap();
    host.inject(pe, inj(FUNCS[3])).unwrap();
    // Still settling: nothing has fired.
    assert_eq!(host.status(pe).unwrap().state, PeState::Unavailable);
    assert!(!fired(host));
}

fn fired(host: &SimHost) -> bool {
    host.events().iter().any(|e| matches!(e.kind, SimEventKind::InjectionFired { .. }))
}

/// What happened to each injection: the ones replaced, and the one fired.
fn fates(host: &SimHost) -> (Vec<ErrFunc>, Vec<ErrFunc>) {
    let mut replaced = Vec::new();
    let mut frozen_by = Vec::new();
    for event in host.events() {
        match event.kind {
            SimEventKind::InjectionReplaced { previous, .. } => replaced.push(previous.func),
            SimEventKind::Frozen { cause: FreezeCause::Injected(func), .. } => frozen_by.push(func),
            _ => {}
        }
    }
    (replaced, frozen_by)
}

#[test]
fn four_injections_during_a_reset_arm_in_turn_and_the_last_fires_once_the_pe_is_usable() {
    let (host, clock, pe) = host(InjectionMode::OnAccess);
    inject_four_during_a_reset(&host, &clock, pe);
    clock.sleep(Duration::from_millis(1800));
    assert_eq!(host.status(pe).unwrap().state, PeState::Normal);
    // Accesses matching the three replaced injections do nothing.
    host.bar_write(nvme(), 0, 0x40, 4, 1).unwrap();
    assert_eq!(host.config_read(nvme(), 0, 2).unwrap(), 0x144d);
    assert_eq!(host.status(pe).unwrap().state, PeState::Normal);
    // A load matches the fourth (load memory data): it fires and freezes.
    assert_eq!(host.bar_read(nvme(), 0, 0, 4).unwrap(), 0xffff_ffff);
    assert_eq!(host.status(pe).unwrap().state, PeState::Stopped);
    let (replaced, frozen_by) = fates(&host);
    assert_eq!(replaced, FUNCS[..3]);
    assert_eq!(frozen_by, [FUNCS[3]]);
}

#[test]
fn an_immediate_injection_during_a_reset_freezes_the_pe_as_soon_as_it_is_usable() {
    let (host, clock, pe) = host(InjectionMode::Immediate);
    inject_four_during_a_reset(&host, &clock, pe);
    // The settle ends; the first look at the PE finds it usable, and the
    // armed injection freezes it there and then, with no access.
    clock.sleep(Duration::from_millis(1800));
    assert_eq!(host.status(pe).unwrap().state, PeState::Stopped);
    let (replaced, frozen_by) = fates(&host);
    assert_eq!(replaced, FUNCS[..3]);
    assert_eq!(frozen_by, [FUNCS[3]]);
    // It fired once: after a thaw the PE stays normal.
    host.enable(pe).unwrap();
    assert_eq!(host.status(pe).unwrap().state, PeState::Normal);
}

#[test]
fn an_immediate_injection_into_a_frozen_pe_waits_for_the_thaw() {
    let (host, _, pe) = host(InjectionMode::Immediate);
    host.inject(pe, inj(FUNCS[0])).unwrap();
    assert_eq!(host.status(pe).unwrap().state, PeState::Stopped);
    host.inject(pe, inj(FUNCS[1])).unwrap();
    assert_eq!(fates(&host).1, [FUNCS[0]]);
    // Thawing MMIO makes the PE usable for loads: the second one fires.
    host.pe_op(pe, EehOp::UnfreezeIo).unwrap();
    assert_eq!(host.status(pe).unwrap().state, PeState::Stopped);
    assert_eq!(fates(&host), (vec![], vec![FUNCS[0], FUNCS[1]]));
}
