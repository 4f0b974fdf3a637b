//! IOVA translation tables: where a device's DMA addresses point in a
//! process's memory.
//!
//! * [`Ranges`]: disjoint half-open intervals with a value each, whose every
//!   insert, lookup and hole punch is O(log n) (a booting pseries guest
//!   issues ~262,000 unmaps, almost all of nothing);
//! * [`Target`]: what a mapped interval holds (process address and the
//!   directions the device may go);
//! * [`IovaMap`]: a container's table of mappings, which can keep a journal
//!   of its changes ([`IovaChange`]) so that another process (eehd) keeps a
//!   copy by [`IovaMap::apply`]ing them.
//!
//! ```
//! use vfio_eeh_sim::iova::{IovaMap, Target};
//!
//! let rw = Target { vaddr: 0x7000_0000, device_reads: true, device_writes: true };
//! let (mut vmm, mut eehd) = (IovaMap::default(), IovaMap::default());
//! vmm.insert(0x1000, 0x3000, rw);
//! vmm.start_journal();
//! vmm.punch(0x2000, 0x3000);
//! for change in vmm.take_journal() {
//!     eehd.apply(&change).expect("the journal holds valid ranges");
//! }
//! assert_eq!(eehd.translate(0x1800, 0x10, true), Ok(vec![(0x7000_0800, 0x10)]));
//! assert_eq!(eehd.translate(0x2000, 1, false), vmm.translate(0x2000, 1, false));
//! ```

use std::collections::BTreeMap;

use crate::nvme::DmaError;

/// What an interval holds, moved along when an unmap splits it.
pub trait Shift: Copy {
    /// The value of the part that starts `by` bytes into the interval.
    fn shifted(self, by: u64) -> Self;
}

impl Shift for () {
    fn shifted(self, _by: u64) -> Self {}
}

/// Where a mapped IOVA range points: the process address of its first
/// byte, and which ways the device may go (`VFIO_DMA_MAP_FLAG_READ`: the
/// device reads; `_WRITE`: it writes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target {
    /// The process address of the range's first byte.
    pub vaddr: u64,
    /// The device may read the memory (DMA to the device).
    pub device_reads: bool,
    /// The device may write the memory (DMA from the device).
    pub device_writes: bool,
}

impl Shift for Target {
    /// Process addresses wrap past `u64::MAX` (sPAPR v1 does not check
    /// them): a DMA there fails in the process's memory, never here.
    fn shifted(self, by: u64) -> Self {
        Target { vaddr: self.vaddr.wrapping_add(by), ..self }
    }
}

/// Half-open intervals `[start, end)` keyed by start, disjoint, each with a
/// value. Callers keep `start < end`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ranges<T = ()> {
    map: BTreeMap<u64, (u64, T)>,
}

impl<T> Default for Ranges<T> {
    fn default() -> Self {
        Ranges { map: BTreeMap::new() }
    }
}

impl<T: Shift> Ranges<T> {
    /// The interval holding `addr`.
    pub fn containing(&self, addr: u64) -> Option<(u64, u64)> {
        self.entry(addr).map(|(s, e, _)| (s, e))
    }

    /// The interval holding `addr`, with its value.
    pub fn entry(&self, addr: u64) -> Option<(u64, u64, T)> {
        self.map.range(..=addr).next_back().map(|(&s, &(e, v))| (s, e, v)).filter(|&(_, e, _)| e > addr)
    }

    /// The end of the interval starting exactly at `start`.
    pub fn end_of(&self, start: u64) -> Option<u64> {
        self.map.get(&start).map(|&(e, _)| e)
    }

    /// Whether an interval meets `[start, end)`.
    pub fn overlaps(&self, start: u64, end: u64) -> bool {
        self.map.range(..end).next_back().is_some_and(|(_, &(e, _))| e > start)
    }

