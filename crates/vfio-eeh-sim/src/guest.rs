//! The Linux pseries guest's EEH code, modelled: what a guest kernel (5.10
//! and later) does to probe, detect, recover and give up, driven entirely
//! through RTAS buffers and the guest's own config and MMIO accesses.
//!
//! The sequence follows `eeh_pseries.c` and `eeh_driver.c`:
//!
//! * **probe**: `get-config-addr-info2` function 1 (is the function in a PE?),
//!   function 0 (the PE address), then `set-eeh-option(enable)`;
//! * **detect**: an all-ones config read makes the guest ask
//!   `read-slot-reset-state2`; a stopped PE starts recovery;
//! * **recover**: count the freeze (more than `max_freezes` in an hour is
//!   permanent failure), `error_detected`, wait while the PE is unavailable,
//!   collect the log (thaw MMIO, `configure-pe`, `slot-error-detail(1)`),
//!   then, for a driver that needs a reset, `set-slot-reset` hot and
//!   deactivate with the hold and settle sleeps, wait until active,
//!   `configure-pe`, restore the BARs, `slot_reset`, `resume`;
//! * **give up**: `slot-error-detail(2)`, `error_detected(perm_failure)`, the
//!   devices are removed;
//! * **no EEH-aware driver** ([`DriverResponse::NoDriver`], the case of every
//!   real e2e guest, whose test device has no driver): "Reset with hotplug
//!   activity", `eeh_reset_device(pe, bus, NULL, false)`: the devices are
//!   removed, the PE reset by `eeh_pe_reset_full`, thawed, the guest sleeps
//!   5 s and the devices are probed again. This path follows Linux 6.1's
//!   calls one for one (`eeh_pci_enable`'s state check before and wait
//!   after a thaw, `eeh_unfreeze_pe` after a deactivate), which the two
//!   driver paths abbreviate.
//!
//! One simplification remains: a pseries guest reads state 5 with info 0 at
//! detection as `EEH_STATE_NOT_SUPPORT` and so as a false positive
//! (`eeh_dev_check_failure`); the model treats it as an event and gives the
//! PE up at once, which is where Linux ends after its 300 s wait when the
//! firmware answers QEMU's 1000 ms hint for a PE that never comes back.
//!
//! The guest's sleeps run on the [`Clock`] the platform gives, so on the
//! virtual clock a whole recovery takes microseconds and its downtime is
//! exact.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;
use vfio_eeh::addr::{Buid, ConfigAddr, GuestAddr};
use vfio_eeh::ops::PeState;
use vfio_eeh::rtas::{status, RtasArgs, RtasCall, TokenTable};

use crate::clock::Clock;

/// What the guest kernel reaches: the hypervisor's RTAS entry, its PCI
/// config and MMIO accesses, and time.
pub trait GuestPlatform {
    /// The `/rtas` tokens the firmware advertises.
    fn tokens(&self) -> &TokenTable;
    /// The RTAS hypercall on a buffer in guest memory; `false` if the
    /// hypervisor refused the buffer outright.
    fn rtas(&mut self, buf: &mut [u8]) -> bool;
    /// A 32-bit config read (`ibm,read-pci-config`).
    fn config_read32(&mut self, dev: GuestAddr, offset: u16) -> u32;
    /// A 32-bit config write (`ibm,write-pci-config`).
    fn config_write32(&mut self, dev: GuestAddr, offset: u16, value: u32);
    /// A 32-bit MMIO read at `offset` into BAR `bar`.
    fn mmio_read32(&mut self, dev: GuestAddr, bar: u8, offset: u64) -> u32;
    /// A 32-bit MMIO write at `offset` into BAR `bar`.
    fn mmio_write32(&mut self, dev: GuestAddr, bar: u8, offset: u64, value: u32);
    /// The guest's clock.
    fn clock(&self) -> &dyn Clock;
}

