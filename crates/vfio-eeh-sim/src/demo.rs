//! The main job: a VM on the simulated host, a guest workload of MMIO
//! traffic, a seeded campaign of injected errors, and the guest model
//! recovering from each — with a timeline and a per-PE table.
//!
//! Everything runs on a virtual clock: the same seed gives the same report,
//! byte for byte, and a run of many recoveries (each sleeping seconds of
//! guest time) takes milliseconds.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use vfio_eeh::addr::{Buid, GuestAddr, PciAddr, PeId};
use vfio_eeh::backend::{BackendError, EehBackend};
use vfio_eeh::ops::{ErrFunc, ErrInjection, ErrType, PeState};
use vfio_eeh::rtas::RtasPolicy;

use crate::clock::{Clock, VirtualClock};
use crate::config::SimConfig;
use crate::event::SimEventKind;
use crate::guest::{GuestConfig, GuestEeh, GuestEventKind, GuestPlatform, Outcome};
use crate::spec::TopologySpec;
use crate::vmm::{EehModel, SimVmm, VmmError};
use crate::SimHost;

/// Durations in JSON: milliseconds, fractional.
fn millis<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64() * 1000.0)
}

/// The demo's knobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct DemoConfig {
    /// Seed of the error campaign.
    pub seed: u64,
    /// Errors to inject.
    pub errors: u32,
    /// Workload rounds (each touches every device once).
    pub rounds: u32,
    /// Guest time between rounds.
    #[serde(rename = "round_gap_ms", serialize_with = "millis")]
    pub round_gap: Duration,
    /// How the VMM reaches the host.
    pub model: EehModel,
    /// The guest's freeze limit (`eeh_max_freezes`).
    pub max_freezes: u32,
}

impl Default for DemoConfig {
    fn default() -> Self {
        DemoConfig {
            seed: 1,
            errors: 8,
            rounds: 400,
            round_gap: Duration::from_millis(50),
            model: EehModel::HostMapping,
            max_freezes: 5,
        }
    }
}

/// One line of the timeline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TimelineEntry {
    /// Virtual time.
    #[serde(rename = "at_ms", serialize_with = "millis")]
    pub at: Duration,
    /// The host PE.
    pub pe: PeId,
    /// `host` or `guest`.
    pub side: &'static str,
    /// What happened.
    pub event: String,
}

/// A passed-through function.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Passthrough {
    /// On the host.
    pub host: PciAddr,
    /// In the guest.
    pub guest: GuestAddr,
}

/// One PE's row of the final table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PeRow {
    /// The host PE (IOMMU group).
    pub pe: PeId,
    /// Host functions and their guest addresses.
    pub devices: Vec<Passthrough>,
    /// Errors the campaign injected into it.
    pub injected: u32,
    /// Freezes the guest detected.
    pub freezes: u32,
    /// Successful recoveries.
    pub recoveries: u32,
    /// Guest downtime, summed over recoveries.
    #[serde(rename = "downtime_ms", serialize_with = "millis")]
    pub downtime: Duration,
    /// The host's PE state at the end.
    pub host_state: PeState,
    /// Whether the host saw the PE as passed to the VMM (`eeh_pe_passed`), so
    /// that only the guest counted its freezes.
    pub passed: bool,
    /// Whether the guest gave the PE up.
    pub failed: bool,
    /// Whether giving up was expected (more injections than the freeze limit).
    pub failure_expected: bool,
}

/// What a demo run did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DemoReport {
    /// The knobs.
    pub config: DemoConfig,
    /// Host and guest events, by time.
    pub timeline: Vec<TimelineEntry>,
    /// One row per passed-through PE.
    pub pes: Vec<PeRow>,
    /// Virtual time the run took.
    #[serde(rename = "elapsed_ms", serialize_with = "millis")]
    pub elapsed: Duration,
}

impl DemoReport {
    /// PEs that failed although their injections stayed within the limit,
    /// or survived although they exceeded it.
    pub fn unexpected(&self) -> Vec<PeId> {
        self.pes.iter().filter(|row| row.failed != row.failure_expected).map(|row| row.pe).collect()
    }
}

