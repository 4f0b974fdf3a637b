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

/// Half-open intervals `[start, end)` keyed by start, disjoint.
#[derive(Debug, Default)]
struct Ranges {
    map: BTreeMap<u64, u64>,
}

impl Ranges {
    /// The interval holding `addr`.
    fn containing(&self, addr: u64) -> Option<(u64, u64)> {
        self.map.range(..=addr).next_back().map(|(&s, &e)| (s, e)).filter(|&(_, e)| e > addr)
    }

    fn overlaps(&self, start: u64, end: u64) -> bool {
        self.map.range(..end).next_back().is_some_and(|(_, &e)| e > start)
    }

    fn insert(&mut self, start: u64, end: u64) {
        self.map.insert(start, end);
    }

    /// Removes the intervals that start in `[start, end)`, returning their
    /// total size (type1: callers have checked none straddles `end`).
    fn remove_starting_in(&mut self, start: u64, end: u64) -> u64 {
        let mut total = 0;
        while let Some((&s, &e)) = self.map.range(start..end).next() {
            self.map.remove(&s);
            total += e - s;
        }
        total
    }

    /// Clears `[start, end)`, splitting intervals that straddle its edges.
    fn punch(&mut self, start: u64, end: u64) {
        if let Some((s, e)) = self.containing(start).filter(|&(s, _)| s < start) {
            self.map.insert(s, start);
            if e > end {
                self.map.insert(end, e);
                return;
            }
        }
        while let Some((&s, &e)) = self.map.range(start..end).next() {
            self.map.remove(&s);
            if e > end {
                self.map.insert(end, e);
            }
        }
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
    pub(super) fn ioctl(&mut self, ioctl: VfioIoctl, arg: UserPtr) -> IoctlResult {
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
        let mut ranges = Ranges::default();
        ranges.insert(0x1000, 0x5000);
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