/// The guest kernel's EEH timings (Linux's values by default).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct GuestTiming {
    /// Sleep after asserting a reset (`EEH_PE_RST_HOLD_TIME`, 250 ms).
    pub reset_hold: Duration,
    /// Sleep after deasserting it (`EEH_PE_RST_SETTLE_TIME`, 1800 ms).
    pub reset_settle: Duration,
    /// Lowest wait for an "unavailable" hint (`EEH_STATE_MIN_WAIT_TIME`, 1 s).
    pub min_wait: Duration,
    /// Longest wait for a PE to become available (300 s).
    pub max_wait: Duration,
}

impl GuestTiming {
    /// A guest that trusts the firmware's "unavailable" hint: after
    /// deasserting a reset it sleeps nothing fixed and instead polls
    /// `read-slot-reset-state2`, sleeping the hint each time (clamped to
    /// [1 ms, 300 s] rather than Linux's [1 s, 300 s]). The reset hold stays
    /// Linux's 250 ms. Not what Linux does: a guest kernel change, used to
    /// measure what the firmware's exact hint is worth (see
    /// `docs/performance.md`).
    pub const TRUST_FIRMWARE_HINTS: GuestTiming = GuestTiming {
        reset_hold: Duration::from_millis(250),
        reset_settle: Duration::ZERO,
        min_wait: Duration::from_millis(1),
        max_wait: Duration::from_secs(300),
    };
}

impl Default for GuestTiming {
    fn default() -> Self {
        GuestTiming {
            reset_hold: Duration::from_millis(250),
            reset_settle: Duration::from_millis(1800),
            min_wait: Duration::from_secs(1),
            max_wait: Duration::from_secs(300),
        }
    }
}

/// The guest's settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct GuestConfig {
    /// Freezes allowed in an hour before a PE is given up
    /// (`eeh_max_freezes`, 5).
    pub max_freezes: u32,
    /// The freeze-count window (one hour).
    pub freeze_window: Duration,
    /// Sleeps and waits.
    pub timing: GuestTiming,
    /// What the device's driver answers to `error_detected`.
    pub driver: DriverResponse,
}

impl Default for GuestConfig {
    fn default() -> Self {
        GuestConfig {
            max_freezes: 5,
            freeze_window: Duration::from_secs(3600),
            timing: GuestTiming::default(),
            driver: DriverResponse::NeedReset,
        }
    }
}

/// A driver's answer to `error_detected` (`pci_ers_result`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DriverResponse {
    /// `PCI_ERS_RESULT_NEED_RESET`: recover with a slot reset.
    NeedReset,
    /// `PCI_ERS_RESULT_CAN_RECOVER`: thaw MMIO, `mmio_enabled`, thaw DMA,
    /// no reset — unless the PE does not come back, then a reset after all.
    CanRecover,
    /// No driver, or one without EEH callbacks: `eeh_handle_normal_event`
    /// keeps `PCI_ERS_RESULT_NONE` and takes "Reset with hotplug activity".
    NoDriver,
}

/// Something the guest did or saw, with its time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GuestEvent {
    /// Guest clock time.
    pub at: Duration,
    /// The PE, by its PE config address and PHB.
    pub pe: Option<GuestPeId>,
    /// What happened.
    pub what: GuestEventKind,
}

/// A guest PE: its PHB and PE config address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct GuestPeId {
    /// The virtual PHB.
    pub buid: Buid,
    /// The PE config address.
    pub addr: ConfigAddr,
}

