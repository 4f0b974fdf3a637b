//! PHB-wide errors: a fenced or dead PHB, and the host's recovery of a
//! fence, as a PowerNV host (skiboot PHB4 and Linux `eeh-powernv.c`) does
//! them (research Q4).
//!
//! * **Fence** ([`PhbError::Fence`]): every PE under the PHB reads frozen
//!   (skiboot `phb4_eeh_freeze_status` reports a fenced PHB as every PE
//!   MMIO+DMA frozen): `GET_STATE` 2, loads all-ones, stores and DMA dropped.
//!   A PE's own reset cannot clear it: `RESET_DEACTIVATE`, `UNFREEZE_*` and
//!   `ENABLE` fail with `EIO` (`phb4_eeh_freeze_clear`: "eeh_freeze_clear on
//!   fenced PHB", `OPAL_HARDWARE`).
//! * **The host notices** (OPAL PCI-error interrupt → `pnv_eeh_next_error`
//!   → `EEH_NEXT_ERR_FENCED_PHB`, with no passed check for PHB errors)
//!   [`PhbRecoveryTiming::notice`] after the fence, counts the fence on the
//!   PHB PE (`eeh_handle_normal_event`: `pe->freeze_count++` against
//!   `eeh_max_freezes`) and recovers the PHB with a complete reset
//!   (`eeh_pe_reset_full` → `pnv_eeh_phb_reset` → `OPAL_RESET_PHB_COMPLETE`,
//!   skiboot `phb4_creset`). While it does, the PHB PE is
//!   `ISOLATED|RECOVERING`, so `eeh_pe_get_state` answers 5 for every PE
//!   under it, with the true remaining time here; every other op fails.
//! * **The PHB comes back**: PEs not passed to a VFIO user are thawed
//!   (`eeh_clear_pe_frozen_state`); passed PEs are frozen again
//!   (`eeh_pe_refreeze_passed`, "re-freezing for safety") and stay frozen
//!   (state 2) until their owner resets them. Every device's BARs were
//!   restored (`eeh_pe_restore_bars`).
//! * **Too many fences** (more than the PHB's [`FreezePolicy`] allows), or a
//!   **dead** PHB ([`PhbError::Dead`], skiboot `p->broken`): every PE under
//!   it fails for good and nothing recovers it. `GET_STATE` is 5 and the
//!   remaining time 0 (permanently unavailable), which sends a pseries guest
//!   down its permanent-failure path. (Linux gives 5 through the parent
//!   check until it removes the devices, `pci_hp_remove_devices`.)
//!
//! The states are functions of the host clock: the host needs no thread to
//! recover a PHB, and on the virtual clock a recovery costs nothing.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use vfio_eeh::pe::{FreezeCounter, FreezePolicy};

/// A PHB-wide error to inject.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PhbError {
    /// The PHB fences; the host recovers it with a complete reset.
    Fence,
    /// The PHB dies (skiboot marks it broken); nothing recovers it.
    Dead,
}

/// How long the host takes to notice and recover a fenced PHB. The
/// defaults are modelled from the sources named on each field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PhbRecoveryTiming {
    /// From the fence until the host notices it (the OPAL PCI-error
    /// interrupt and the EEH event thread). Modelled: 0; PEs read state 2 in
    /// this window.
    pub notice: Duration,
    /// The complete reset, `OPAL_RESET_PHB_COMPLETE` asserted and polled
    /// (skiboot `phb4_creset`). Modelled: 1270 ms = 10 ms first `WAIT_CQ`
    /// poll + 10 ms after lifting the ETU reset + 250 ms with PERST held
    /// (`REINIT`) + 1 s link stability wait (`CRESET_FRESET`), taking link
    /// training as instant.
    pub creset: Duration,
    /// `pnv_eeh_phb_reset`'s deassert: `msleep(EEH_PE_RST_SETTLE_TIME)`,
    /// 1800 ms.
    pub settle: Duration,
    /// "Reset with hotplug activity": when no device under the PHB has an
    /// EEH-aware host driver (every PE is passed, so `eeh_edev_actionable`
    /// skips them all) `eeh_reset_device` sleeps `ssleep(5)` before the PHB
    /// PE's `RECOVERING` is cleared: 5 s.
    pub hotplug: Duration,
}

impl Default for PhbRecoveryTiming {
    fn default() -> Self {
        PhbRecoveryTiming {
            notice: Duration::ZERO,
            creset: Duration::from_millis(1270),
            settle: Duration::from_millis(1800),
            hotplug: Duration::from_secs(5),
        }
    }
}

impl PhbRecoveryTiming {
    /// From noticing to the end of recovery; `all_passed` adds the hotplug
    /// sleep.
    pub fn recovery(&self, all_passed: bool) -> Duration {
        let hotplug = if all_passed { self.hotplug } else { Duration::ZERO };
        self.creset + self.settle + hotplug
    }
}

/// Where a PHB is, as the PEs under it see it at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "condition")]
pub enum PhbCondition {
    /// Working.
    Healthy,
    /// Fenced, not yet noticed by the host.
    Fenced,
    /// The host is recovering it; usable again at `until` (host clock).
    Recovering {
        /// When the recovery ends.
        until: Duration,
    },
    /// Dead for good.
    Dead,
}

