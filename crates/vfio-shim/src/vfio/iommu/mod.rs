//! The IOMMU driver behind an emulated container, chosen by `VFIO_SET_IOMMU`:
//! [`type1`] (`vfio_iommu_type1`, v1/v2) or [`spapr_tce`]
//! (`vfio_iommu_spapr_tce`, v1/v2), with the kernel's argument checks and
//! errnos.
//!
//! Only bookkeeping is kept (what is mapped, registered, which windows
//! exist), in interval maps: every map and unmap is O(log n) and an unmap of
//! nothing allocates nothing, which matters because a booting pseries guest
//! issues ~262,000 `UNMAP_DMA` calls.

mod spapr_tce;
mod type1;

use std::collections::BTreeMap;

use vfio_eeh::backend::errno::{EINVAL, ENOTTY};
use vfio_eeh::uapi::{self, VfioIoctl, VfioIommuType1DmaMap, VfioIommuType1DmaUnmap};
use vfio_eeh_sim::nvme::DmaError;
use zerocopy::IntoBytes;

use self::spapr_tce::Spapr;
use self::type1::Type1;
use super::IoctlResult;
use crate::user::UserPtr;

/// Host page (and smallest IOMMU page) size.
const PAGE: u64 = 4096;

/// The size of a UAPI structure, as its `argsz` would say.
pub(super) fn size_u32<T>() -> u32 {
    u32::try_from(std::mem::size_of::<T>()).expect("VFIO structures are small")
}

/// What an interval holds, moved along when an unmap splits it.
trait Shift: Copy {
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
struct Target {
    vaddr: u64,
    device_reads: bool,
    device_writes: bool,
}

impl Target {
    fn of(map: &VfioIommuType1DmaMap) -> Self {
        Target {
            vaddr: map.vaddr,
            device_reads: map.flags & uapi::VFIO_DMA_MAP_FLAG_READ != 0,
            device_writes: map.flags & uapi::VFIO_DMA_MAP_FLAG_WRITE != 0,
        }
    }
}

impl Shift for Target {
    fn shifted(self, by: u64) -> Self {
        Target { vaddr: self.vaddr + by, ..self }
    }
}

/// Half-open intervals `[start, end)` keyed by start, disjoint, each with a
/// value.
#[derive(Debug)]
struct Ranges<T = ()> {
    map: BTreeMap<u64, (u64, T)>,
}

impl<T> Default for Ranges<T> {
    fn default() -> Self {
        Ranges { map: BTreeMap::new() }
    }
}

impl<T: Shift> Ranges<T> {
    /// The interval holding `addr`.
    fn containing(&self, addr: u64) -> Option<(u64, u64)> {
        self.entry(addr).map(|(s, e, _)| (s, e))
    }

    /// The interval holding `addr`, with its value.
    fn entry(&self, addr: u64) -> Option<(u64, u64, T)> {
        self.map.range(..=addr).next_back().map(|(&s, &(e, v))| (s, e, v)).filter(|&(_, e, _)| e > addr)
    }

    /// The end of the interval starting exactly at `start`.
    fn end_of(&self, start: u64) -> Option<u64> {
        self.map.get(&start).map(|&(e, _)| e)
    }

    fn overlaps(&self, start: u64, end: u64) -> bool {
        self.map.range(..end).next_back().is_some_and(|(_, &(e, _))| e > start)
    }

    fn insert(&mut self, start: u64, end: u64, value: T) {
        self.map.insert(start, (end, value));
    }

    /// Removes the intervals that start in `[start, end)`, returning their
    /// total size (type1: callers have checked none straddles `end`).
    fn remove_starting_in(&mut self, start: u64, end: u64) -> u64 {
        let mut total = 0;
        while let Some((&s, &(e, _))) = self.map.range(start..end).next() {
            self.map.remove(&s);
            total += e - s;
        }
        total
    }