/// The kinds of [`GuestEvent`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum GuestEventKind {
    /// An RTAS call and its status.
    Rtas {
        /// The call's name.
        call: &'static str,
        /// Its status.
        status: i32,
    },
    /// EEH enabled on a function ("EEH: Capable adapter found").
    EehEnabled {
        /// The function.
        dev: GuestAddr,
    },
    /// A function is not in a PE; EEH stays off for it.
    NotCapable {
        /// The function.
        dev: GuestAddr,
    },
    /// A freeze was detected.
    FreezeDetected {
        /// The state read.
        state: PeState,
        /// Freezes in the current window, this one included.
        freeze_count: u32,
    },
    /// The error log was asked for.
    ErrorLog {
        /// Whether the firmware returned one.
        found: bool,
    },
    /// A driver callback ran.
    Driver {
        /// `error_detected`, `mmio_enabled`, `slot_reset`, `resume`.
        callback: &'static str,
    },
    /// "EEH: Recovery successful."
    Recovered {
        /// From detection to resume.
        downtime: Duration,
    },
    /// "Reset with hotplug activity": the PE's devices were removed
    /// (`pci_hp_remove_devices`) or added back and probed again
    /// (`pci_hp_add_devices`).
    Hotplug {
        /// Removed (else added back).
        removed: bool,
    },
    /// The PE was given up and its devices removed.
    PermanentFailure {
        /// Why.
        reason: String,
    },
}

/// How a recovery ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Nothing was wrong.
    Healthy,
    /// Recovered after this much downtime.
    Recovered(Duration),
    /// Given up: devices removed.
    Failed,
}

/// One PE as the guest tracks it.
#[derive(Debug, Clone)]
struct PeRecord {
    functions: Vec<GuestAddr>,
    saved_bars: BTreeMap<GuestAddr, [u32; 6]>,
    freeze_count: u32,
    window_start: Option<Duration>,
    removed: bool,
}

/// The `set-eeh-option` thaws (`EEH_OPT_THAW_MMIO`, `EEH_OPT_THAW_DMA`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum EehOption {
    ThawMmio,
    ThawDma,
}

impl EehOption {
    /// The function code.
    const fn function(self) -> u32 {
        match self {
            EehOption::ThawMmio => 2,
            EehOption::ThawDma => 3,
        }
    }

    /// Whether the path it thaws is active in `state` (Linux's
    /// `EEH_STATE_MMIO_ACTIVE` / `EEH_STATE_DMA_ACTIVE` for PAPR states 0,
    /// 1 and, for MMIO, 4).
    const fn active_in(self, state: PeState) -> bool {
        match self {
            EehOption::ThawMmio => matches!(state, PeState::Normal | PeState::Reset | PeState::StoppedDma),
            EehOption::ThawDma => matches!(state, PeState::Normal | PeState::Reset),
        }
    }
}

/// Config offset of BAR 0.
const BAR0: u16 = 0x10;

/// The guest kernel's EEH subsystem.
#[derive(Debug, Clone)]
pub struct GuestEeh {
    config: GuestConfig,
    pes: BTreeMap<GuestPeId, PeRecord>,
    pe_of: BTreeMap<GuestAddr, GuestPeId>,
    events: Vec<GuestEvent>,
}

/// The BUID cells that follow a config address in every EEH call.
fn pe_args(pe: GuestPeId) -> [u32; 3] {
    [pe.addr.raw(), pe.buid.hi(), pe.buid.lo()]
}

impl GuestEeh {
    /// A guest with no devices probed yet.
    pub fn new(config: GuestConfig) -> Self {
        GuestEeh { config, pes: BTreeMap::new(), pe_of: BTreeMap::new(), events: Vec::new() }
    }

    /// Everything the guest did, in order.
    pub fn events(&self) -> &[GuestEvent] {
        &self.events
    }

    /// Forgets the events recorded so far (a long-running loop, such as a
    /// benchmark, keeps memory flat with it).
    pub fn clear_events(&mut self) {
        self.events.clear();
    }

    /// The PE of a probed, EEH-enabled function.
    pub fn pe_of(&self, dev: GuestAddr) -> Option<GuestPeId> {
        self.pe_of.get(&dev).copied()
    }

    /// Whether the PE's devices were removed after a permanent failure.
    pub fn is_removed(&self, pe: GuestPeId) -> bool {
        self.pes.get(&pe).is_some_and(|r| r.removed)
    }

    /// Freezes counted in the PE's current window.
    pub fn freeze_count(&self, pe: GuestPeId) -> u32 {
        self.pes.get(&pe).map_or(0, |r| r.freeze_count)
    }