    /// Number of intervals.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether there is no interval.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// The intervals `(start, end, value)` in address order.
    pub fn iter(&self) -> impl Iterator<Item = (u64, u64, T)> + '_ {
        self.map.iter().map(|(&s, &(e, v))| (s, e, v))
    }

    /// Adds `[start, end)` holding `value`; the caller has made room (an
    /// interval starting at `start` is replaced).
    pub fn insert(&mut self, start: u64, end: u64, value: T) {
        self.map.insert(start, (end, value));
    }

    /// Removes the interval starting exactly at `start`, returning its end
    /// and value.
    pub fn remove(&mut self, start: u64) -> Option<(u64, T)> {
        self.map.remove(&start)
    }

    /// The value of the interval `[start, end)` exactly, to change in place.
    pub fn exact_mut(&mut self, start: u64, end: u64) -> Option<&mut T> {
        self.map.get_mut(&start).filter(|(e, _)| *e == end).map(|(_, v)| v)
    }

    /// Removes the intervals that start in `[start, end)` one by one as the
    /// iterator is advanced, yielding each `(start, end, value)`.
    pub fn drain_starting_in(&mut self, start: u64, end: u64) -> impl Iterator<Item = (u64, u64, T)> + '_ {
        std::iter::from_fn(move || {
            let (&s, &(e, v)) = self.map.range(start..end).next()?;
            self.map.remove(&s);
            Some((s, e, v))
        })
    }

    /// Removes the intervals that start in `[start, end)`, returning their
    /// total size (type1: callers have checked none straddles `end`).
    pub fn remove_starting_in(&mut self, start: u64, end: u64) -> u64 {
        self.drain_starting_in(start, end).map(|(s, e, _)| e - s).sum()
    }

    /// Clears `[start, end)`, splitting intervals that straddle its edges;
    /// whether anything was there.
    pub fn punch(&mut self, start: u64, end: u64) -> bool {
        let mut cleared = false;
        if let Some((s, e, v)) = self.entry(start).filter(|&(s, _, _)| s < start) {
            cleared = true;
            self.map.insert(s, (start, v));
            if e > end {
                self.map.insert(end, (e, v.shifted(end - s)));
                return cleared;
            }
        }
        while let Some((&s, &(e, v))) = self.map.range(start..end).next() {
            cleared = true;
            self.map.remove(&s);
            if e > end {
                self.map.insert(end, (e, v.shifted(end - s)));
            }
        }
        cleared
    }
}

impl Ranges<Target> {
    /// The process memory behind `len` bytes of DMA at `iova`, piece by
    /// piece (contiguous memory in one piece): the first address no mapping covers is `Unmapped`, a mapping
    /// without the direction `Direction`.
    pub fn translate(&self, iova: u64, len: u64, device_writes: bool) -> Result<Vec<(u64, u64)>, DmaError> {
        let mut pieces: Vec<(u64, u64)> = Vec::new();
        let mut at = iova;
        let end = iova.checked_add(len).ok_or(DmaError::Unmapped { iova: u64::MAX })?;
        while at < end {
            let (s, e, target) = self.entry(at).ok_or(DmaError::Unmapped { iova: at })?;
            let allowed = if device_writes { target.device_writes } else { target.device_reads };
            if !allowed {
                return Err(DmaError::Direction { iova: at });
            }
            let n = e.min(end) - at;
            let vaddr = target.shifted(at - s).vaddr;
            // Neighbouring mappings of neighbouring memory (one TCE per
            // page) make one piece, one copy.
            match pieces.last_mut() {
                Some((v, len)) if v.checked_add(*len) == Some(vaddr) => *len += n,
                _ => pieces.push((vaddr, n)),
            }
            at += n;
        }
        Ok(pieces)
    }
}

/// A change of an [`IovaMap`], as its journal records it and
/// [`IovaMap::apply`] replays it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IovaChange {
    /// Everything is unmapped.
    Clear,
    /// `[iova, iova + size)` now points at `target` (whatever was mapped
    /// there before is gone).
    Map {
        /// The first address.
        iova: u64,
        /// Bytes.
        size: u64,
        /// Where its first byte points.
        target: Target,
    },
    /// `[iova, iova + size)` is unmapped (mappings straddling its edges
    /// keep their parts outside it).
    Unmap {
        /// The first address.
        iova: u64,
        /// Bytes.
        size: u64,
    },
}