    /// Clears `[start, end)`, splitting intervals that straddle its edges.
    fn punch(&mut self, start: u64, end: u64) {
        if let Some((s, e, v)) = self.entry(start).filter(|&(s, _, _)| s < start) {
            self.map.insert(s, (start, v));
            if e > end {
                self.map.insert(end, (e, v.shifted(end - s)));
                return;
            }
        }
        while let Some((&s, &(e, v))) = self.map.range(start..end).next() {
            self.map.remove(&s);
            if e > end {
                self.map.insert(end, (e, v.shifted(end - s)));
            }
        }
    }
}

impl Ranges<Target> {
    /// The process memory behind `len` bytes of DMA at `iova`, piece by
    /// piece (contiguous memory in one piece): the first address no mapping covers is `Unmapped`, a mapping
    /// without the direction `Direction`.
    fn translate(&self, iova: u64, len: u64, device_writes: bool) -> Result<Vec<(u64, u64)>, DmaError> {
        let mut pieces = Vec::new();
        let mut at = iova;
        let end = iova.checked_add(len).ok_or(DmaError::Unmapped { iova: u64::MAX })?;
        while at < end {
            let (s, e, target) = self.entry(at).ok_or(DmaError::Unmapped { iova: at })?;
            let allowed = if device_writes { target.device_writes } else { target.device_reads };
            if !allowed {
                return Err(DmaError::Direction { iova: at });
            }
            let n = e.min(end) - at;
            let vaddr = target.vaddr + (at - s);
            // Neighbouring mappings of neighbouring memory (one TCE per
            // page) make one piece, one copy.
            match pieces.last_mut() {
                Some((v, len)) if *v + *len == vaddr => *len += n,
                _ => pieces.push((vaddr, n)),
            }
            at += n;
        }
        Ok(pieces)
    }
}

/// The end of `[start, start + size)`, `EINVAL` on overflow.
fn end_of(start: u64, size: u64) -> Result<u64, i32> {
    start.checked_add(size).ok_or(EINVAL)
}

/// The IOMMU a container's `SET_IOMMU` chose.
#[derive(Debug)]
pub(super) enum Iommu {
    /// `VFIO_TYPE1_IOMMU` / `VFIO_TYPE1v2_IOMMU`.
    Type1(Type1),
    /// `VFIO_SPAPR_TCE_IOMMU` / `VFIO_SPAPR_TCE_v2_IOMMU`.
    Spapr(Spapr),
}

impl Iommu {
    /// The IOMMU of a `SET_IOMMU` type, or `None` for a type the emulated
    /// host does not offer.
    pub(super) fn of_type(iommu_type: u64, offered: &[u32]) -> Option<Iommu> {
        let t = u32::try_from(iommu_type).ok().filter(|t| offered.contains(t))?;
        Some(match t {
            uapi::VFIO_TYPE1_IOMMU | uapi::VFIO_TYPE1V2_IOMMU => {
                Iommu::Type1(Type1::new(t == uapi::VFIO_TYPE1V2_IOMMU))
            }
            _ => Iommu::Spapr(Spapr::new(t == uapi::VFIO_SPAPR_TCE_V2_IOMMU)),
        })
    }

    /// The process memory behind `len` bytes of the device's DMA at
    /// `iova` (`device_writes`: the device writes), as `(vaddr, bytes)`
    /// pieces, through type1 mappings or sPAPR TCEs.
    pub(super) fn translate(&self, iova: u64, len: u64, device_writes: bool) -> Result<Vec<(u64, u64)>, DmaError> {
        match self {
            Iommu::Type1(t) => t.mapped().translate(iova, len, device_writes),
            Iommu::Spapr(s) => s.mapped().translate(iova, len, device_writes),
        }
    }

    /// Number of mapped ranges.
    #[cfg(test)]
    fn mapped_ranges(&self) -> usize {
        match self {
            Iommu::Type1(t) => t.mapped_ranges(),
            Iommu::Spapr(s) => s.mapped_ranges(),
        }
    }

