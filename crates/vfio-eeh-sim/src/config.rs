//! The simulator's policy knobs, in one struct whose [`Default`] behaves like
//! a Linux PowerNV host.

use serde::{Deserialize, Serialize};
use vfio_eeh::pe::{FreezePolicy, ResetTiming};

use crate::phb::PhbRecoveryTiming;

/// How `VFIO_EEH_PE_RESET_DEACTIVATE` (and hot/fundamental reset) wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeactivatePolicy {
    /// Like the Linux kernel: a reset sleeps the hold time on the clock, and
    /// a deactivate sleeps the settle time and returns with the PE normal.
    Blocking,
    /// Returns at once; the PE reports [`Unavailable`](vfio_eeh::ops::PeState::Unavailable)
    /// with the true remaining delay until it is usable.
    Reporting,
}

/// What `VFIO_EEH_PE_INJECT_ERR` does.
///
/// In both modes an injection is accepted in any state but permanent
/// failure, as PowerNV does (`eeh_pe_inject_err`, `pnv_eeh_err_inject` and
/// skiboot's `phb4_err_inject` never look at the PE's state), and a new
/// injection replaces one still armed (one set of injection registers per
/// PHB, cleared and reprogrammed on each call), which the event log records
/// as [`InjectionReplaced`](crate::event::SimEventKind::InjectionReplaced).
/// Nothing is accepted and then silently dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InjectionMode {
    /// Arm: the first matching access freezes the PE (the hardware way).
    OnAccess,
    /// Freeze the PE at once (for tests that want no access). A PE that is
    /// not usable (frozen, in reset, settling) cannot freeze further, so the
    /// injection stays armed and freezes the PE the moment it becomes usable
    /// again (the first look at the PE after its thaw or settle).
    Immediate,
}

/// The simulator's policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimConfig {
    /// When repeated freezes fail a PE (Linux: more than 5 in an hour).
    pub freeze_policy: FreezePolicy,
    /// Reset hold and settle times (Linux: 250 ms, 1800 ms).
    pub reset: ResetTiming,
    /// Whether resets block on the clock.
    pub deactivate: DeactivatePolicy,
    /// Whether injections wait for an access.
    pub injection: InjectionMode,
    /// Events kept per PE; older ones are dropped.
    pub events_per_pe: usize,
    /// Whether the PEs offer a fundamental reset. PowerNV always does
    /// (`pnv_eeh_reset`); `false` models a host or slot without one, where
    /// `RESET_FUNDAMENTAL` fails with `ENOTTY` and the RTAS firmware answers
    /// -8 so that the guest falls back to a hot reset.
    pub fundamental_reset: bool,
    /// How the host notices and recovers a fenced PHB.
    pub phb_timing: PhbRecoveryTiming,
    /// When repeated fences kill a PHB (Linux counts them on the PHB PE
    /// against `eeh_max_freezes`: more than 5 in an hour).
    pub phb_freeze_policy: FreezePolicy,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            freeze_policy: FreezePolicy::default(),
            reset: ResetTiming::default(),
            deactivate: DeactivatePolicy::Blocking,
            injection: InjectionMode::OnAccess,
            events_per_pe: 1024,
            fundamental_reset: true,
            phb_timing: PhbRecoveryTiming::default(),
            phb_freeze_policy: FreezePolicy::default(),
        }
    }
}