/// Why [`IovaMap::apply`] refused a change (and changed nothing).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum IovaRangeError {
    /// The range has no bytes.
    #[error("Empty IOVA range at {iova:#x}")]
    Empty {
        /// The first address.
        iova: u64,
    },
    /// The range runs past the end of the address space.
    #[error("IOVA range of {size:#x} bytes at {iova:#x} runs past the end of the address space")]
    Overflow {
        /// The first address.
        iova: u64,
        /// Bytes.
        size: u64,
    },
}

/// The end of `[iova, iova + size)`, a non-empty range that fits.
fn end_of(iova: u64, size: u64) -> Result<u64, IovaRangeError> {
    if size == 0 {
        return Err(IovaRangeError::Empty { iova });
    }
    iova.checked_add(size).ok_or(IovaRangeError::Overflow { iova, size })
}

/// How many changes a journal may hold beyond twice its table before it
/// starts over as a snapshot.
pub const JOURNAL_SLACK: usize = 4096;

/// A container's IOVA translation table, with an optional journal of its
/// changes for a copy in another process: every mutation goes through a
/// method here, which records it while the journal is on
/// ([`IovaMap::start_journal`]).
#[derive(Debug, Default)]
pub struct IovaMap {
    ranges: Ranges<Target>,
    journal: Option<Vec<IovaChange>>,
}

impl IovaMap {
    /// The mappings.
    pub fn ranges(&self) -> &Ranges<Target> {
        &self.ranges
    }

    /// The process memory behind `len` bytes of DMA at `iova`
    /// ([`Ranges::translate`]).
    pub fn translate(&self, iova: u64, len: u64, device_writes: bool) -> Result<Vec<(u64, u64)>, DmaError> {
        self.ranges.translate(iova, len, device_writes)
    }

    /// The mapping holding `iova`.
    pub fn containing(&self, iova: u64) -> Option<(u64, u64)> {
        self.ranges.containing(iova)
    }

    /// Whether a mapping meets `[start, end)`.
    pub fn overlaps(&self, start: u64, end: u64) -> bool {
        self.ranges.overlaps(start, end)
    }

    /// Number of mappings.
    pub fn len(&self) -> usize {
        self.ranges.len()
    }

    /// Whether nothing is mapped.
    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// Records `change` while the journal is on. A journal that grew past
    /// [`JOURNAL_SLACK`] and twice the table (mappings made and unmapped
    /// again, never taken) starts over as a snapshot: it stays as long as
    /// the table at most, whatever the VMM does between two takes.
    fn record(&mut self, change: IovaChange) {
        let Some(journal) = &mut self.journal else { return };
        journal.push(change);
        if journal.len() > JOURNAL_SLACK.max(2 * self.ranges.len()) {
            self.start_journal();
        }
    }

    /// Maps `[start, end)` (`start < end`) to `target`; the caller has made
    /// room. Journal: `Map`.
    pub fn insert(&mut self, start: u64, end: u64, target: Target) {
        self.ranges.insert(start, end, target);
        self.record(IovaChange::Map { iova: start, size: end - start, target });
    }

    /// Unmaps `[start, end)`, splitting mappings that straddle its edges.
    /// Journal: one `Unmap`, if anything was mapped there.
    pub fn punch(&mut self, start: u64, end: u64) {
        if self.ranges.punch(start, end) {
            self.record(IovaChange::Unmap { iova: start, size: end - start });
        }
    }

    /// Removes the mappings that start in `[start, end)`, returning their
    /// total size. Journal: one `Unmap` per mapping removed.
    pub fn remove_starting_in(&mut self, start: u64, end: u64) -> u64 {
        let removed: Vec<(u64, u64)> = self.ranges.drain_starting_in(start, end).map(|(s, e, _)| (s, e)).collect();
        let mut total = 0;
        for (s, e) in removed {
            total += e - s;
            self.record(IovaChange::Unmap { iova: s, size: e - s });
        }
        total
    }

