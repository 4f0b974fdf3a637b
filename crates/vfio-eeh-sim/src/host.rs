//! [`SimHost`]: the simulated PowerNV host, its PEs under per-PE locks, and
//! its [`EehBackend`] implementation.
//!
//! Each PE is one mutex holding its state machine, its devices' state, the
//! armed injection, the latched error log and its event ring. Lookups go
//! through maps built once, so the hot path (an access or an op) takes one
//! uncontended-per-PE lock and allocates nothing. Timed steps (reset hold and
//! settle) run on the host's [`Clock`], never under a lock.
//!
//! Each PHB is a lock of its own, over its fence and recovery state
//! ([`crate::phb`]). It is only ever taken alone, before a PE's lock, to learn
//! where the PHB is; what a PHB recovery does to a PE is carried out the next
//! time the PE is locked.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use vfio_eeh::addr::{PciAddr, PeId};
use vfio_eeh::backend::{BackendError, EehBackend, PeOpReply, PeStatus};
use vfio_eeh::ops::{EehOp, ErrInjection, PeState, ResetKind};
use vfio_eeh::pe::{Applied, Effect, FreezeOutcome, FreezeScope, PeMachine};
use vfio_eeh::topology::{self, Topology};

use crate::clock::Clock;
use crate::config::{DeactivatePolicy, InjectionMode, SimConfig};
use crate::device::{BarMemory, DeviceState, SparsePages, CMD_MEM};
use crate::diag::PhbDiag;
use crate::event::{nanos, EventRing, FreezeCause, SimEvent, SimEventKind};
use crate::phb::{PhbCondition, PhbError, PhbState, PhbStatus, PhbView};
use crate::spec::{DeviceInfo, TopologyError, TopologySpec};

/// A simulated PowerNV host: PHBs, PEs (one IOMMU group each), devices.
///
/// `Send + Sync`; share it behind an [`Arc`] between the threads of many VMs.
#[derive(Debug)]
pub struct SimHost {
    pub(crate) clock: Arc<dyn Clock>,
    /// Boxed: the host is often held by value in an enum beside far smaller
    /// hosts.
    config: Box<SimConfig>,
    pub(crate) pes: Vec<PeSlot>,
    phbs: Vec<PhbSlot>,
    pe_index: HashMap<PeId, usize>,
    pub(crate) device_index: HashMap<PciAddr, (usize, usize)>,
    seq: AtomicU64,
}

/// A PE: what never changes, and its lock.
#[derive(Debug)]
pub(crate) struct PeSlot {
    pub(crate) id: PeId,
    domain: u32,
    phb: usize,
    addrs: Vec<PciAddr>,
    pub(crate) infos: Vec<DeviceInfo>,
    inner: Mutex<PeInner>,
}

#[derive(Debug)]
pub(crate) struct PeInner {
    pub(crate) machine: PeMachine,
    pub(crate) devices: Vec<DeviceState>,
    armed: Option<Armed>,
    diag: Option<PhbDiag>,
    events: EventRing,
    /// PHB recoveries already carried out on this PE.
    phb_recoveries_seen: u64,
    /// Whether the PHB's death has been carried out on this PE.
    phb_dead_seen: bool,
}

/// A PHB: its PEs (indices into [`SimHost::pes`]) and its lock.
#[derive(Debug)]
struct PhbSlot {
    domain: u32,
    pes: Vec<usize>,
    state: Mutex<PhbState>,
}

/// An armed injection and what fires it.
#[derive(Debug, Clone, Copy)]
struct Armed {
    injection: ErrInjection,
    mode: InjectionMode,
}

/// A locked PE with the time the lock was taken.
pub(crate) struct Locked<'a> {
    host: &'a SimHost,
    pub(crate) slot: &'a PeSlot,
    pub(crate) inner: MutexGuard<'a, PeInner>,
    pub(crate) now: Duration,
    /// Where the PE's PHB was when the lock was taken.
    phb: PhbCondition,
}

