//! End to end on the simulator: the guest model probes, detects a freeze,
//! recovers, and after too many freezes gives the PE up — through RTAS
//! buffers only, under both models of serving EEH.

use std::sync::Arc;
use std::time::Duration;

use vfio_eeh::addr::{Buid, GuestAddr, PciAddr};
use vfio_eeh::backend::EehBackend;
use vfio_eeh::mapping::VmId;
use vfio_eeh::ops::{ErrFunc, ErrInjection, ErrType, PeState};
use vfio_eeh::rtas::RtasPolicy;
use vfio_eeh_sim::clock::VirtualClock;
use vfio_eeh_sim::guest::{DriverResponse, GuestConfig, GuestEeh, GuestEventKind, GuestPlatform, Outcome};
use vfio_eeh_sim::vmm::{EehModel, SimVmm};
use vfio_eeh_sim::SimHost;

const NIC0: &str = "0000:02:00.0";
const NIC1: &str = "0000:02:00.1";

fn host_addr(s: &str) -> PciAddr {
    s.parse().unwrap()
}

/// A VM with the two-function NIC PE passed through at 00:01.0 and 00:01.1.
fn vmm(model: EehModel) -> (SimVmm, [GuestAddr; 2]) {
    let host = Arc::new(SimHost::builtin(Arc::new(VirtualClock::new())));
    let mut vmm = SimVmm::new(host, VmId(1), model, RtasPolicy::default());
    vmm.add_phb(Buid::SPAPR_BASE).unwrap();
    let guests = [0, 1].map(|f| GuestAddr::new(Buid::SPAPR_BASE, 0, 1, f).unwrap());
    vmm.pass_through(host_addr(NIC0), guests[0]).unwrap();
    vmm.pass_through(host_addr(NIC1), guests[1]).unwrap();
    (vmm, guests)
}

fn freeze_on_next_load(vmm: &SimVmm) {
    let host = vmm.host();
    let pe = host.pe_of(host_addr(NIC0)).unwrap();
    let injection = ErrInjection { kind: ErrType::Bus32, func: ErrFunc::LoadConfigAddr, addr: 0, mask: 0 };
    host.inject(pe, injection).unwrap();
}

fn rtas_calls(guest: &GuestEeh) -> Vec<(&'static str, i32)> {
    guest
        .events()
        .iter()
        .filter_map(|e| match e.what {
            GuestEventKind::Rtas { call, status } => Some((call, status)),
            _ => None,
        })
        .collect()
}