/// Why the demo could not run.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// Setting up the VM failed.
    #[error("Cannot set up the VM: {0}")]
    Setup(#[from] VmmError),
    /// The host refused an injection.
    #[error("Cannot inject an error: {0}")]
    Inject(#[from] BackendError),
}

/// The VM's passed-through devices: host function, guest address.
fn passthrough_plan() -> Vec<(PciAddr, GuestAddr)> {
    let phb0 = Buid::SPAPR_BASE;
    let phb1 = Buid(Buid::SPAPR_BASE.0 + 1);
    let at = |buid, slot, func| GuestAddr::new(buid, 0, slot, func).expect("valid slot and function");
    [
        ("0000:01:00.0", at(phb0, 1, 0)), // NVMe, PE 0
        ("0000:02:00.0", at(phb0, 2, 0)), // NIC, PE 1 (two functions)
        ("0000:02:00.1", at(phb0, 2, 1)),
        ("0001:01:00.0", at(phb1, 1, 0)), // ConnectX-5, PE 3 (two functions)
        ("0001:01:00.1", at(phb1, 1, 1)),
    ]
    .into_iter()
    .map(|(host, guest)| (host.parse().expect("valid address"), guest))
    .collect()
}

/// How the timeline names a host freeze.
const FROZEN: &str = "PE frozen";

/// The accesses the workload makes, and so the errors that can fire in it.
const WORKLOAD_FUNCS: [ErrFunc; 3] = [ErrFunc::LoadMemAddr, ErrFunc::StoreMemAddr, ErrFunc::LoadConfigAddr];

/// A planned error: in which round, on which device.
#[derive(Debug, Clone, Copy)]
struct Planned {
    round: u32,
    device: usize,
    func: ErrFunc,
}

fn plan(config: &DemoConfig, devices: usize) -> Vec<Planned> {
    let mut rng = fastrand::Rng::with_seed(config.seed);
    let mut planned: Vec<Planned> = (0..config.errors)
        .map(|_| Planned {
            round: rng.u32(1..config.rounds.max(2)),
            device: rng.usize(..devices),
            func: WORKLOAD_FUNCS[rng.usize(..WORKLOAD_FUNCS.len())],
        })
        .collect();
    planned.sort_by_key(|p| p.round);
    planned
}

/// A PE as the host sees it at the end of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostPe {
    /// Its state.
    pub state: PeState,
    /// Whether it is passed through to a VFIO user (`eeh_pe_passed`).
    pub passed: bool,
}

/// What the demo runs against: a VM on a host, and an operator's view of
/// that host. [`SimTarget`] is the simulator in this process; eehctl's
/// `demo --daemon` drives a real eehd through the same loop.
pub trait DemoTarget {
    /// The VM's platform, which the guest model runs on.
    type Platform: GuestPlatform;
    /// Why the host side failed.
    type Error: std::error::Error + Send + Sync + 'static;

    /// Gives the VM a virtual PHB.
    fn add_phb(&mut self, buid: Buid) -> Result<(), Self::Error>;
    /// Passes host function `host` through at guest address `guest`.
    fn pass_through(&mut self, host: PciAddr, guest: GuestAddr) -> Result<(), Self::Error>;
    /// The VM's platform.
    fn platform(&mut self) -> &mut Self::Platform;
    /// The PE of a host function.
    fn pe_of(&mut self, host: PciAddr) -> Result<PeId, Self::Error>;
    /// A PE as the host sees it.
    fn host_pe(&mut self, pe: PeId) -> Result<HostPe, Self::Error>;
    /// Arms an error in a PE, as an operator would.
    fn inject(&mut self, pe: PeId, injection: ErrInjection) -> Result<(), Self::Error>;
    /// Lets `gap` of guest time pass between rounds; a target whose
    /// platform can fail says so here.
    fn pass_time(&mut self, gap: Duration) -> Result<(), Self::Error>;
    /// The host's side of the timeline for `pes`, by time.
    fn host_timeline(&mut self, pes: &BTreeSet<PeId>) -> Result<Vec<TimelineEntry>, Self::Error>;
}

/// The simulated host in this process, on a virtual clock, with one VM.
pub struct SimTarget {
    clock: Arc<VirtualClock>,
    host: Arc<SimHost>,
    vmm: SimVmm,
}

impl SimTarget {
    /// The built-in host with a VM reaching it under `model`.
    pub fn new(model: EehModel) -> Self {
        let clock = Arc::new(VirtualClock::new());
        let host = Arc::new(SimHost::new(&TopologySpec::builtin(), SimConfig::default(), clock.clone()));
        let vmm = SimVmm::new(host.clone(), vfio_eeh::mapping::VmId(1), model, RtasPolicy::default());
        SimTarget { clock, host, vmm }
    }
}

impl DemoTarget for SimTarget {
    type Platform = SimVmm;
    type Error = DemoError;

    fn add_phb(&mut self, buid: Buid) -> Result<(), DemoError> {
        Ok(self.vmm.add_phb(buid)?)
    }

    fn pass_through(&mut self, host: PciAddr, guest: GuestAddr) -> Result<(), DemoError> {
        Ok(self.vmm.pass_through(host, guest)?)
    }

    fn platform(&mut self) -> &mut SimVmm {
        &mut self.vmm
    }