    fn note(&mut self, p: &dyn GuestPlatform, pe: Option<GuestPeId>, what: GuestEventKind) {
        self.events.push(GuestEvent { at: p.clock().now(), pe, what });
    }

    /// Makes one RTAS call; returns its status and output cells.
    fn call(
        &mut self,
        p: &mut dyn GuestPlatform,
        call: RtasCall,
        args: &[u32],
        pe: Option<GuestPeId>,
    ) -> (i32, Vec<u32>) {
        let nret = if call == RtasCall::ReadSlotResetState2 { 4 } else { call_nret(call) };
        let Some(token) = p.tokens().token(call) else {
            self.note(p, pe, GuestEventKind::Rtas { call: call.name(), status: status::PARAMETER_ERROR });
            return (status::PARAMETER_ERROR, Vec::new());
        };
        let request = RtasArgs::new(token, args, nret);
        let mut buf = request.encode();
        let rets =
            if p.rtas(&mut buf) { request.read_rets(&buf) } else { vec![status::HARDWARE_ERROR.cast_unsigned()] };
        let status = rets.first().map_or(status::HARDWARE_ERROR, |s| s.cast_signed());
        self.note(p, pe, GuestEventKind::Rtas { call: call.name(), status });
        (status, rets.get(1..).map(<[u32]>::to_vec).unwrap_or_default())
    }

    /// Probes functions as `pseries_eeh_init_edev` does and enables EEH on
    /// their PEs. Returns the functions found EEH-capable.
    pub fn probe(&mut self, p: &mut dyn GuestPlatform, functions: &[GuestAddr]) -> Vec<GuestAddr> {
        let mut capable = Vec::new();
        for &dev in functions {
            let cells = [dev.config_addr().raw(), dev.buid().hi(), dev.buid().lo()];
            let (st, out) = self.call(p, RtasCall::GetConfigAddrInfo2, &[cells[0], cells[1], cells[2], 1], None);
            if st != status::SUCCESS || out.first().copied().unwrap_or(0) == 0 {
                self.note(p, None, GuestEventKind::NotCapable { dev });
                continue;
            }
            let (st, out) = self.call(p, RtasCall::GetConfigAddrInfo2, &[cells[0], cells[1], cells[2], 0], None);
            let Some(addr) = out.first().filter(|_| st == status::SUCCESS).and_then(|&a| ConfigAddr::from_raw(a).ok())
            else {
                self.note(p, None, GuestEventKind::NotCapable { dev });
                continue;
            };
            let pe = GuestPeId { buid: dev.buid(), addr };
            let [a0, a1, a2] = pe_args(pe);
            let (st, _) = self.call(p, RtasCall::SetEehOption, &[a0, a1, a2, 1], Some(pe));
            if st != status::SUCCESS {
                self.note(p, Some(pe), GuestEventKind::NotCapable { dev });
                continue;
            }
            let bars = Self::read_bars(p, dev);
            let record = self.pes.entry(pe).or_insert_with(|| PeRecord {
                functions: Vec::new(),
                saved_bars: BTreeMap::new(),
                freeze_count: 0,
                window_start: None,
                removed: false,
            });
            if !record.functions.contains(&dev) {
                record.functions.push(dev);
            }
            record.saved_bars.insert(dev, bars);
            self.pe_of.insert(dev, pe);
            self.note(p, Some(pe), GuestEventKind::EehEnabled { dev });
            capable.push(dev);
        }
        capable
    }

    fn read_bars(p: &mut dyn GuestPlatform, dev: GuestAddr) -> [u32; 6] {
        let mut bars = [0; 6];
        for (i, bar) in (0u16..).zip(bars.iter_mut()) {
            *bar = p.config_read32(dev, BAR0 + 4 * i);
        }
        bars
    }

    /// A driver's config read of its device's vendor/device word, with the
    /// EEH check a pseries kernel makes on an all-ones result
    /// (`eeh_dev_check_failure`), recovering if the PE is frozen.
    pub fn check_config(&mut self, p: &mut dyn GuestPlatform, dev: GuestAddr) -> Outcome {
        let value = p.config_read32(dev, 0);
        self.check_value(p, dev, value)
    }

