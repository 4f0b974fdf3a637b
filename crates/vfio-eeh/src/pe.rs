//! The PE state machine: freeze, thaw, reset, settle, configure and
//! permanent failure, as pure code. Time comes in as a parameter (a
//! [`Duration`] since any fixed epoch); nothing here reads a clock.
//!
//! Two layers:
//!
//! * the PAPR primitives ([`PeMachine::thaw_mmio`], [`PeMachine::thaw_dma`],
//!   [`PeMachine::assert_reset`], [`PeMachine::deassert_reset`]) follow the
//!   LoPAPR "PE State Control" table exactly; a refused transition is a
//!   [`PeError`] carrying the RTAS status (-3 or -7) and leaves the state
//!   unchanged;
//! * [`PeMachine::apply`] carries out a VFIO `VFIO_EEH_PE_*` operation with
//!   Linux's semantics on top of them: thawing what is already thawed is a
//!   no-op, `RESET_DEACTIVATE` also restores and thaws the PE, a hot or
//!   fundamental reset freezes the PE first, `ENABLE` thaws a frozen PE.
//!
//! The VFIO table ([`PeCondition`] across, operation down; "EIO" is a refused
//! transition, which Linux reports as `-EIO`):
//!
//! | op | Normal | StoppedDma | Stopped | Reset | Settling | Failed |
//! |---|---|---|---|---|---|---|
//! | disable | ok | ok | ok | ok | ok | EIO |
//! | enable | ok | →Normal | →Normal | ok | ok | EIO |
//! | unfreeze-io | ok | ok | →StoppedDma | EIO | EIO | EIO |
//! | unfreeze-dma | ok | →Normal | EIO | EIO | EIO | EIO |
//! | get-state | 0 | 4 | 2 | 1 | 5 (+delay) | 5 (delay 0) |
//! | reset-deactivate¹ | ok | →Normal | →Normal | →Settling | EIO | EIO |
//! | reset-hot/fundamental¹ | →Reset | →Reset | →Reset | ok | EIO | EIO |
//! | configure | ok | ok | ok | ok | ok | EIO |
//! | inject-err | arm | arm | arm | arm | arm | EIO |
//!
//! ¹ Needs EEH enabled on the PE (an `ENABLE` first), else `EIO`.
//!
//! A settling PE becomes Normal (thawed, BARs to be restored) once its settle
//! time has passed; [`PeMachine::settle`] makes that step and tells the caller.
//! Freezes are counted in a window ([`FreezePolicy`], Linux: more than 5 in an
//! hour); one too many fails the PE permanently.
//!
//! A PE whose devices a VFIO user holds open is *passed* (Linux's
//! `pass_dev_cnt`, see [`PeMachine::open_by_user`]). The host never counts the
//! freezes of a passed PE: Linux's only counter is in
//! `eeh_handle_normal_event`, and both paths that reach it drop a passed PE
//! (`pnv_eeh_next_error` returns `EEH_NEXT_ERR_NONE` for it,
//! `eeh_dev_check_failure` returns 0 on `eeh_pe_passed`). The owner — the
//! guest — keeps its own count.
//!
//! ```
//! use std::time::Duration;
//! use vfio_eeh::ops::{EehOp, PeState, ResetKind};
//! use vfio_eeh::pe::{FreezeScope, PeMachine};
//!
//! let mut pe = PeMachine::default();
//! let t = Duration::ZERO;
//! pe.apply(&EehOp::Enable, t)?;
//! pe.freeze(FreezeScope::All, t);
//! assert_eq!(pe.state(), PeState::Stopped);
//! pe.apply(&EehOp::Reset(ResetKind::Hot), t)?;
//! let done = pe.apply(&EehOp::ResetDeactivate, t + Duration::from_millis(250))?;
//! assert_eq!(done.status.state, PeState::Unavailable);
//! assert!(pe.settle(t + Duration::from_millis(2050)));
//! assert_eq!(pe.state(), PeState::Normal);
//! # Ok::<(), vfio_eeh::pe::PeError>(())
//! ```

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::addr::PeId;
use crate::backend::{errno, BackendError, PeOpReply, PeStatus};
use crate::ops::{EehOp, ErrInjection, ErrType, PeState, ResetKind};
use crate::rtas::status::{PARAMETER_ERROR, UNEXPECTED_STATE};