    fn pe_of(&mut self, host: PciAddr) -> Result<PeId, DemoError> {
        Ok(self.host.pe_of(host)?)
    }

    fn host_pe(&mut self, pe: PeId) -> Result<HostPe, DemoError> {
        Ok(HostPe { state: self.host.status(pe)?.state, passed: self.host.passed(pe)? })
    }

    fn inject(&mut self, pe: PeId, injection: ErrInjection) -> Result<(), DemoError> {
        Ok(self.host.inject(pe, injection)?)
    }

    fn pass_time(&mut self, gap: Duration) -> Result<(), DemoError> {
        self.clock.sleep(gap);
        Ok(())
    }

    fn host_timeline(&mut self, pes: &BTreeSet<PeId>) -> Result<Vec<TimelineEntry>, DemoError> {
        let mut timeline = Vec::new();
        for event in self.host.events() {
            if !pes.contains(&event.pe) {
                continue;
            }
            let text = match &event.kind {
                SimEventKind::Frozen { cause, device, .. } => {
                    format!("{FROZEN}: {cause:?}{}", device.map(|d| format!(" by {d}")).unwrap_or_default())
                }
                SimEventKind::ResetAsserted { kind } => format!("{kind:?} reset asserted"),
                SimEventKind::ResetDeasserted { .. } => "reset deasserted, BARs restored".into(),
                SimEventKind::PermanentFailure { count, .. } => format!("host: PE failed after {count} freezes"),
                _ => continue,
            };
            timeline.push(TimelineEntry {
                at: Duration::from_nanos(event.at_ns),
                pe: event.pe,
                side: "host",
                event: text,
            });
        }
        Ok(timeline)
    }
}

/// Runs the demo on the simulated host in this process.
pub fn run(config: DemoConfig) -> Result<DemoReport, DemoError> {
    run_on(config, &mut SimTarget::new(config.model))
}

/// Runs the demo on `target`: the VM's PHBs and devices, the guest's
/// probe, the seeded campaign over the workload's rounds, a last look at
/// each device, and the report.
pub fn run_on<T: DemoTarget>(config: DemoConfig, target: &mut T) -> Result<DemoReport, T::Error> {
    let devices = passthrough_plan();
    for buid in [Buid::SPAPR_BASE, Buid(Buid::SPAPR_BASE.0 + 1)] {
        target.add_phb(buid)?;
    }
    let mut pe_of = BTreeMap::new();
    for &(host_dev, guest_dev) in &devices {
        target.pass_through(host_dev, guest_dev)?;
        pe_of.insert(host_dev, target.pe_of(host_dev)?);
    }
    let mut guest = GuestEeh::new(GuestConfig { max_freezes: config.max_freezes, ..GuestConfig::default() });
    let guest_devs: Vec<GuestAddr> = devices.iter().map(|&(_, g)| g).collect();
    guest.probe(target.platform(), &guest_devs);

    let mut injected: BTreeMap<PeId, u32> = BTreeMap::new();
    let planned = plan(&config, devices.len());
    let mut next = planned.iter().peekable();
    for round in 0..config.rounds {
        while let Some(p) = next.next_if(|p| p.round == round) {
            let pe = pe_of[&devices[p.device].0];
            if target.host_pe(pe)?.state != PeState::Unavailable {
                target.inject(pe, ErrInjection { kind: ErrType::Bus64, func: p.func, addr: 0, mask: 0 })?;
                *injected.entry(pe).or_default() += 1;
            }
        }
        for &dev in &guest_devs {
            workload_step(target.platform(), &mut guest, dev);
        }
        target.pass_time(config.round_gap)?;
    }
    // Anything still armed or frozen is found by a last look at each device.
    for &dev in &guest_devs {
        guest.check_config(target.platform(), dev);
    }
    let elapsed = target.platform().clock().now();
    let pes: BTreeSet<PeId> = pe_of.values().copied().collect();
    let mut host_states = BTreeMap::new();
    for &pe in &pes {
        host_states.insert(pe, target.host_pe(pe)?);
    }
    let host_timeline = target.host_timeline(&pes)?;
    let seen = Seen { pe_of: &pe_of, injected: &injected, host_states: &host_states };
    Ok(report(config, &guest, &devices, &seen, host_timeline, elapsed))
}

/// One device's share of a round: a doorbell store, a status load, a config
/// read — each read checked the way a pseries driver's accessors check.
fn workload_step(vmm: &mut impl GuestPlatform, guest: &mut GuestEeh, dev: GuestAddr) {
    if guest.pe_of(dev).is_some_and(|pe| guest.is_removed(pe)) {
        return;
    }
    vmm.mmio_write32(dev, 0, 0x40, 1);
    if let Outcome::Healthy = guest.check_mmio(vmm, dev, 0, 0) {
        guest.check_config(vmm, dev);
    }
}