    /// The container ioctls the IOMMU driver serves once set: `ioctl` is one
    /// of the table's container entries; `ENOTTY` for what this driver does
    /// not know.
    pub(super) fn ioctl(&mut self, ioctl: VfioIoctl, arg: UserPtr<'_>) -> IoctlResult {
        match (self, ioctl) {
            (Iommu::Type1(t), uapi::IOMMU_GET_INFO | uapi::IOMMU_SPAPR_TCE_GET_INFO) => t.get_info(arg),
            (Iommu::Spapr(s), uapi::IOMMU_GET_INFO | uapi::IOMMU_SPAPR_TCE_GET_INFO) => s.get_info(arg),
            (iommu, uapi::IOMMU_MAP_DMA) => {
                let map: VfioIommuType1DmaMap = arg.read_struct(32)?;
                match iommu {
                    Iommu::Type1(t) => t.map(&map).map(|()| 0),
                    Iommu::Spapr(s) => s.map(&map),
                }
            }
            (iommu, uapi::IOMMU_UNMAP_DMA) => {
                let mut unmap: VfioIommuType1DmaUnmap = arg.read_struct(24)?;
                match iommu {
                    Iommu::Type1(t) => {
                        unmap.size = t.unmap(&unmap)?;
                        arg.write(unmap.as_bytes()).map(|()| 0)
                    }
                    Iommu::Spapr(s) => s.unmap(&unmap),
                }
            }
            (Iommu::Spapr(s), ioctl) => s.ioctl(ioctl, arg),
            (Iommu::Type1(_), _) => Err(ENOTTY),
        }
    }
}

/// The IOMMU ioctls on a buffer of the test's, as the kernel would see them.
#[cfg(test)]
mod testing {
    use zerocopy::{FromBytes, IntoBytes};

    use super::*;

    /// `ioctl` on `iommu` with `value` as its argument.
    pub(super) fn call<T: IntoBytes + FromBytes>(iommu: &mut Iommu, ioctl: VfioIoctl, value: &mut T) -> IoctlResult {
        iommu.ioctl(ioctl, UserPtr::of(value.as_mut_bytes()))
    }

    /// `MAP_DMA` read and write of `size` bytes at `iova` from `vaddr`.
    pub(super) fn map(iommu: &mut Iommu, iova: u64, size: u64, vaddr: u64) -> IoctlResult {
        let flags = uapi::VFIO_DMA_MAP_FLAG_READ | uapi::VFIO_DMA_MAP_FLAG_WRITE;
        let mut m = VfioIommuType1DmaMap { argsz: 32, flags, vaddr, iova, size };
        call(iommu, uapi::IOMMU_MAP_DMA, &mut m)
    }

    /// `UNMAP_DMA` of `size` bytes at `iova`: the size written back.
    pub(super) fn unmap(iommu: &mut Iommu, iova: u64, size: u64) -> Result<u64, i32> {
        let mut u = VfioIommuType1DmaUnmap { argsz: 24, flags: 0, iova, size };
        call(iommu, uapi::IOMMU_UNMAP_DMA, &mut u).map(|_| u.size)
    }
}

#[cfg(test)]
mod tests {
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

    #[test]
    fn only_offered_types_are_set_and_each_driver_knows_its_own_ioctls() {
        let type1 = [uapi::VFIO_TYPE1_IOMMU, uapi::VFIO_TYPE1V2_IOMMU];
        assert!(Iommu::of_type(u64::from(uapi::VFIO_SPAPR_TCE_V2_IOMMU), &type1).is_none());
        assert!(Iommu::of_type(u64::MAX, &type1).is_none());
        let mut t = Iommu::of_type(u64::from(uapi::VFIO_TYPE1_IOMMU), &type1).unwrap();
        let mut enable = [0u8; 8];
        assert_eq!(testing::call(&mut t, uapi::IOMMU_ENABLE, &mut enable), Err(ENOTTY), "sPAPR-only");
        assert_eq!(testing::call(&mut t, uapi::EEH_PE_OP, &mut enable), Err(ENOTTY), "not the driver's");
        assert_eq!(t.mapped_ranges(), 0);
    }
}