/// When repeated freezes fail a PE for good.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FreezePolicy {
    /// Freezes allowed in one window; one more fails the PE
    /// (Linux's `eeh_max_freezes`, 5).
    pub max_freezes: u32,
    /// The window, counted from its first freeze (Linux: one hour).
    pub window: Duration,
}

impl Default for FreezePolicy {
    fn default() -> Self {
        FreezePolicy { max_freezes: 5, window: Duration::from_secs(3600) }
    }
}

/// Freezes counted in a window that opens at its first freeze
/// (`eeh_pe_update_time_stamp`: a freeze more than a window after the first
/// one starts a new window).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FreezeCounter {
    freezes: u32,
    window_start: Option<Duration>,
}

impl FreezeCounter {
    /// Counts a freeze at `now`; returns the freezes in the window, this one
    /// included.
    pub fn count(&mut self, now: Duration, policy: FreezePolicy) -> u32 {
        match self.window_start {
            Some(start) if now.saturating_sub(start) <= policy.window => {}
            _ => {
                self.window_start = Some(now);
                self.freezes = 0;
            }
        }
        self.freezes = self.freezes.saturating_add(1);
        self.freezes
    }

    /// Freezes in the current window.
    pub const fn freezes(&self) -> u32 {
        self.freezes
    }
}

/// How long a reset is held and how long the PE takes to settle after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResetTiming {
    /// Minimum time the reset stays asserted (Linux `EEH_PE_RST_HOLD_TIME`,
    /// 250 ms; the PCI minimum is 100 ms).
    pub hold: Duration,
    /// Time from deassertion until the PE may be used (Linux
    /// `EEH_PE_RST_SETTLE_TIME`, 1800 ms; PAPR asks for 1.5 s on PCIe).
    pub settle: Duration,
}

impl Default for ResetTiming {
    fn default() -> Self {
        ResetTiming { hold: Duration::from_millis(250), settle: Duration::from_millis(1800) }
    }
}

/// What a freeze stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FreezeScope {
    /// MMIO and DMA (PAPR state 2).
    All,
    /// DMA only (PAPR state 4).
    Dma,
}

/// Where a PE is in its life, with what the state machine needs to leave it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "condition")]
pub enum PeCondition {
    /// MMIO and DMA flow.
    Normal,
    /// DMA stopped, MMIO allowed.
    StoppedDma,
    /// MMIO and DMA stopped (frozen).
    Stopped,
    /// Reset asserted (the PE was frozen first).
    Reset {
        /// Which reset.
        kind: ResetKind,
        /// When it was asserted.
        since: Duration,
    },
    /// Reset deasserted; unavailable until `until`.
    Settling {
        /// When the PE becomes usable.
        until: Duration,
    },
    /// Permanently failed.
    Failed,
}

impl PeCondition {
    /// The state `GET_STATE` reports.
    pub const fn state(self) -> PeState {
        match self {
            PeCondition::Normal => PeState::Normal,
            PeCondition::StoppedDma => PeState::StoppedDma,
            PeCondition::Stopped => PeState::Stopped,
            PeCondition::Reset { .. } => PeState::Reset,
            PeCondition::Settling { .. } | PeCondition::Failed => PeState::Unavailable,
        }
    }
}

/// Why a transition was refused. The state is unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "error")]
pub enum PeError {
    /// PAPR -3: the request does not apply in this state.
    #[error("{op} does not apply to a PE in state {state}")]
    NotApplicable {
        /// The operation.
        op: &'static str,
        /// The state it met.
        state: PeState,
    },
    /// PAPR -7: the PE is in a state that forbids the request.
    #[error("{op} is refused while the PE is in state {state}")]
    UnexpectedState {
        /// The operation.
        op: &'static str,
        /// The state it met.
        state: PeState,
    },
    /// A reset was asked of a PE whose EEH is not enabled.
    #[error("EEH is not enabled on the PE")]
    NotEnabled,
    /// The PE has failed permanently.
    #[error("The PE has failed permanently")]
    PermanentlyFailed,
    /// A 32-bit injection names an address or mask above 32 bits.
    #[error("32-bit injection address {addr:#x} or mask {mask:#x} exceeds 32 bits")]
    InjectionOutOfRange {
        /// The address.
        addr: u64,
        /// The mask.
        mask: u64,
    },
}

