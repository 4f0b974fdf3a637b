//! The simulator's event log: what happened to each PE and when (virtual
//! time), for the demo's timeline and for tests. Each PE keeps a bounded
//! ring, preallocated, so recording never allocates or takes a global lock;
//! a host-wide sequence number orders events across PEs.

use std::collections::VecDeque;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use vfio_eeh::addr::{PciAddr, PeId};
use vfio_eeh::ops::{ErrFunc, ErrInjection, PeState, ResetKind};
use vfio_eeh::pe::FreezeScope;

/// Why a PE froze.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "cause", content = "func")]
pub enum FreezeCause {
    /// An injected error fired.
    Injected(ErrFunc),
    /// An access the device could not decode (memory or I/O decoding off):
    /// an Unsupported Request, which freezes the PE.
    UnsupportedRequest,
    /// Frozen on request ([`SimHost::freeze`](crate::SimHost::freeze)).
    Manual,
    /// A device model's DMA to an address the IOMMU does not map (or maps
    /// the other way): an IOMMU fault, which freezes the PE on PowerNV.
    DmaFault,
}

/// One thing that happened to a PE.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "event")]
pub enum SimEventKind {
    /// EEH enabled on the PE (`ENABLE`); `thawed` if it was frozen.
    Enabled {
        /// Whether a frozen PE was thawed.
        thawed: bool,
    },
    /// The PE froze.
    Frozen {
        /// Why.
        cause: FreezeCause,
        /// What stopped.
        scope: FreezeScope,
        /// The function whose access froze it, if any.
        device: Option<PciAddr>,
        /// The bus address (or config address) of that access.
        addr: u64,
        /// The host's freezes in the current window (not counting this one
        /// when the PE is passed).
        count: u32,
        /// Whether the PE was passed to a VFIO user, so the host did not
        /// count the freeze.
        passed: bool,
    },
    /// A VFIO user opened a device of the PE (`eeh_dev_open`): the PE is
    /// passed, thawed, and its freezes are no longer counted by the host.
    Passed {
        /// The device opened.
        device: PciAddr,
    },
    /// The last VFIO user's device of the PE was closed (`eeh_dev_release`):
    /// the PE is thawed and the host counts its freezes again.
    Released {
        /// The device closed.
        device: PciAddr,
    },
    /// One freeze too many: the PE failed permanently.
    PermanentFailure {
        /// The freeze that did it.
        cause: FreezeCause,
        /// Freezes in the window.
        count: u32,
    },
    /// MMIO or DMA thawed by `UNFREEZE_IO` / `UNFREEZE_DMA`.
    Thawed {
        /// The state now.
        state: PeState,
    },
    /// Reset asserted (the PE was frozen first; devices at power-on).
    ResetAsserted {
        /// Which reset.
        kind: ResetKind,
    },
    /// Reset deasserted; the PE settles.
    ResetDeasserted {
        /// When it becomes usable, in ns of the host clock.
        usable_at_ns: u64,
    },
    /// The settle finished: BARs restored, PE thawed and usable.
    Settled,
    /// A frozen PE was re-enabled by `RESET_DEACTIVATE` without a reset:
    /// BARs restored, PE thawed.
    Reenabled,
    /// `CONFIGURE` (nothing left to do after a deactivate).
    Configured,
    /// An injection was armed.
    InjectionArmed {
        /// What.
        injection: ErrInjection,
    },
    /// An injection still armed was replaced by a new one before it fired
    /// (the PHB has one set of injection registers, reprogrammed on every
    /// injection); `previous` will never fire.
    InjectionReplaced {
        /// The injection dropped.
        previous: ErrInjection,
        /// The injection armed in its place.
        by: ErrInjection,
    },
    /// An armed injection fired on an access.
    InjectionFired {
        /// What.
        injection: ErrInjection,
        /// The function accessed (none in immediate mode).
        device: Option<PciAddr>,
        /// The address accessed.
        addr: u64,
    },
    /// The PE's PHB fenced: every PE under it reads frozen.
    PhbFenced {
        /// The PHB.
        domain: u32,
        /// Fences counted on the PHB in its window, this one included.
        count: u32,
    },
    /// The host noticed the fence and is recovering the PHB with a complete
    /// reset; the PE reads unavailable until then.
    PhbRecovering {
        /// The PHB.
        domain: u32,
        /// When the recovery ends, in ns of the host clock.
        until_ns: u64,
    },
    /// The host recovered the PHB. A passed PE stays frozen for its owner
    /// to recover (`refrozen`); any other PE is thawed.
    PhbRecovered {
        /// The PHB.
        domain: u32,
        /// Whether the PE was frozen again (it is passed to a VFIO user).
        refrozen: bool,
    },
    /// The PHB died, or fenced once too often: the PE failed for good.
    PhbDead {
        /// The PHB.
        domain: u32,
    },
    /// The error log was read (and cleared).
    ErrorLogRead,
}

/// A logged event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimEvent {
    /// Host-wide order.
    pub seq: u64,
    /// When, in ns of the host clock.
    pub at_ns: u64,
    /// The PE.
    pub pe: PeId,
    /// What.
    #[serde(flatten)]
    pub kind: SimEventKind,
}

/// Nanoseconds of a clock reading, saturating.
pub fn nanos(at: Duration) -> u64 {
    u64::try_from(at.as_nanos()).unwrap_or(u64::MAX)
}

/// A PE's bounded event ring; the oldest events go first.
#[derive(Debug)]
pub struct EventRing {
    events: VecDeque<SimEvent>,
    capacity: usize,
}

impl EventRing {
    /// A ring keeping at most `capacity` events (at least one).
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        EventRing { events: VecDeque::with_capacity(capacity), capacity }
    }

    /// Records an event, dropping the oldest if full.
    pub fn push(&mut self, event: SimEvent) {
        if self.events.len() == self.capacity {
            self.events.pop_front();
        }
        self.events.push_back(event);
    }

    /// The events after `seq`, oldest first.
    pub fn after(&self, seq: u64) -> impl Iterator<Item = &SimEvent> {
        self.events.iter().filter(move |e| e.seq > seq)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(seq: u64) -> SimEvent {
        SimEvent { seq, at_ns: seq * 10, pe: PeId(1), kind: SimEventKind::Configured }
    }

    #[test]
    fn ring_is_bounded_and_keeps_the_newest() {
        let mut ring = EventRing::new(3);
        for seq in 1..=5 {
            ring.push(event(seq));
        }
        let seqs: Vec<u64> = ring.after(0).map(|e| e.seq).collect();
        assert_eq!(seqs, [3, 4, 5]);
        assert_eq!(ring.after(4).count(), 1);
    }

    #[test]
    fn events_serialize_flat_with_snake_case_tags() {
        let e = SimEvent {
            seq: 7,
            at_ns: 1_000,
            pe: PeId(2),
            kind: SimEventKind::Frozen {
                cause: FreezeCause::Injected(ErrFunc::LoadMemAddr),
                scope: FreezeScope::All,
                device: Some("0000:01:00.0".parse().unwrap()),
                addr: 0x8000_0000,
                count: 1,
                passed: false,
            },
        };
        let json = serde_json::to_value(e).unwrap();
        assert_eq!(json["event"], "frozen");
        assert_eq!(json["cause"]["cause"], "injected");
        assert_eq!(json["cause"]["func"], "load_mem_addr");
        assert_eq!(json["device"], "0000:01:00.0");
        assert_eq!(serde_json::from_value::<SimEvent>(json).unwrap(), e);
    }
}