impl Locked<'_> {
    fn log(&mut self, kind: SimEventKind) {
        self.log_at(self.now, kind);
    }

    /// Logs an event that happened (or will happen) at `at`.
    fn log_at(&mut self, at: Duration, kind: SimEventKind) {
        let seq = self.host.seq.fetch_add(1, Ordering::Relaxed) + 1;
        self.inner.events.push(SimEvent { seq, at_ns: nanos(at), pe: self.slot.id, kind });
    }

    /// Carries out on this PE what its PHB went through since the last look:
    /// its death (the PE fails for good), or a completed recovery (every
    /// device went through the complete reset and had its BARs restored;
    /// a passed PE is frozen again, any other thawed).
    fn catch_up_with_phb(&mut self, view: PhbView) {
        if view.condition == PhbCondition::Dead && !self.inner.phb_dead_seen {
            self.inner.phb_dead_seen = true;
            self.inner.machine.fail();
        }
        if view.recoveries > self.inner.phb_recoveries_seen {
            self.inner.phb_recoveries_seen = view.recoveries;
            self.inner.machine.after_phb_reset();
            // The recovery waited the settle time after the reset: every
            // function answers again when it ends.
            for dev in &mut self.inner.devices {
                dev.power_on_reset();
                dev.ready_after(view.recovered_at, Duration::ZERO);
                dev.restore_saved();
            }
            let refrozen = self.inner.machine.passed();
            self.log_at(view.recovered_at, SimEventKind::PhbRecovered { domain: self.slot.domain, refrozen });
        }
    }

    /// The PE's status, as its PHB lets it be seen: frozen while the PHB is
    /// fenced, unavailable with the remaining time while the host recovers
    /// it.
    pub(crate) fn status(&self) -> PeStatus {
        match self.phb {
            PhbCondition::Fenced => PeStatus::of(PeState::Stopped),
            PhbCondition::Recovering { until } => {
                PeStatus { state: PeState::Unavailable, unavailable_for: Some(until.saturating_sub(self.now)) }
            }
            PhbCondition::Healthy | PhbCondition::Dead => self.inner.machine.status(self.now),
        }
    }

    /// What a fenced or recovering PHB makes of an op: `Some` answer in its
    /// place, or `None` to carry it out on the PE. A fenced PHB cannot be
    /// thawed by a PE (`phb4_eeh_freeze_clear` fails), so deactivate, thaw
    /// and enable fail; while the host recovers it, only get-state,
    /// configure, disable and injections go through.
    fn phb_answer(&self, op: &EehOp) -> Option<Result<Applied, BackendError>> {
        let domain = self.slot.domain;
        let why = match (self.phb, op) {
            (PhbCondition::Healthy | PhbCondition::Dead, _) => return None,
            (_, EehOp::GetState) => {
                let status = self.status();
                let reply = PeOpReply::State(status.state);
                return Some(Ok(Applied { reply, status, effect: Effect::None, settled: false }));
            }
            (_, EehOp::Configure | EehOp::Disable | EehOp::InjectErr(_)) => return None,
            (PhbCondition::Fenced, EehOp::Reset(_)) => return None,
            (PhbCondition::Fenced, _) => format!("PHB {domain:04x} is fenced; the PE cannot be thawed"),
            (PhbCondition::Recovering { .. }, _) => format!("the host is recovering PHB {domain:04x}"),
        };
        Some(Err(BackendError::Io(format!("PE {}: {why}", self.slot.id))))
    }

    /// Completes a due settle: saved config restored, PE usable.
    fn settle_due(&mut self) {
        if self.inner.machine.settle(self.now) {
            self.inner.devices.iter_mut().for_each(DeviceState::restore_saved);
            self.log(SimEventKind::Settled);
        }
    }

    /// Freezes the PE, latching the first error in the log.
    pub(crate) fn freeze(&mut self, scope: FreezeScope, cause: FreezeCause, device: Option<usize>, addr: u64) {
        let outcome = self.inner.machine.freeze(scope, self.now);
        let device = device.map(|i| self.slot.addrs[i]);
        match outcome {
            FreezeOutcome::Unchanged => return,
            FreezeOutcome::Frozen { count } => {
                self.log(SimEventKind::Frozen { cause, scope, device, addr, count, passed: false });
            }
            FreezeOutcome::FrozenPassed { count } => {
                self.log(SimEventKind::Frozen { cause, scope, device, addr, count, passed: true });
            }
            FreezeOutcome::Failed { count } => self.log(SimEventKind::PermanentFailure { cause, count }),
        }
        if self.inner.diag.is_none() {
            self.inner.diag = Some(PhbDiag { pe: self.slot.id, cause, device, addr, at_ns: nanos(self.now) });
        }
    }

    /// Whether an access of `kind` at `addr` by function `dev` gets through:
    /// not if the PE stops it, nor if it fires the armed injection (which
    /// freezes the PE).
    pub(crate) fn gate(&mut self, dev: usize, kind: vfio_eeh::ops::AccessKind, addr: u64) -> bool {
        use vfio_eeh::ops::AccessKind::{DmaRead, DmaWrite};
        if !self.phb.healthy() {
            return false;
        }
        let machine = &self.inner.machine;
        let allowed = if matches!(kind, DmaRead | DmaWrite) { machine.dma_allowed() } else { machine.mmio_allowed() };
        if !allowed {
            return false;
        }
        match self.inner.armed {
            Some(Armed { injection, mode: InjectionMode::OnAccess })
                if injection.func.access() == kind && injection.matches_addr(addr) =>
            {
                self.fire(injection, Some(dev), addr);
                false
            }
            _ => true,
        }
    }

    /// Fires an [immediate](InjectionMode::Immediate) injection that was
    /// armed while the PE was not usable, once it is.
    fn fire_when_usable(&mut self) {
        if let Some(Armed { injection, mode: InjectionMode::Immediate }) = self.inner.armed {
            if self.phb.healthy() && self.inner.machine.mmio_allowed() {
                self.fire(injection, None, injection.addr);
            }
        }
    }

    /// Arms an injection. Like the PHB's one set of PAPR error-injection
    /// registers, which skiboot's `phb4_err_inject` clears ("Clear leftover
    /// from last time") and reprograms on every call without looking at the
    /// PE's state, a new injection replaces one still armed.
    fn arm(&mut self, injection: ErrInjection) {
        self.log(SimEventKind::InjectionArmed { injection });
        let mode = self.host.config.injection;
        if let Some(previous) = self.inner.armed.replace(Armed { injection, mode }) {
            self.log(SimEventKind::InjectionReplaced { previous: previous.injection, by: injection });
        }
        self.fire_when_usable();
    }

    fn fire(&mut self, injection: ErrInjection, dev: Option<usize>, addr: u64) {
        self.inner.armed = None;
        let device = dev.map(|i| self.slot.addrs[i]);
        self.log(SimEventKind::InjectionFired { injection, device, addr });
        self.freeze(FreezeScope::All, FreezeCause::Injected(injection.func), dev, addr);
    }

    /// Applies an op and carries out its effect on the devices.
    fn apply(&mut self, op: &EehOp) -> Result<Applied, BackendError> {
        if let Some(answer) = self.phb_answer(op) {
            return answer;
        }
        if *op == EehOp::Reset(ResetKind::Fundamental) && !self.host.config.fundamental_reset {
            return Err(BackendError::NotSupported(format!("PE {}: no fundamental reset", self.slot.id)));
        }
        let applied = self.inner.machine.apply(op, self.now).map_err(|e| e.into_backend(self.slot.id))?;
        match applied.effect {
            Effect::None => {}
            Effect::Enabled { thawed } => self.log(SimEventKind::Enabled { thawed }),
            Effect::Thawed => self.log(SimEventKind::Thawed { state: applied.status.state }),
            Effect::ResetAsserted(kind) => {
                self.inner.devices.iter_mut().for_each(DeviceState::power_on_reset);
                self.log(SimEventKind::ResetAsserted { kind });
            }
            Effect::ResetDeasserted { usable_at } => {
                let now = self.now;
                let PeInner { devices, .. } = &mut *self.inner;
                for (dev, info) in devices.iter_mut().zip(&self.slot.infos) {
                    dev.ready_after(now, info.ready_delay);
                }
                self.log(SimEventKind::ResetDeasserted { usable_at_ns: nanos(usable_at) });
            }
            Effect::Reenabled => {
                self.inner.devices.iter_mut().for_each(DeviceState::restore_saved);
                self.log(SimEventKind::Reenabled);
            }
            Effect::Configured => self.log(SimEventKind::Configured),
            Effect::ArmInjection(injection) => self.arm(injection),
        }
        self.fire_when_usable();
        Ok(applied)
    }
}