    /// A driver's MMIO read through `eeh_readl`, with the same check.
    pub fn check_mmio(&mut self, p: &mut dyn GuestPlatform, dev: GuestAddr, bar: u8, offset: u64) -> Outcome {
        let value = p.mmio_read32(dev, bar, offset);
        self.check_value(p, dev, value)
    }

    /// `eeh_dev_check_failure` for a value just read from `dev`.
    fn check_value(&mut self, p: &mut dyn GuestPlatform, dev: GuestAddr, value: u32) -> Outcome {
        let Some(pe) = self.pe_of(dev) else { return Outcome::Healthy };
        if value != u32::MAX || self.is_removed(pe) {
            return Outcome::Healthy;
        }
        // A failed query or an active PE is a false positive.
        match self.read_state(p, pe) {
            None | Some((PeState::Normal, _)) => Outcome::Healthy,
            Some((state, _)) => self.recover(p, pe, state),
        }
    }

    /// `eeh_handle_normal_event`: recovers a frozen PE or gives it up.
    fn recover(&mut self, p: &mut dyn GuestPlatform, pe: GuestPeId, state: PeState) -> Outcome {
        let detected_at = p.clock().now();
        let freeze_count = self.count_freeze(pe, detected_at);
        self.note(p, Some(pe), GuestEventKind::FreezeDetected { state, freeze_count });
        if freeze_count > self.config.max_freezes {
            let reason = format!("failed {freeze_count} times in the last hour");
            return self.give_up(p, pe, reason);
        }
        let no_driver = self.config.driver == DriverResponse::NoDriver;
        if !no_driver {
            self.note(p, Some(pe), GuestEventKind::Driver { callback: "error_detected" });
        }
        if !self.wait_available(p, pe) {
            return self.give_up(p, pe, "the PE stayed unavailable".into());
        }
        if no_driver {
            if let Err(reason) = self.reset_with_hotplug(p, pe) {
                return self.give_up(p, pe, reason);
            }
            return self.recovered(p, pe, detected_at);
        }
        self.collect_log(p, pe, 1);
        let recovered_without_reset = self.config.driver == DriverResponse::CanRecover && self.thaw(p, pe);
        if !recovered_without_reset {
            if let Err(reason) = self.reset(p, pe) {
                return self.give_up(p, pe, reason);
            }
            self.note(p, Some(pe), GuestEventKind::Driver { callback: "slot_reset" });
        }
        self.note(p, Some(pe), GuestEventKind::Driver { callback: "resume" });
        self.recovered(p, pe, detected_at)
    }

    /// "EEH: Recovery successful."
    fn recovered(&mut self, p: &mut dyn GuestPlatform, pe: GuestPeId, detected_at: Duration) -> Outcome {
        let downtime = p.clock().now().saturating_sub(detected_at);
        self.note(p, Some(pe), GuestEventKind::Recovered { downtime });
        Outcome::Recovered(downtime)
    }

    /// The no-driver path of `eeh_handle_normal_event`, as Linux 6.1 runs
    /// it: `eeh_slot_error_detail(pe, EEH_LOG_TEMP)` (thaw MMIO for the log
    /// with `eeh_pci_enable`, `configure-pe`, `slot-error-detail`), then
    /// `eeh_reset_device(pe, bus, NULL, false)`: `pci_hp_remove_devices`,
    /// `eeh_pe_reset_full(pe, false)`, `configure-pe`, `eeh_pe_restore_bars`,
    /// `eeh_clear_pe_frozen_state` (`eeh_unfreeze_pe`), `ssleep(5)`
    /// ("EEH: Sleep 5s ahead of complete hotplug") and `pci_hp_add_devices`,
    /// whose probe enables EEH again.
    fn reset_with_hotplug(&mut self, p: &mut dyn GuestPlatform, pe: GuestPeId) -> Result<(), String> {
        const HOTPLUG_SLEEP: Duration = Duration::from_secs(5);
        self.pci_enable(p, pe, EehOption::ThawMmio);
        self.configure_pe(p, pe);
        self.slot_error_detail(p, pe, 1);
        self.note(p, Some(pe), GuestEventKind::Hotplug { removed: true });
        self.reset_full(p, pe)?;
        self.configure_pe(p, pe);
        self.restore_bars(p, pe);
        self.unfreeze_pe(p, pe).map_err(|()| "the PE could not be thawed after the reset".to_owned())?;
        p.clock().sleep(HOTPLUG_SLEEP);
        let functions = self.functions(pe).to_vec();
        self.probe(p, &functions);
        self.note(p, Some(pe), GuestEventKind::Hotplug { removed: false });
        Ok(())
    }