impl PhbCondition {
    /// Whether the PEs under it can be reached at all.
    pub const fn healthy(self) -> bool {
        matches!(self, PhbCondition::Healthy)
    }
}

/// A PHB's state and the fence count, as the tools show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PhbStatus {
    /// The PHB (its PCI domain).
    pub domain: u32,
    /// Where it is now.
    #[serde(flatten)]
    pub condition: PhbCondition,
    /// Fences counted in the current window (on the PHB PE).
    pub fences: u32,
    /// Recoveries completed.
    pub recoveries: u64,
}

/// A fence the host has not finished with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Fence {
    /// When the host notices it.
    pub(crate) noticed_at: Duration,
    /// When its recovery ends.
    pub(crate) ends_at: Duration,
    /// Whether it was one too many: the PHB dies when noticed.
    pub(crate) fatal: bool,
}

/// What a PE needs to know of its PHB at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PhbView {
    pub(crate) condition: PhbCondition,
    /// Recoveries completed so far.
    pub(crate) recoveries: u64,
    /// When the last one ended.
    pub(crate) recovered_at: Duration,
}

/// A PHB's mutable state, under its lock.
#[derive(Debug, Default)]
pub(crate) struct PhbState {
    fence: Option<Fence>,
    dead_at: Option<Duration>,
    counter: FreezeCounter,
    recoveries: u64,
    recovered_at: Duration,
}

impl PhbState {
    /// Moves the PHB along to `now` and says where it is.
    pub(crate) fn view(&mut self, now: Duration) -> PhbView {
        if let Some(fence) = self.fence {
            if now >= fence.noticed_at && fence.fatal {
                self.dead_at = Some(fence.noticed_at);
                self.fence = None;
            } else if now >= fence.ends_at {
                self.fence = None;
                self.recoveries += 1;
                self.recovered_at = fence.ends_at;
            }
        }
        let condition = match (self.dead_at, self.fence) {
            (Some(at), _) if now >= at => PhbCondition::Dead,
            (_, Some(fence)) if now < fence.noticed_at => PhbCondition::Fenced,
            (_, Some(fence)) => PhbCondition::Recovering { until: fence.ends_at },
            _ => PhbCondition::Healthy,
        };
        PhbView { condition, recoveries: self.recoveries, recovered_at: self.recovered_at }
    }

    /// Fences at `now`; the host notices after `timing.notice` and counts
    /// the fence against `policy` (dying if it is one too many) or recovers.
    /// `None` if the PHB is dead or already fenced.
    pub(crate) fn fence(
        &mut self,
        now: Duration,
        timing: &PhbRecoveryTiming,
        policy: FreezePolicy,
        all_passed: bool,
    ) -> Option<(Fence, u32)> {
        if self.dead_at.is_some() || self.fence.is_some() {
            return None;
        }
        let noticed_at = now + timing.notice;
        let count = self.counter.count(noticed_at, policy);
        let fence =
            Fence { noticed_at, ends_at: noticed_at + timing.recovery(all_passed), fatal: count > policy.max_freezes };
        self.fence = Some(fence);
        Some((fence, count))
    }

    /// Dies at `now`. `false` if it was already dead.
    pub(crate) fn kill(&mut self, now: Duration) -> bool {
        if self.dead_at.is_some() {
            return false;
        }
        self.fence = None;
        self.dead_at = Some(now);
        true
    }

    /// Fences counted in the window.
    pub(crate) fn fences(&self) -> u32 {
        self.counter.freezes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn a_fence_is_noticed_then_recovered_and_counted() {
        let timing = PhbRecoveryTiming { notice: 5 * MS, ..PhbRecoveryTiming::default() };
        let mut phb = PhbState::default();
        let (fence, count) = phb.fence(100 * MS, &timing, FreezePolicy::default(), false).unwrap();
        assert_eq!((fence.noticed_at, fence.ends_at, count), (105 * MS, 105 * MS + 3070 * MS, 1));
        assert!(phb.fence(101 * MS, &timing, FreezePolicy::default(), false).is_none(), "already fenced");
        assert_eq!(phb.view(104 * MS).condition, PhbCondition::Fenced);
        assert_eq!(phb.view(105 * MS).condition, PhbCondition::Recovering { until: fence.ends_at });
        let view = phb.view(fence.ends_at);
        assert_eq!((view.condition, view.recoveries, view.recovered_at), (PhbCondition::Healthy, 1, fence.ends_at));
        assert_eq!(timing.recovery(true), 8070 * MS);
    }

    #[test]
    fn one_fence_too_many_kills_the_phb_when_noticed() {
        let timing = PhbRecoveryTiming::default();
        let policy = FreezePolicy { max_freezes: 1, window: Duration::from_secs(3600) };
        let mut phb = PhbState::default();
        let (first, _) = phb.fence(Duration::ZERO, &timing, policy, false).unwrap();
        phb.view(first.ends_at);
        let (second, count) = phb.fence(first.ends_at, &timing, policy, false).unwrap();
        assert!(second.fatal && count == 2);
        assert_eq!(phb.view(second.noticed_at).condition, PhbCondition::Dead);
        assert!(phb.fence(second.ends_at, &timing, policy, false).is_none());
        assert!(!phb.kill(second.ends_at));
    }
}