impl SimHost {
    /// A host with the given topology, policy and clock.
    pub fn new(spec: &TopologySpec, config: SimConfig, clock: Arc<dyn Clock>) -> Self {
        SimHost::with_bar_memory(spec, config, clock, |_| Box::<SparsePages>::default())
    }

    /// A host as [`SimHost::new`] makes it, each function's BAR memory made
    /// by `memory` (shared memory, for one), once per function at the start.
    pub fn with_bar_memory(
        spec: &TopologySpec,
        config: SimConfig,
        clock: Arc<dyn Clock>,
        mut memory: impl FnMut(&DeviceInfo) -> Box<dyn BarMemory>,
    ) -> Self {
        let mut pes = Vec::new();
        let mut phbs = Vec::new();
        let mut pe_index = HashMap::new();
        let mut device_index = HashMap::new();
        for phb in spec.phbs() {
            let phb_index = phbs.len();
            phbs.push(PhbSlot {
                domain: phb.domain,
                pes: (pes.len()..pes.len() + phb.pes.len()).collect(),
                state: Mutex::new(PhbState::default()),
            });
            for pe in &phb.pes {
                let n = pes.len();
                pe_index.insert(pe.pe, n);
                for (i, dev) in pe.devices.iter().enumerate() {
                    device_index.insert(dev.addr, (n, i));
                }
                let inner = PeInner {
                    machine: PeMachine::new(config.freeze_policy, config.reset),
                    devices: pe.devices.iter().map(|d| DeviceState::new(d, memory(d))).collect(),
                    armed: None,
                    diag: None,
                    events: EventRing::new(config.events_per_pe),
                    phb_recoveries_seen: 0,
                    phb_dead_seen: false,
                };
                pes.push(PeSlot {
                    id: pe.pe,
                    domain: phb.domain,
                    phb: phb_index,
                    addrs: pe.devices.iter().map(|d| d.addr).collect(),
                    infos: pe.devices.clone(),
                    inner: Mutex::new(inner),
                });
            }
        }
        SimHost { clock, config: Box::new(config), pes, phbs, pe_index, device_index, seq: AtomicU64::new(0) }
    }