fn probe_recover_and_give_up(model: EehModel) {
    let (mut vmm, guests) = vmm(model);
    let mut guest = GuestEeh::new(GuestConfig { max_freezes: 2, ..GuestConfig::default() });

    // Probe: info2 fn 1, info2 fn 0, set-eeh-option(enable), for each function.
    assert_eq!(guest.probe(&mut vmm, &guests), guests.to_vec());
    let pe = guest.pe_of(guests[0]).unwrap();
    assert_eq!(guest.pe_of(guests[1]), Some(pe), "functions of one host PE share one guest PE");
    let probe: Vec<_> = rtas_calls(&guest).into_iter().map(|(c, _)| c).collect();
    assert_eq!(
        probe[..3],
        ["ibm,get-config-addr-info2", "ibm,get-config-addr-info2", "ibm,set-eeh-option"],
        "probe order"
    );
    assert!(rtas_calls(&guest).iter().all(|&(_, st)| st == 0));

    // A healthy read is not an EEH event.
    assert_eq!(guest.check_config(&mut vmm, guests[0]), Outcome::Healthy);

    // One freeze, one recovery.
    let before = rtas_calls(&guest).len();
    freeze_on_next_load(&vmm);
    let outcome = guest.check_config(&mut vmm, guests[0]);
    let Outcome::Recovered(downtime) = outcome else { panic!("no recovery: {outcome:?}") };
    let recovery: Vec<_> = rtas_calls(&guest)[before..].iter().map(|&(c, _)| c).collect();
    assert_eq!(
        recovery,
        [
            "ibm,read-slot-reset-state2", // detect: stopped
            "ibm,read-slot-reset-state2", // wait: available
            "ibm,read-slot-reset-state2", // log: frozen, so thaw MMIO
            "ibm,set-eeh-option",
            "ibm,configure-pe",
            "ibm,slot-error-detail",
            "ibm,set-slot-reset", // hot
            "ibm,set-slot-reset", // deactivate
            "ibm,read-slot-reset-state2",
            "ibm,read-slot-reset-state2",
            "ibm,configure-pe",
        ],
        "recovery sequence ({model:?})"
    );
    // The Linux guest sleeps the hold and settle times at least.
    assert!(downtime >= Duration::from_millis(2050), "{downtime:?}");
    assert_eq!(guest.check_config(&mut vmm, guests[0]), Outcome::Healthy);
    assert_eq!(vmm.config_read32(guests[0], 0), 0x10fb_8086);
    assert_eq!(vmm.host().status(vmm.host().pe_of(host_addr(NIC0)).unwrap()).unwrap().state, PeState::Normal);
    let log = guest.events().iter().find_map(|e| match e.what {
        GuestEventKind::ErrorLog { found } => Some(found),
        _ => None,
    });
    match model {
        // The seed's model reaches the host's error log; a container cannot.
        EehModel::HostMapping => assert_eq!(log, Some(true), "no error log"),
        EehModel::Container => assert_eq!(log, Some(false)),
    }

    // A second freeze recovers; the third exceeds max_freezes = 2.
    freeze_on_next_load(&vmm);
    assert!(matches!(guest.check_config(&mut vmm, guests[1]), Outcome::Recovered(_)));
    freeze_on_next_load(&vmm);
    assert_eq!(guest.check_config(&mut vmm, guests[0]), Outcome::Failed);
    assert!(guest.is_removed(pe));
    let last = guest.events().last().unwrap();
    assert!(matches!(&last.what, GuestEventKind::PermanentFailure { reason } if reason.contains("3 times")));
    let calls = rtas_calls(&guest);
    assert_eq!(calls.last().unwrap().0, "ibm,slot-error-detail", "gives up with slot-error-detail(2)");
    // Once removed, reads are no longer EEH events.
    assert_eq!(guest.check_config(&mut vmm, guests[0]), Outcome::Healthy);
}

#[test]
fn seed_model_probe_recovery_and_permanent_failure() {
    probe_recover_and_give_up(EehModel::HostMapping);
}

#[test]
fn upstream_model_probe_recovery_and_permanent_failure() {
    probe_recover_and_give_up(EehModel::Container);
}

#[test]
fn a_function_outside_the_vm_is_not_capable() {
    let (mut vmm, guests) = vmm(EehModel::HostMapping);
    let mut guest = GuestEeh::new(GuestConfig::default());
    let stranger = GuestAddr::new(Buid::SPAPR_BASE, 0, 7, 0).unwrap();
    let other_phb = GuestAddr::new(Buid(0x1234), 0, 1, 0).unwrap();
    assert_eq!(guest.probe(&mut vmm, &[stranger, guests[0], other_phb]), vec![guests[0]]);
    let not_capable = guest.events().iter().filter(|e| matches!(e.what, GuestEventKind::NotCapable { .. })).count();
    assert_eq!(not_capable, 2);
}

#[test]
fn a_driver_that_can_recover_is_thawed_without_a_reset() {
    let (mut vmm, guests) = vmm(EehModel::HostMapping);
    let config = GuestConfig { driver: DriverResponse::CanRecover, ..GuestConfig::default() };
    let mut guest = GuestEeh::new(config);
    guest.probe(&mut vmm, &guests);
    freeze_on_next_load(&vmm);
    let before = rtas_calls(&guest).len();
    assert!(matches!(guest.check_config(&mut vmm, guests[0]), Outcome::Recovered(_)));
    let calls: Vec<_> = rtas_calls(&guest)[before..].iter().map(|&(c, _)| c).collect();
    assert!(!calls.contains(&"ibm,set-slot-reset"), "{calls:?}");
    let callbacks: Vec<_> = guest
        .events()
        .iter()
        .filter_map(|e| match e.what {
            GuestEventKind::Driver { callback } => Some(callback),
            _ => None,
        })
        .collect();
    assert_eq!(callbacks, ["error_detected", "mmio_enabled", "resume"]);
    assert_eq!(vmm.host().status(vmm.host().pe_of(host_addr(NIC0)).unwrap()).unwrap().state, PeState::Normal);
}