    /// `eeh_pe_reset_full(pe, false)`: up to three cycles of hot reset and
    /// deactivate (each followed by `pseries_eeh_phb_reset`'s hold or settle
    /// sleep; the deactivate by `eeh_pe_reenable_devices`'s
    /// `eeh_unfreeze_pe`), each ended by `eeh_wait_state`.
    fn reset_full(&mut self, p: &mut dyn GuestPlatform, pe: GuestPeId) -> Result<(), String> {
        let [a0, a1, a2] = pe_args(pe);
        let timing = self.config.timing;
        const ATTEMPTS: usize = 3;
        for _ in 0..ATTEMPTS {
            let (hot, _) = self.call(p, RtasCall::SetSlotReset, &[a0, a1, a2, 1], Some(pe));
            p.clock().sleep(timing.reset_hold);
            if hot != status::SUCCESS {
                continue;
            }
            let (deactivate, _) = self.call(p, RtasCall::SetSlotReset, &[a0, a1, a2, 0], Some(pe));
            p.clock().sleep(timing.reset_settle);
            if deactivate != status::SUCCESS || self.unfreeze_pe(p, pe).is_err() {
                continue;
            }
            if self.wait_state(p, pe) == Some(PeState::Normal) {
                return Ok(());
            }
        }
        Err(format!("reset failed {ATTEMPTS} times"))
    }

    /// `eeh_unfreeze_pe`: `eeh_pci_enable` for MMIO, then for DMA.
    fn unfreeze_pe(&mut self, p: &mut dyn GuestPlatform, pe: GuestPeId) -> Result<(), ()> {
        if self.pci_enable(p, pe, EehOption::ThawMmio) && self.pci_enable(p, pe, EehOption::ThawDma) {
            Ok(())
        } else {
            Err(())
        }
    }

    /// `eeh_pci_enable` for a thaw: reads the state and returns at once if
    /// the path is already active; else `set-eeh-option` and `eeh_wait_state`.
    /// True if the path is active at the end.
    fn pci_enable(&mut self, p: &mut dyn GuestPlatform, pe: GuestPeId, option: EehOption) -> bool {
        let [a0, a1, a2] = pe_args(pe);
        match self.read_state(p, pe) {
            None => return false,
            Some((state, _)) if option.active_in(state) => return true,
            Some(_) => {}
        }
        self.call(p, RtasCall::SetEehOption, &[a0, a1, a2, option.function()], Some(pe));
        self.wait_state(p, pe).is_some_and(|state| option.active_in(state))
    }

    /// The CAN_RECOVER path: thaw MMIO (`set-eeh-option` 2) if still
    /// stopped, `mmio_enabled`, thaw DMA (3); true if the PE is then normal.
    fn thaw(&mut self, p: &mut dyn GuestPlatform, pe: GuestPeId) -> bool {
        let [a0, a1, a2] = pe_args(pe);
        if let Some((PeState::Stopped, _)) = self.read_state(p, pe) {
            self.call(p, RtasCall::SetEehOption, &[a0, a1, a2, 2], Some(pe));
        }
        self.note(p, Some(pe), GuestEventKind::Driver { callback: "mmio_enabled" });
        let (st, _) = self.call(p, RtasCall::SetEehOption, &[a0, a1, a2, 3], Some(pe));
        st == status::SUCCESS && matches!(self.read_state(p, pe), Some((PeState::Normal, _)))
    }