impl PeError {
    /// The RTAS status a PAPR firmware gives (-3, -7, or -1 for hardware
    /// failure).
    pub const fn rtas_status(self) -> i32 {
        match self {
            PeError::NotApplicable { .. } | PeError::InjectionOutOfRange { .. } => PARAMETER_ERROR,
            PeError::UnexpectedState { .. } => UNEXPECTED_STATE,
            PeError::NotEnabled | PeError::PermanentlyFailed => -1,
        }
    }

    /// The errno Linux answers on the VFIO path: `EIO` for refused
    /// transitions, `EINVAL` for inapplicable ones, `ERANGE` for injections.
    pub const fn errno(self) -> i32 {
        match self {
            PeError::NotApplicable { .. } => errno::EINVAL,
            PeError::InjectionOutOfRange { .. } => errno::ERANGE,
            PeError::UnexpectedState { .. } | PeError::NotEnabled | PeError::PermanentlyFailed => errno::EIO,
        }
    }

    /// The backend error for this refusal on PE `pe` (same errno).
    pub fn into_backend(self, pe: PeId) -> BackendError {
        match self {
            PeError::NotApplicable { .. } => BackendError::InvalidArgument(format!("PE {pe}: {self}")),
            PeError::UnexpectedState { .. } => BackendError::Io(format!("PE {pe}: {self}")),
            PeError::NotEnabled => BackendError::NotEnabled(pe),
            PeError::PermanentlyFailed => BackendError::PermanentlyFailed(pe),
            PeError::InjectionOutOfRange { .. } => BackendError::OutOfRange(format!("PE {pe}: {self}")),
        }
    }
}

/// What a freeze did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "outcome")]
pub enum FreezeOutcome {
    /// Nothing more was stopped (already frozen, in reset, or failed).
    Unchanged,
    /// The PE froze; it is passed to a VFIO user, so the host does not count
    /// the freeze (`count` is the host's unchanged count).
    FrozenPassed {
        /// The host's freezes in the window, unchanged.
        count: u32,
    },
    /// The PE froze; this is freeze `count` of the current window.
    Frozen {
        /// Freezes in the window so far.
        count: u32,
    },
    /// One freeze too many: the PE has failed permanently.
    Failed {
        /// Freezes in the window, this one included.
        count: u32,
    },
}

/// The side effect of a successful operation, for the host to carry out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "effect")]
pub enum Effect {
    /// Nothing changed.
    None,
    /// EEH enabled; `thawed` if the PE was frozen and is now thawed.
    Enabled {
        /// Whether a frozen PE was thawed.
        thawed: bool,
    },
    /// MMIO or DMA thawed (the new state is in [`Applied::status`]).
    Thawed,
    /// Reset asserted: devices go to power-on state.
    ResetAsserted(ResetKind),
    /// Reset deasserted: the PE settles until `usable_at`.
    ResetDeasserted {
        /// When the PE becomes usable.
        usable_at: Duration,
    },
    /// A frozen PE without reset was re-enabled: saved BARs restored, thawed.
    Reenabled,
    /// `CONFIGURE` done (Linux: nothing to do).
    Configured,
    /// An injection to arm.
    ArmInjection(ErrInjection),
}

/// The result of [`PeMachine::apply`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Applied {
    /// What `VFIO_EEH_PE_OP` answers.
    pub reply: PeOpReply,
    /// The PE's status after the operation.
    pub status: PeStatus,
    /// What the host must do.
    pub effect: Effect,
    /// Whether a pending settle completed before the operation (the host must
    /// restore the devices' saved configuration).
    pub settled: bool,
}