    /// The built-in host (two PHBs, five PEs) with the Linux-like policy.
    pub fn builtin(clock: Arc<dyn Clock>) -> Self {
        SimHost::new(&TopologySpec::builtin(), SimConfig::default(), clock)
    }

    /// A host from topology text; `file_name` names it in errors.
    pub fn from_toml_str(text: &str, file_name: &str, clock: Arc<dyn Clock>) -> Result<Self, TopologyError> {
        Ok(SimHost::new(&TopologySpec::from_toml_str(text, file_name)?, SimConfig::default(), clock))
    }

    /// A host from a topology file.
    pub fn from_toml_file(path: impl AsRef<Path>, clock: Arc<dyn Clock>) -> Result<Self, TopologyError> {
        Ok(SimHost::new(&TopologySpec::from_toml_file(path)?, SimConfig::default(), clock))
    }

    /// The policy.
    pub fn config(&self) -> &SimConfig {
        &self.config
    }

    /// The clock.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// Every PE, in topology order.
    pub fn pe_ids(&self) -> impl Iterator<Item = PeId> + '_ {
        self.pes.iter().map(|s| s.id)
    }

    /// The host as the tools show it; every device is bound to vfio-pci.
    pub fn topology(&self) -> Topology {
        let mut phbs: Vec<topology::Phb> = Vec::new();
        for slot in &self.pes {
            let devices = slot
                .infos
                .iter()
                .map(|d| topology::Device {
                    addr: d.addr,
                    vendor: d.vendor,
                    device: d.device,
                    class: d.class,
                    driver: Some(topology::VFIO_DRIVER.to_owned()),
                })
                .collect();
            let group = topology::Group { pe: slot.id, devices };
            match phbs.iter_mut().find(|p| p.domain == slot.domain) {
                Some(phb) => phb.groups.push(group),
                None => phbs.push(topology::Phb { domain: slot.domain, groups: vec![group] }),
            }
        }
        phbs.sort_by_key(|p| p.domain);
        phbs.iter_mut().for_each(|p| p.groups.sort_by_key(|g| g.pe));
        Topology { phbs, ..Topology::default() }
    }

    fn slot(&self, pe: PeId) -> Result<&PeSlot, BackendError> {
        self.pe_index.get(&pe).map(|&i| &self.pes[i]).ok_or(BackendError::NoPe(pe))
    }

    /// Locks a PE, reads the clock, catches up with its PHB, completes a due
    /// settle and fires an injection waiting for the PE to be usable.
    pub(crate) fn lock<'a>(&'a self, slot: &'a PeSlot) -> Locked<'a> {
        let mut locked = self.lock_caught_up(slot);
        locked.settle_due();
        locked.fire_when_usable();
        locked
    }

    /// Locks a PE, reads the clock and catches up with its PHB. The clock is
    /// read under the PE's lock, so the PE's events are logged in time order
    /// whichever thread logs them (lock order: a PE, then its PHB).
    fn lock_caught_up<'a>(&'a self, slot: &'a PeSlot) -> Locked<'a> {
        let inner = slot.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let now = self.clock.now();
        let view = self.phbs[slot.phb].state.lock().unwrap_or_else(PoisonError::into_inner).view(now);
        let mut locked = Locked { host: self, slot, inner, now, phb: view.condition };
        locked.catch_up_with_phb(view);
        locked
    }

    fn phb_slot(&self, domain: u32) -> Result<&PhbSlot, BackendError> {
        self.phbs
            .iter()
            .find(|p| p.domain == domain)
            .ok_or_else(|| BackendError::InvalidArgument(format!("No PHB {domain:04x} on this host")))
    }

    /// Every PHB (PCI domain), in topology order.
    pub fn phb_domains(&self) -> impl Iterator<Item = u32> + '_ {
        self.phbs.iter().map(|p| p.domain)
    }

    /// The PHB (PCI domain) a PE is under.
    pub fn phb_of(&self, pe: PeId) -> Result<u32, BackendError> {
        self.slot(pe).map(|s| s.domain)
    }

    /// A PHB's condition and fence count.
    pub fn phb_status(&self, domain: u32) -> Result<PhbStatus, BackendError> {
        let phb = self.phb_slot(domain)?;
        let mut state = phb.state.lock().unwrap_or_else(PoisonError::into_inner);
        let view = state.view(self.clock.now());
        Ok(PhbStatus { domain, condition: view.condition, fences: state.fences(), recoveries: view.recoveries })
    }

    /// Injects a PHB-wide error (see [`crate::phb`]): every PE under the PHB
    /// is affected. There is no OPAL or VFIO call for this on a real host
    /// (`OPAL_PCI_FENCE_PHB` was never implemented); it stands for a
    /// hardware fault. Fails if the PHB is dead, or fenced and not yet
    /// recovered.
    pub fn inject_phb(&self, domain: u32, error: PhbError) -> Result<(), BackendError> {
        let phb = self.phb_slot(domain)?;
        let now = self.clock.now();
        let all_passed = phb.pes.iter().all(|&i| self.lock_caught_up(&self.pes[i]).inner.machine.passed());
        let mut state = phb.state.lock().unwrap_or_else(PoisonError::into_inner);
        let condition = state.view(now).condition;
        let refused = || BackendError::Io(format!("PHB {domain:04x} is {condition:?}"));
        let events: Vec<(Duration, SimEventKind)> = match error {
            PhbError::Fence => {
                let (fence, count) = state
                    .fence(now, &self.config.phb_timing, self.config.phb_freeze_policy, all_passed)
                    .ok_or_else(refused)?;
                let next = if fence.fatal {
                    (fence.noticed_at, SimEventKind::PhbDead { domain })
                } else {
                    (fence.noticed_at, SimEventKind::PhbRecovering { domain, until_ns: nanos(fence.ends_at) })
                };
                vec![(now, SimEventKind::PhbFenced { domain, count }), next]
            }
            PhbError::Dead => {
                if !state.kill(now) {
                    return Err(refused());
                }
                vec![(now, SimEventKind::PhbDead { domain })]
            }
        };
        drop(state);
        for &i in &phb.pes {
            let mut locked = self.lock_caught_up(&self.pes[i]);
            // Never before what the PE logged meanwhile.
            let floor = locked.now;
            for &(at, kind) in &events {
                locked.log_at(at.max(floor), kind);
            }
        }
        Ok(())
    }

    /// Freezes a PE at once (cause "manual"), as a hardware error would.
    pub fn freeze(&self, pe: PeId, scope: FreezeScope) -> Result<(), BackendError> {
        let mut locked = self.lock(self.slot(pe)?);
        locked.freeze(scope, FreezeCause::Manual, None, 0);
        Ok(())
    }

    /// Linux `eeh_dev_open`, which `vfio_pci_core_finish_enable` calls when a
    /// VFIO user opens the device fd: a frozen PE is thawed
    /// (`eeh_pe_change_owner`) and the device counted as passed, so the host
    /// stops counting the PE's freezes. If the PE cannot be thawed the open
    /// still succeeds but the PE is not passed. Returns whether the PE is
    /// passed after the call.
    pub fn dev_open(&self, dev: PciAddr) -> Result<bool, BackendError> {
        let mut locked = self.lock_dev(dev)?;
        let was_passed = locked.inner.machine.passed();
        let thaw_possible = locked.phb.healthy();
        let passed = locked.inner.machine.open_by_user(thaw_possible);
        if passed && !was_passed {
            locked.log(SimEventKind::Passed { device: dev });
        }
        Ok(passed)
    }

    /// Linux `eeh_dev_release`, which `vfio_pci_core_close_device` calls when
    /// the VFIO user closes the device: one passed device fewer, and the PE
    /// thawed again (even if other devices of it stay open). Once no device is
    /// open the host counts the PE's freezes again.
    pub fn dev_release(&self, dev: PciAddr) -> Result<(), BackendError> {
        let mut locked = self.lock_dev(dev)?;
        if !locked.inner.machine.passed() {
            return Ok(());
        }
        let thaw_possible = locked.phb.healthy();
        locked.inner.machine.release_by_user(thaw_possible);
        if !locked.inner.machine.passed() {
            locked.log(SimEventKind::Released { device: dev });
        }
        Ok(())
    }

    /// Whether a BAR access to any of the PE's functions would now be a
    /// plain memory access, with no effect beyond the bytes: the PE and its
    /// PHB are usable, no injection is armed, and every function is ready
    /// and decodes memory. A client that shares the BAR memory may then
    /// access it directly (see eehd's docs/shared-host.md).
    pub fn plain_memory_access(&self, pe: PeId) -> Result<bool, BackendError> {
        let locked = self.lock(self.slot(pe)?);
        let now = locked.now;
        Ok(locked.status().state == PeState::Normal
            && locked.inner.armed.is_none()
            && locked.inner.devices.iter().all(|d| d.ready(now) && d.command() & CMD_MEM != 0))
    }

    /// Whether a VFIO user holds the PE (`eeh_pe_passed`).
    pub fn passed(&self, pe: PeId) -> Result<bool, BackendError> {
        Ok(self.lock(self.slot(pe)?).inner.machine.passed())
    }

    fn lock_dev(&self, dev: PciAddr) -> Result<Locked<'_>, BackendError> {
        let &(pe, _) = self.device_index.get(&dev).ok_or(BackendError::NoDevice(dev))?;
        Ok(self.lock(&self.pes[pe]))
    }

    /// Every logged event, in order.
    pub fn events(&self) -> Vec<SimEvent> {
        self.events_after(0)
    }

    /// The logged events with a sequence number above `seq`, in order.
    pub fn events_after(&self, seq: u64) -> Vec<SimEvent> {
        let mut all: Vec<SimEvent> = Vec::new();
        for slot in &self.pes {
            let locked = self.lock_caught_up(slot);
            all.extend(locked.inner.events.after(seq));
        }
        all.sort_by_key(|e| e.seq);
        all
    }
}