    /// `eeh_pe_update_time_stamp` and the count: a freeze more than a window
    /// after the first one of the window starts a new window.
    fn count_freeze(&mut self, pe: GuestPeId, now: Duration) -> u32 {
        let window = self.config.freeze_window;
        let record = self.pes.get_mut(&pe).expect("a probed PE");
        match record.window_start {
            Some(start) if now.saturating_sub(start) <= window => {}
            _ => {
                record.window_start = Some(now);
                record.freeze_count = 0;
            }
        }
        record.freeze_count += 1;
        record.freeze_count
    }

    /// Reads the PE state: `Some(state)` on success.
    fn read_state(&mut self, p: &mut dyn GuestPlatform, pe: GuestPeId) -> Option<(PeState, u32)> {
        let [a0, a1, a2] = pe_args(pe);
        let (st, out) = self.call(p, RtasCall::ReadSlotResetState2, &[a0, a1, a2], Some(pe));
        if st != status::SUCCESS {
            return None;
        }
        let state = PeState::from_raw(*out.first()?)?;
        Some((state, out.get(2).copied().unwrap_or(0)))
    }

    /// Whether [`wait_state`](Self::wait_state) finds the PE available.
    fn wait_available(&mut self, p: &mut dyn GuestPlatform, pe: GuestPeId) -> bool {
        self.wait_state(p, pe).is_some()
    }

    /// `eeh_wait_state`: polls while the PE is unavailable, sleeping the
    /// firmware's hint clamped to [min_wait, max_wait], and returns the
    /// first other state. `None` on a permanent "unavailable", a failed
    /// read, or when the budget runs out.
    fn wait_state(&mut self, p: &mut dyn GuestPlatform, pe: GuestPeId) -> Option<PeState> {
        let timing = self.config.timing;
        let mut waited = Duration::ZERO;
        loop {
            match self.read_state(p, pe)? {
                (PeState::Unavailable, 0) => return None,
                (PeState::Unavailable, hint_ms) => {
                    let wait = Duration::from_millis(hint_ms.into()).clamp(timing.min_wait, timing.max_wait);
                    if waited + wait > timing.max_wait {
                        return None;
                    }
                    p.clock().sleep(wait);
                    waited += wait;
                }
                (state, _) => return Some(state),
            }
        }
    }

    /// `eeh_slot_error_detail`: thaw MMIO for the log, `configure-pe`, then
    /// `pseries_eeh_phb_configure_bridge`: `configure-pe`, called again
    /// while it answers an extended delay (990x, anything above 9902 taken as
    /// 9902), sleeping 10^x ms each time, within 200 ms in all; any other
    /// status ends it.
    fn configure_pe(&mut self, p: &mut dyn GuestPlatform, pe: GuestPeId) {
        const BUDGET: Duration = Duration::from_millis(200);
        let args = pe_args(pe);
        let mut waited = Duration::ZERO;
        loop {
            let (st, _) = self.call(p, RtasCall::ConfigurePe, &args, Some(pe));
            if !(status::EXTENDED_DELAY_MIN..=status::EXTENDED_DELAY_MAX).contains(&st) {
                return;
            }
            let exponent = (st - status::EXTENDED_DELAY_MIN).min(2).unsigned_abs();
            let delay = Duration::from_millis(10u64.pow(exponent));
            waited += delay;
            if waited > BUDGET {
                return;
            }
            p.clock().sleep(delay);
        }
    }

    /// `slot-error-detail` with `function` (1 temporary, 2 permanent).
    fn collect_log(&mut self, p: &mut dyn GuestPlatform, pe: GuestPeId, function: u32) {
        let [a0, a1, a2] = pe_args(pe);
        if let Some((PeState::Stopped, _)) = self.read_state(p, pe) {
            self.call(p, RtasCall::SetEehOption, &[a0, a1, a2, 2], Some(pe));
        }
        self.configure_pe(p, pe);
        self.slot_error_detail(p, pe, function);
    }