/// What the run saw of the host: each device's PE, the errors injected
/// into each PE and each PE's state at the end.
struct Seen<'a> {
    pe_of: &'a BTreeMap<PciAddr, PeId>,
    injected: &'a BTreeMap<PeId, u32>,
    host_states: &'a BTreeMap<PeId, HostPe>,
}

fn report(
    config: DemoConfig,
    guest: &GuestEeh,
    devices: &[(PciAddr, GuestAddr)],
    seen: &Seen<'_>,
    mut timeline: Vec<TimelineEntry>,
    elapsed: Duration,
) -> DemoReport {
    let guest_pe_to_host: BTreeMap<_, _> =
        devices.iter().filter_map(|&(h, g)| Some((guest.pe_of(g)?, seen.pe_of[&h]))).collect();

    let mut rows: BTreeMap<PeId, PeRow> = BTreeMap::new();
    for &(host_dev, guest_dev) in devices {
        let pe = seen.pe_of[&host_dev];
        let injected = seen.injected.get(&pe).copied().unwrap_or(0);
        let row = rows.entry(pe).or_insert_with(|| PeRow {
            pe,
            devices: Vec::new(),
            injected,
            freezes: 0,
            recoveries: 0,
            downtime: Duration::ZERO,
            host_state: seen.host_states.get(&pe).map_or(PeState::Unavailable, |h| h.state),
            passed: seen.host_states.get(&pe).is_some_and(|h| h.passed),
            failed: false,
            failure_expected: injected > config.max_freezes,
        });
        row.devices.push(Passthrough { host: host_dev, guest: guest_dev });
    }
    for event in guest.events() {
        let Some(pe) = event.pe.and_then(|g| guest_pe_to_host.get(&g)).copied() else { continue };
        let row = rows.get_mut(&pe).expect("every PE has a row");
        let text = match &event.what {
            GuestEventKind::FreezeDetected { state, freeze_count } => {
                row.freezes += 1;
                format!("guest detects the freeze (state {state}, freeze {freeze_count})")
            }
            GuestEventKind::Recovered { downtime } => {
                row.recoveries += 1;
                row.downtime += *downtime;
                format!("EEH: Recovery successful ({} ms down)", downtime.as_millis())
            }
            GuestEventKind::PermanentFailure { reason } => {
                row.failed = true;
                format!("EEH: permanent failure, devices removed ({reason})")
            }
            GuestEventKind::EehEnabled { dev } => format!("EEH enabled on {dev}"),
            GuestEventKind::ErrorLog { found: true } => "error log collected from the host".into(),
            _ => continue,
        };
        timeline.push(TimelineEntry { at: event.at, pe, side: "guest", event: text });
    }
    // Virtual time stands still while nothing sleeps, so a freeze, its
    // detection and the reset share a timestamp: put the freeze first, then
    // keep the order each side logged, the guest's first.
    timeline.sort_by_key(|e| (e.at, !e.event.starts_with(FROZEN), e.side == "host"));
    DemoReport { config, timeline, pes: rows.into_values().collect(), elapsed }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_report() {
        let config = DemoConfig { rounds: 120, errors: 5, ..DemoConfig::default() };
        assert_eq!(run(config).unwrap(), run(config).unwrap());
        let other = run(DemoConfig { seed: 2, ..config }).unwrap();
        assert_ne!(run(config).unwrap().timeline, other.timeline);
    }

    #[test]
    fn every_injection_is_detected_and_recovered() {
        let report = run(DemoConfig::default()).unwrap();
        assert!(report.unexpected().is_empty(), "{:#?}", report.pes);
        let injected: u32 = report.pes.iter().map(|r| r.injected).sum();
        let recovered: u32 = report.pes.iter().map(|r| r.recoveries).sum();
        assert_eq!(injected, 8);
        assert_eq!(recovered, injected);
        assert!(report.pes.iter().all(|r| r.host_state == PeState::Normal));
    }

    #[test]
    fn too_many_errors_on_one_pe_fail_it_as_expected() {
        let report = run(DemoConfig { errors: 40, max_freezes: 2, ..DemoConfig::default() }).unwrap();
        assert!(report.pes.iter().any(|r| r.failed), "{:#?}", report.pes);
        assert!(report.unexpected().is_empty(), "{:#?}", report.pes);
    }

    #[test]
    fn both_models_recover() {
        let report = run(DemoConfig { model: EehModel::Container, ..DemoConfig::default() }).unwrap();
        assert!(report.unexpected().is_empty());
    }
}