    /// Points the mapping `[start, end)` exactly at `vaddr`, keeping its
    /// directions; `false` when no mapping is exactly that range. Journal:
    /// `Map` of the whole mapping.
    pub fn set_vaddr(&mut self, start: u64, end: u64, vaddr: u64) -> bool {
        let Some(target) = self.ranges.exact_mut(start, end) else {
            return false;
        };
        target.vaddr = vaddr;
        let target = *target;
        self.record(IovaChange::Map { iova: start, size: end - start, target });
        true
    }

    /// Turns the journal on and fills it with a snapshot: `Clear`, then one
    /// `Map` per mapping, so that applying it makes any table equal to this
    /// one. Started again, it drops what was not taken and starts over.
    pub fn start_journal(&mut self) {
        let snapshot = std::iter::once(IovaChange::Clear)
            .chain(self.ranges.iter().map(|(iova, end, target)| IovaChange::Map { iova, size: end - iova, target }));
        self.journal = Some(snapshot.collect());
    }

    /// The changes recorded since the journal started or was last taken
    /// (none when it is off); it stays on.
    pub fn take_journal(&mut self) -> Vec<IovaChange> {
        self.journal.as_mut().map(std::mem::take).unwrap_or_default()
    }

    /// Replays `change`, which comes from another process's journal and is
    /// not trusted: `Clear` unmaps everything, `Map` unmaps its range then
    /// maps it, `Unmap` unmaps its range. A range that is empty or runs past
    /// `u64::MAX` is refused and nothing changes. Recorded in this table's
    /// journal if it is on.
    pub fn apply(&mut self, change: &IovaChange) -> Result<(), IovaRangeError> {
        match *change {
            IovaChange::Clear => {
                self.ranges = Ranges::default();
                self.record(IovaChange::Clear);
            }
            IovaChange::Map { iova, size, target } => {
                let end = end_of(iova, size)?;
                self.punch(iova, end);
                self.insert(iova, end, target);
            }
            IovaChange::Unmap { iova, size } => {
                let end = end_of(iova, size)?;
                self.punch(iova, end);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn ranges_punch_holes_and_find_overlaps() {
        let mut ranges: Ranges = Ranges::default();
        ranges.insert(0x1000, 0x5000, ());
        assert!(ranges.overlaps(0x4000, 0x6000));
        assert!(!ranges.overlaps(0x5000, 0x6000), "half-open");
        ranges.punch(0x2000, 0x3000);
        assert_eq!(ranges.containing(0x2800), None);
        assert_eq!(ranges.containing(0x1800), Some((0x1000, 0x2000)));
        assert_eq!(ranges.containing(0x3000), Some((0x3000, 0x5000)));
        assert_eq!(ranges.remove_starting_in(0, 0x4000), 0x3000);
        assert!(ranges.map.is_empty());
    }

    #[test]
    fn splits_keep_their_process_addresses_and_translation_checks_direction() {
        let mut ranges: Ranges<Target> = Ranges::default();
        let rw = Target { vaddr: 0x7000_0000, device_reads: true, device_writes: true };
        ranges.insert(0x1000, 0x5000, rw);
        ranges.insert(0x5000, 0x6000, Target { vaddr: 0x9000_0000, device_reads: true, device_writes: false });
        ranges.punch(0x2000, 0x3000);
        assert_eq!(ranges.translate(0x3800, 0x100, true), Ok(vec![(0x7000_2800, 0x100)]), "shifted");
        assert_eq!(ranges.translate(0x4800, 0x1000, false), Ok(vec![(0x7000_3800, 0x800), (0x9000_0000, 0x800)]));
        assert_eq!(ranges.translate(0x4800, 0x1000, true), Err(DmaError::Direction { iova: 0x5000 }));
        assert_eq!(ranges.translate(0x1800, 0x1000, false), Err(DmaError::Unmapped { iova: 0x2000 }));
        assert_eq!(ranges.translate(u64::MAX, 2, false), Err(DmaError::Unmapped { iova: u64::MAX }));
        ranges.insert(0x6000, 0x7000, Target { vaddr: 0x9000_1000, ..rw });
        assert_eq!(ranges.translate(0x5800, 0x1000, false), Ok(vec![(0x9000_0800, 0x1000)]), "one piece");
    }

    const RW: Target = Target { vaddr: 0x7000_0000, device_reads: true, device_writes: true };

    #[test]
    fn a_journal_never_taken_stays_as_long_as_its_table() {
        let mut map = IovaMap::default();
        map.insert(0x1000, 0x2000, RW);
        map.start_journal();
        // A TCE mapped and unmapped a million times between two takes.
        for _ in 0..1_000_000 {
            map.insert(0x8000, 0x9000, RW);
            map.punch(0x8000, 0x9000);
        }
        let journal = map.take_journal();
        assert!(journal.len() <= JOURNAL_SLACK + 1, "{} changes kept", journal.len());
        let mut copy = IovaMap::default();
        copy.insert(0x8000, 0x9000, RW);
        for change in &journal {
            copy.apply(change).unwrap();
        }
        assert_eq!(copy.ranges(), map.ranges(), "and it still makes a copy equal");
    }

    #[test]
    fn the_journal_records_each_mutation_once_started() {
        let mut map = IovaMap::default();
        assert_eq!(map.take_journal(), [], "off");
        map.insert(0x1000, 0x3000, RW);
        map.insert(0x8000, 0x9000, Target { device_writes: false, ..RW });
        assert_eq!(map.take_journal(), [], "still off");

        map.start_journal();
        let snapshot = [
            IovaChange::Clear,
            IovaChange::Map { iova: 0x1000, size: 0x2000, target: RW },
            IovaChange::Map { iova: 0x8000, size: 0x1000, target: Target { device_writes: false, ..RW } },
        ];
        assert_eq!(map.take_journal(), snapshot);
        assert_eq!(map.take_journal(), [], "taken");

        map.punch(0x1800, 0x2000);
        map.punch(0x4000, 0x5000);
        assert!(map.set_vaddr(0x2000, 0x3000, 0x5000_0000));
        assert!(!map.set_vaddr(0x2000, 0x2800, 0x5000_0000), "not a mapping exactly");
        map.insert(0x4000, 0x5000, RW);
        assert_eq!(map.remove_starting_in(0x1000, 0x5000), 0x2800);
        let changes = [
            IovaChange::Unmap { iova: 0x1800, size: 0x800 },
            IovaChange::Map { iova: 0x2000, size: 0x1000, target: Target { vaddr: 0x5000_0000, ..RW } },
            IovaChange::Map { iova: 0x4000, size: 0x1000, target: RW },
            IovaChange::Unmap { iova: 0x1000, size: 0x800 },
            IovaChange::Unmap { iova: 0x2000, size: 0x1000 },
            IovaChange::Unmap { iova: 0x4000, size: 0x1000 },
        ];
        assert_eq!(map.take_journal(), changes, "the punch of nothing is not recorded");
        assert_eq!(map.len(), 1);
    }

    #[test]
    fn hostile_changes_are_refused_and_change_nothing() {
        let mut map = IovaMap::default();
        map.insert(0x1000, 0x3000, RW);
        let before = map.ranges().clone();
        let hostile = [
            (IovaChange::Map { iova: 0x1000, size: 0, target: RW }, IovaRangeError::Empty { iova: 0x1000 }),
            (IovaChange::Unmap { iova: 0x2000, size: 0 }, IovaRangeError::Empty { iova: 0x2000 }),
            (
                IovaChange::Map { iova: u64::MAX, size: 1, target: RW },
                IovaRangeError::Overflow { iova: u64::MAX, size: 1 },
            ),
            (
                IovaChange::Unmap { iova: 0x1000, size: u64::MAX },
                IovaRangeError::Overflow { iova: 0x1000, size: u64::MAX },
            ),
            (
                IovaChange::Map { iova: u64::MAX, size: u64::MAX, target: RW },
                IovaRangeError::Overflow { iova: u64::MAX, size: u64::MAX },
            ),
        ];
        for (change, error) in hostile {
            assert_eq!(map.apply(&change), Err(error), "{change:?}");
            assert_eq!(map.ranges(), &before, "{change:?}");
        }

        // The largest ranges and process addresses that wrap are valid.
        let top = Target { vaddr: u64::MAX - 0xfff, ..RW };
        assert_eq!(map.apply(&IovaChange::Map { iova: u64::MAX - 0x2000, size: 0x2000, target: top }), Ok(()));
        assert_eq!(map.apply(&IovaChange::Unmap { iova: u64::MAX - 0x1800, size: 0x800 }), Ok(()));
        assert_eq!(map.translate(u64::MAX - 0x1000, 0x10, true), Ok(vec![(0, 0x10)]), "wraps, no panic");
        assert_eq!(map.translate(u64::MAX - 0x2000, 0x900, true), Err(DmaError::Unmapped { iova: u64::MAX - 0x1800 }));
        assert_eq!(map.apply(&IovaChange::Unmap { iova: 0, size: u64::MAX }), Ok(()));
        assert!(map.is_empty());
    }

    /// A mutation the shim makes.
    #[derive(Debug, Clone)]
    enum Op {
        Insert { page: u64, pages: u64, vaddr: u64, device_writes: bool },
        Punch { page: u64, pages: u64 },
        RemoveStartingIn { page: u64, pages: u64 },
        SetVaddrOf { page: u64, vaddr: u64 },
        StartJournal,
    }

    const PAGE: u64 = 0x1000;

    fn op() -> impl Strategy<Value = Op> {
        let range = (0..64u64, 1..16u64);
        let vaddr = (0..0x1_0000u64).prop_map(|v| v * PAGE);
        prop_oneof![
            4 => (range.clone(), vaddr.clone(), any::<bool>()).prop_map(|((page, pages), vaddr, device_writes)| {
                Op::Insert { page, pages, vaddr, device_writes }
            }),
            3 => range.clone().prop_map(|(page, pages)| Op::Punch { page, pages }),
            1 => range.prop_map(|(page, pages)| Op::RemoveStartingIn { page, pages }),
            2 => (0..64u64, vaddr).prop_map(|(page, vaddr)| Op::SetVaddrOf { page, vaddr }),
            1 => Just(Op::StartJournal),
        ]
    }

    /// Runs `op` on `map` as the shim would (an insert makes room first).
    fn run(map: &mut IovaMap, op: &Op) {
        match *op {
            Op::Insert { page, pages, vaddr, device_writes } => {
                let (start, end) = (page * PAGE, (page + pages) * PAGE);
                map.punch(start, end);
                map.insert(start, end, Target { vaddr, device_reads: true, device_writes });
            }
            Op::Punch { page, pages } => map.punch(page * PAGE, (page + pages) * PAGE),
            Op::RemoveStartingIn { page, pages } => {
                map.remove_starting_in(page * PAGE, (page + pages) * PAGE);
            }
            Op::SetVaddrOf { page, vaddr } => {
                if let Some((start, end)) = map.containing(page * PAGE) {
                    assert!(map.set_vaddr(start, end, vaddr));
                }
            }
            Op::StartJournal => map.start_journal(),
        }
    }

    proptest! {
        #[test]
        fn a_snapshot_and_the_changes_after_it_rebuild_the_table(
            before in proptest::collection::vec(op(), 0..20),
            after in proptest::collection::vec(op(), 0..40),
            take_every in 1..8usize,
        ) {
            let mut source = IovaMap::default();
            for op in &before {
                run(&mut source, op);
            }
            source.start_journal();
            let mut copy = IovaMap::default();
            copy.insert(0x3000, 0x9000, RW); // Stale: the snapshot clears it.
            for (i, op) in after.iter().enumerate() {
                run(&mut source, op);
                if i % take_every == 0 {
                    for change in source.take_journal() {
                        prop_assert_eq!(copy.apply(&change), Ok(()));
                    }
                }
            }
            for change in source.take_journal() {
                prop_assert_eq!(copy.apply(&change), Ok(()));
            }
            prop_assert_eq!(copy.ranges(), source.ranges());
            for page in 0..82u64 {
                for device_writes in [false, true] {
                    let (iova, len) = (page * PAGE + 0x800, 3 * PAGE);
                    prop_assert_eq!(
                        copy.translate(iova, len, device_writes),
                        source.translate(iova, len, device_writes)
                    );
                }
            }
        }
    }
}