/// One PE's EEH state: condition, EEH enablement and freeze accounting.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeMachine {
    condition: PeCondition,
    enabled: bool,
    policy: FreezePolicy,
    timing: ResetTiming,
    counter: FreezeCounter,
    users: u32,
}

impl Default for PeMachine {
    fn default() -> Self {
        PeMachine::new(FreezePolicy::default(), ResetTiming::default())
    }
}

impl PeMachine {
    /// A normal PE with EEH not yet enabled.
    pub const fn new(policy: FreezePolicy, timing: ResetTiming) -> Self {
        PeMachine {
            condition: PeCondition::Normal,
            enabled: false,
            policy,
            timing,
            counter: FreezeCounter { freezes: 0, window_start: None },
            users: 0,
        }
    }

    /// Where the PE is.
    pub const fn condition(&self) -> PeCondition {
        self.condition
    }

    /// The state `GET_STATE` reports (call [`settle`](Self::settle) first).
    pub const fn state(&self) -> PeState {
        self.condition.state()
    }

    /// Whether EEH was enabled on the PE.
    pub const fn enabled(&self) -> bool {
        self.enabled
    }

    /// Freezes counted in the current window.
    pub const fn freezes(&self) -> u32 {
        self.counter.freezes()
    }

    /// Whether a VFIO user holds the PE (Linux `eeh_pe_passed`: its
    /// `pass_dev_cnt` is above zero).
    pub const fn passed(&self) -> bool {
        self.users > 0
    }

    /// Linux `eeh_dev_open`: a VFIO user opened one of the PE's devices.
    /// `eeh_pe_change_owner` thaws a frozen PE first (a PE in reset,
    /// settling or failed is left alone); only if that works is the device
    /// counted, and the PE passed. `thaw_possible` is false when the platform
    /// reads the PE frozen and cannot thaw it (a fenced or recovering PHB:
    /// `opal_pci_eeh_freeze_clear` fails), and then the PE is not passed; the open itself still succeeds,
    /// as `vfio_pci_core_finish_enable` ignores the result. Returns whether
    /// the PE is now passed.
    pub fn open_by_user(&mut self, thaw_possible: bool) -> bool {
        if !self.change_owner(thaw_possible) {
            return false;
        }
        self.users = self.users.saturating_add(1);
        true
    }

    /// Linux `eeh_dev_release`: a VFIO user closed one of the PE's devices.
    /// Nothing if the PE is not passed; else one device fewer, and
    /// `eeh_pe_change_owner` thaws the PE again, even if other devices of it
    /// are still open, so the next owner never inherits a freeze.
    pub fn release_by_user(&mut self, thaw_possible: bool) {
        if self.users == 0 {
            return;
        }
        self.users -= 1;
        self.change_owner(thaw_possible);
    }

    /// `eeh_pe_change_owner`: thaws a frozen PE; false if it cannot. Does not
    /// touch the freeze count.
    fn change_owner(&mut self, thaw_possible: bool) -> bool {
        if !thaw_possible {
            return false;
        }
        match self.condition {
            PeCondition::Stopped | PeCondition::StoppedDma => {
                self.condition = PeCondition::Normal;
                true
            }
            _ => true,
        }
    }

    /// The freeze policy.
    pub const fn policy(&self) -> FreezePolicy {
        self.policy
    }

    /// The reset timing.
    pub const fn timing(&self) -> ResetTiming {
        self.timing
    }

    /// Whether MMIO and config accesses reach the devices.
    pub const fn mmio_allowed(&self) -> bool {
        matches!(self.condition, PeCondition::Normal | PeCondition::StoppedDma)
    }

    /// Whether the devices' DMA gets through.
    pub const fn dma_allowed(&self) -> bool {
        matches!(self.condition, PeCondition::Normal)
    }

    /// The status at `now`: the state, and while unavailable the remaining
    /// delay (`ZERO` for a permanently failed PE).
    pub fn status(&self, now: Duration) -> PeStatus {
        let unavailable_for = match self.condition {
            PeCondition::Settling { until } => Some(until.saturating_sub(now)),
            PeCondition::Failed => Some(Duration::ZERO),
            _ => None,
        };
        PeStatus { state: self.state(), unavailable_for }
    }