impl EehBackend for SimHost {
    fn pe_of(&self, device: PciAddr) -> Result<PeId, BackendError> {
        self.device_index.get(&device).map(|&(pe, _)| self.pes[pe].id).ok_or(BackendError::NoDevice(device))
    }

    fn devices_of(&self, pe: PeId) -> Result<Vec<PciAddr>, BackendError> {
        Ok(self.slot(pe)?.addrs.clone())
    }

    /// Carries out an op. With [`DeactivatePolicy::Blocking`] a hot or
    /// fundamental reset sleeps the hold time and a deactivate sleeps until
    /// the PE is usable, on the host's clock and outside the PE's lock.
    fn pe_op(&self, pe: PeId, op: EehOp) -> Result<PeOpReply, BackendError> {
        let slot = self.slot(pe)?;
        let applied = self.lock(slot).apply(&op)?;
        if self.config.deactivate == DeactivatePolicy::Blocking {
            match applied.effect {
                Effect::ResetAsserted(_) => self.clock.sleep(self.config.reset.hold),
                Effect::ResetDeasserted { usable_at } => {
                    self.clock.sleep(usable_at.saturating_sub(self.clock.now()));
                    drop(self.lock(slot)); // Completes the settle.
                }
                _ => {}
            }
        }
        Ok(applied.reply)
    }

    fn status(&self, pe: PeId) -> Result<PeStatus, BackendError> {
        Ok(self.lock(self.slot(pe)?).status())
    }

    fn error_log(&self, pe: PeId) -> Result<Option<Vec<u8>>, BackendError> {
        let mut locked = self.lock(self.slot(pe)?);
        let diag = locked.inner.diag.take();
        if diag.is_some() {
            locked.log(SimEventKind::ErrorLogRead);
        }
        Ok(diag.map(|d| d.to_bytes()))
    }
}

#[cfg(test)]
const _: fn() = || {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<SimHost>();
};