    /// `slot-error-detail` with `function` (1 temporary, 2 permanent).
    fn slot_error_detail(&mut self, p: &mut dyn GuestPlatform, pe: GuestPeId, function: u32) {
        let [a0, a1, a2] = pe_args(pe);
        const LOG_BUFFER: u32 = 0x10_0000;
        const LOG_MAX: u32 = 2048;
        let args = [a0, a1, a2, 0, 0, LOG_BUFFER, LOG_MAX, function];
        let (st, _) = self.call(p, RtasCall::SlotErrorDetail, &args, Some(pe));
        self.note(p, Some(pe), GuestEventKind::ErrorLog { found: st == status::SUCCESS });
    }

    /// `eeh_pe_reset_full` plus `configure-pe` and the BAR restore.
    fn reset(&mut self, p: &mut dyn GuestPlatform, pe: GuestPeId) -> Result<(), String> {
        let [a0, a1, a2] = pe_args(pe);
        let timing = self.config.timing;
        const ATTEMPTS: usize = 3;
        for _ in 0..ATTEMPTS {
            let (st, _) = self.call(p, RtasCall::SetSlotReset, &[a0, a1, a2, 1], Some(pe));
            if st != status::SUCCESS {
                continue;
            }
            p.clock().sleep(timing.reset_hold);
            self.call(p, RtasCall::SetSlotReset, &[a0, a1, a2, 0], Some(pe));
            p.clock().sleep(timing.reset_settle);
            self.thaw_if_frozen(p, pe);
            if self.wait_available(p, pe) {
                self.configure_pe(p, pe);
                self.restore_bars(p, pe);
                return Ok(());
            }
        }
        Err(format!("reset failed {ATTEMPTS} times"))
    }

    /// After a reset the host has normally thawed the PE; thaw what is left.
    fn thaw_if_frozen(&mut self, p: &mut dyn GuestPlatform, pe: GuestPeId) {
        let [a0, a1, a2] = pe_args(pe);
        match self.read_state(p, pe) {
            Some((PeState::Stopped, _)) => {
                self.call(p, RtasCall::SetEehOption, &[a0, a1, a2, 2], Some(pe));
                self.call(p, RtasCall::SetEehOption, &[a0, a1, a2, 3], Some(pe));
            }
            Some((PeState::StoppedDma, _)) => {
                self.call(p, RtasCall::SetEehOption, &[a0, a1, a2, 3], Some(pe));
            }
            _ => {}
        }
    }

    fn restore_bars(&mut self, p: &mut dyn GuestPlatform, pe: GuestPeId) {
        let saved: Vec<(GuestAddr, [u32; 6])> =
            self.pes[&pe].saved_bars.iter().map(|(&dev, &bars)| (dev, bars)).collect();
        for (dev, bars) in saved {
            for (i, bar) in (0u16..).zip(bars) {
                p.config_write32(dev, BAR0 + 4 * i, bar);
            }
        }
    }

    /// Permanent failure: the log with function 2, `error_detected` with
    /// `pci_channel_io_perm_failure`, devices removed.
    fn give_up(&mut self, p: &mut dyn GuestPlatform, pe: GuestPeId, reason: String) -> Outcome {
        self.collect_log(p, pe, 2);
        self.note(p, Some(pe), GuestEventKind::Driver { callback: "error_detected" });
        if let Some(record) = self.pes.get_mut(&pe) {
            record.removed = true;
        }
        self.note(p, Some(pe), GuestEventKind::PermanentFailure { reason });
        Outcome::Failed
    }

    /// The functions of a PE.
    pub fn functions(&self, pe: GuestPeId) -> &[GuestAddr] {
        self.pes.get(&pe).map_or(&[], |r| &r.functions)
    }
}

/// The `nret` the guest passes for a call.
fn call_nret(call: RtasCall) -> usize {
    (1..=5).find(|&n| call.accepts_nret(n)).expect("every call accepts some nret")
}