    /// Ends a settle whose time has come: the PE becomes Normal. Returns
    /// whether it did (the host then restores the devices' saved state).
    pub fn settle(&mut self, now: Duration) -> bool {
        match self.condition {
            PeCondition::Settling { until } if now >= until => {
                self.condition = PeCondition::Normal;
                true
            }
            _ => false,
        }
    }

    /// An error stops MMIO and DMA, or DMA only. Counts the freeze in the
    /// window and fails the PE permanently once there are too many, unless
    /// the PE is [passed](Self::passed): then it only freezes. A PE already
    /// stopped that far, in reset, settling or failed is unchanged.
    pub fn freeze(&mut self, scope: FreezeScope, now: Duration) -> FreezeOutcome {
        let next = match (self.condition, scope) {
            (PeCondition::Normal, FreezeScope::Dma) => PeCondition::StoppedDma,
            (PeCondition::Normal | PeCondition::StoppedDma, FreezeScope::All) => PeCondition::Stopped,
            _ => return FreezeOutcome::Unchanged,
        };
        if self.passed() {
            self.condition = next;
            return FreezeOutcome::FrozenPassed { count: self.counter.freezes() };
        }
        let count = self.counter.count(now, self.policy);
        if count > self.policy.max_freezes {
            self.condition = PeCondition::Failed;
            FreezeOutcome::Failed { count }
        } else {
            self.condition = next;
            FreezeOutcome::Frozen { count }
        }
    }

    /// The host recovered the PE's PHB with a complete reset (Linux
    /// `eeh_pe_reset_full(phb_pe, false)`), which resets every PE under it:
    /// a passed PE is frozen again (`eeh_pe_refreeze_passed`, "re-freezing
    /// for safety") and stays frozen (`eeh_clear_pe_frozen_state` skips it)
    /// until its owner resets it; any other PE is thawed. A failed PE stays
    /// failed, and the freeze count is untouched (the fence was counted on
    /// the PHB).
    pub fn after_phb_reset(&mut self) {
        if self.condition != PeCondition::Failed {
            self.condition = if self.passed() { PeCondition::Stopped } else { PeCondition::Normal };
        }
    }

    /// Fails the PE permanently (PAPR `slot-error-detail` function 2, or a
    /// host decision).
    pub fn fail(&mut self) {
        self.condition = PeCondition::Failed;
    }

    fn refuse(&self, op: &'static str, papr_status: i32) -> PeError {
        let state = self.state();
        if papr_status == PARAMETER_ERROR {
            PeError::NotApplicable { op, state }
        } else {
            PeError::UnexpectedState { op, state }
        }
    }

    /// PAPR `set-eeh-option` function 2 (release for load/store):
    /// Stopped → StoppedDma; -3 in states 0 and 4; -7 in 1 and 5.
    pub fn thaw_mmio(&mut self) -> Result<(), PeError> {
        const OP: &str = "thaw-mmio";
        match self.condition {
            PeCondition::Stopped => {
                self.condition = PeCondition::StoppedDma;
                Ok(())
            }
            PeCondition::Normal | PeCondition::StoppedDma => Err(self.refuse(OP, PARAMETER_ERROR)),
            _ => Err(self.refuse(OP, UNEXPECTED_STATE)),
        }
    }

    /// PAPR `set-eeh-option` function 3 (release for DMA):
    /// StoppedDma → Normal; -3 in state 0; -7 in 1, 2 and 5.
    pub fn thaw_dma(&mut self) -> Result<(), PeError> {
        const OP: &str = "thaw-dma";
        match self.condition {
            PeCondition::StoppedDma => {
                self.condition = PeCondition::Normal;
                Ok(())
            }
            PeCondition::Normal => Err(self.refuse(OP, PARAMETER_ERROR)),
            _ => Err(self.refuse(OP, UNEXPECTED_STATE)),
        }
    }

    /// PAPR `set-slot-reset` function 1 or 3: states 0, 2 and 4 → Reset;
    /// no-op in 1; -7 in 5. Returns whether the reset was newly asserted.
    pub fn assert_reset(&mut self, kind: ResetKind, now: Duration) -> Result<bool, PeError> {
        match self.condition {
            PeCondition::Normal | PeCondition::Stopped | PeCondition::StoppedDma => {
                self.condition = PeCondition::Reset { kind, since: now };
                Ok(true)
            }
            PeCondition::Reset { .. } => Ok(false),
            _ => Err(self.refuse("reset-assert", UNEXPECTED_STATE)),
        }
    }

    /// PAPR `set-slot-reset` function 0: Reset → Settling (the PE is usable
    /// once the hold time has run and the settle time has passed after it);
    /// no-op in 0; -7 in 2 and 5; -3 in 4. Returns when the PE will be
    /// usable, `None` for the no-op.
    pub fn deassert_reset(&mut self, now: Duration) -> Result<Option<Duration>, PeError> {
        const OP: &str = "reset-deassert";
        match self.condition {
            PeCondition::Reset { since, .. } => {
                let until = now.max(since.saturating_add(self.timing.hold)).saturating_add(self.timing.settle);
                self.condition = PeCondition::Settling { until };
                Ok(Some(until))
            }
            PeCondition::Normal => Ok(None),
            PeCondition::StoppedDma => Err(self.refuse(OP, PARAMETER_ERROR)),
            _ => Err(self.refuse(OP, UNEXPECTED_STATE)),
        }
    }

    /// Carries out a VFIO operation at `now` with Linux's semantics (see the
    /// module table). A refused operation leaves the state unchanged (a due
    /// settle still completes; see [`Applied::settled`]).
    pub fn apply(&mut self, op: &EehOp, now: Duration) -> Result<Applied, PeError> {
        let settled = self.settle(now);
        let outcome = self.apply_settled(op, now);
        outcome.map(|(reply, effect)| Applied { reply, status: self.status(now), effect, settled })
    }

    fn apply_settled(&mut self, op: &EehOp, now: Duration) -> Result<(PeOpReply, Effect), PeError> {
        if let EehOp::GetState = op {
            return Ok((PeOpReply::State(self.state()), Effect::None));
        }
        if self.condition == PeCondition::Failed {
            return Err(PeError::PermanentlyFailed);
        }
        let effect = match *op {
            EehOp::GetState | EehOp::Disable => Effect::None,
            EehOp::Enable => {
                self.enabled = true;
                let frozen = matches!(self.condition, PeCondition::Stopped | PeCondition::StoppedDma);
                if frozen {
                    self.condition = PeCondition::Normal;
                }
                Effect::Enabled { thawed: frozen }
            }
            EehOp::UnfreezeIo if self.mmio_allowed() => Effect::None,
            EehOp::UnfreezeIo => self.thaw_mmio().map(|()| Effect::Thawed)?,
            EehOp::UnfreezeDma if self.dma_allowed() => Effect::None,
            EehOp::UnfreezeDma => self.thaw_dma().map(|()| Effect::Thawed)?,
            EehOp::ResetDeactivate | EehOp::Reset(_) if !self.enabled => return Err(PeError::NotEnabled),
            EehOp::ResetDeactivate => match self.condition {
                PeCondition::Stopped | PeCondition::StoppedDma => {
                    self.condition = PeCondition::Normal;
                    Effect::Reenabled
                }
                _ => match self.deassert_reset(now)? {
                    Some(usable_at) => Effect::ResetDeasserted { usable_at },
                    None => Effect::None,
                },
            },
            EehOp::Reset(kind) => {
                if self.assert_reset(kind, now)? {
                    Effect::ResetAsserted(kind)
                } else {
                    Effect::None
                }
            }
            EehOp::Configure => Effect::Configured,
            EehOp::InjectErr(inj) => {
                let wide = |v: u64| v > u64::from(u32::MAX);
                if inj.kind == ErrType::Bus32 && (wide(inj.addr) || wide(inj.mask)) {
                    return Err(PeError::InjectionOutOfRange { addr: inj.addr, mask: inj.mask });
                }
                Effect::ArmInjection(inj)
            }
        };
        Ok((PeOpReply::Done, effect))
    }
}

#[cfg(test)]
mod tests;
