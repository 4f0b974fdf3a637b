//! The IOMMU behind an emulated container: type1 (v1/v2) and sPAPR TCE
//! (v1/v2), with the kernel's argument checks and errnos.
//!
//! Only bookkeeping is kept (what is mapped, registered, which windows
//! exist), in interval maps: every map and unmap is O(log n) and an unmap of
//! nothing allocates nothing, which matters because a booting pseries guest
//! issues ~262,000 `UNMAP_DMA` calls.

use std::collections::BTreeMap;

use libc::ENOSPC;
use vfio_eeh::backend::errno::{EBUSY, EEXIST, EINVAL, ENOENT, ENOTTY, ENXIO, EPERM};
use vfio_eeh::uapi::{
    self, VfioIommuSpaprRegisterMemory, VfioIommuSpaprTceCreate, VfioIommuSpaprTceDdwInfo, VfioIommuSpaprTceInfo,
    VfioIommuSpaprTceRemove, VfioIommuType1DmaMap, VfioIommuType1DmaUnmap, VfioIommuType1Info,
};
use zerocopy::IntoBytes;

use crate::user::UserPtr;

/// `VFIO_IOMMU_INFO_PGSIZES`.
const INFO_PGSIZES: u32 = 1;
/// `VFIO_DMA_MAP_FLAG_READ | _WRITE`.
const MAP_RW: u32 = 0x3;
/// `VFIO_DMA_MAP_FLAG_VADDR`.
const MAP_VADDR: u32 = 0x4;
/// `VFIO_DMA_UNMAP_FLAG_ALL`.
const UNMAP_ALL: u32 = 0x2;
/// Host page (and smallest IOMMU page) size.
const PAGE: u64 = 4096;
/// type1: every power of two from 4 KiB.
const TYPE1_PGSIZES: u64 = !(PAGE - 1);
/// type1: `dma_entry_limit`.
const TYPE1_MAX_MAPPINGS: usize = 65535;
/// The default 32-bit DMA window of a PowerNV PE.
const DMA32_SIZE: u64 = 2 << 30;
/// POWER9 PHB4 under skiboot (`ibm,supported-tce-sizes`): 4 KiB, 64 KiB,
/// 2 MiB and 1 GiB TCE pages, as Linux 6.12 reports them.
const SPAPR_PGSIZES: u64 = (1 << 12) | (1 << 16) | (1 << 21) | (1 << 30);
/// IODA2: two windows per PE.
const SPAPR_MAX_WINDOWS: usize = 2;
/// IODA2: up to five TCE table levels.
const SPAPR_MAX_LEVELS: u32 = 5;
/// IODA2: the bus address of the second window.
const SPAPR_WINDOW1_START: u64 = 1 << 59;

pub(crate) fn size_u32<T>() -> u32 {
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

/// A type1 IOMMU.
#[derive(Debug, Default)]
pub(crate) struct Type1 {
    v2: bool,
    mapped: Ranges,
    count: usize,
}

/// A DMA window of an sPAPR container.
#[derive(Debug, Clone, Copy)]
struct Window {
    start: u64,
    size: u64,
    page_shift: u32,
}

impl Window {
    fn contains(&self, iova: u64) -> bool {
        iova >= self.start && iova - self.start < self.size
    }

    fn page_mask(&self) -> u64 {
        (1 << self.page_shift) - 1
    }
}

/// An sPAPR TCE IOMMU.
#[derive(Debug)]
pub(crate) struct Spapr {
    v2: bool,
    enabled: bool,
    windows: [Option<Window>; SPAPR_MAX_WINDOWS],
    registered: Ranges,
    mapped: Ranges,
}

/// The IOMMU a container's `SET_IOMMU` chose.
#[derive(Debug)]
pub(crate) enum Iommu {
    /// `VFIO_TYPE1_IOMMU` / `VFIO_TYPE1v2_IOMMU`.
    Type1(Type1),
    /// `VFIO_SPAPR_TCE_IOMMU` / `VFIO_SPAPR_TCE_v2_IOMMU`.
    Spapr(Spapr),
}

impl Iommu {
    /// The IOMMU of a `SET_IOMMU` type, or `None` for a type the emulated
    /// host does not offer.
    pub(crate) fn of_type(iommu_type: u64, offered: &[u32]) -> Option<Iommu> {
        let t = u32::try_from(iommu_type).ok().filter(|t| offered.contains(t))?;
        Some(match t {
            uapi::VFIO_TYPE1_IOMMU | uapi::VFIO_TYPE1V2_IOMMU => {
                Iommu::Type1(Type1 { v2: t == uapi::VFIO_TYPE1V2_IOMMU, ..Type1::default() })
            }
            _ => Iommu::Spapr(Spapr {
                v2: t == uapi::VFIO_SPAPR_TCE_V2_IOMMU,
                enabled: false,
                windows: [Some(Window { start: 0, size: DMA32_SIZE, page_shift: 12 }), None],
                registered: Ranges::default(),
                mapped: Ranges::default(),
            }),
        })
    }

    /// Number of mapped ranges.
    #[cfg(test)]
    pub(crate) fn mapped_ranges(&self) -> usize {
        match self {
            Iommu::Type1(t) => t.mapped.map.len(),
            Iommu::Spapr(s) => s.mapped.map.len(),
        }
    }

    /// `VFIO_IOMMU_GET_INFO` / `VFIO_IOMMU_SPAPR_TCE_GET_INFO` (container +12).
    pub(crate) fn get_info(&self, arg: UserPtr) -> Result<i64, i32> {
        match self {
            Iommu::Type1(_) => {
                let mut info: VfioIommuType1Info = arg.read_struct(16)?;
                if info.argsz < 16 {
                    return Err(EINVAL);
                }
                info.flags = INFO_PGSIZES;
                info.iova_pgsizes = TYPE1_PGSIZES;
                info.cap_offset = 0;
                let n = if info.argsz >= 20 { 20 } else { 16 };
                arg.write(&info.as_bytes()[..n]).map(|()| 0)
            }
            Iommu::Spapr(s) => {
                // The input flags are ignored; the answer's flags (in the
                // first 16 bytes) say DDW on v2 whatever argsz is.
                let mut info: VfioIommuSpaprTceInfo = arg.read_struct(16)?;
                if info.argsz < 16 {
                    return Err(EINVAL);
                }
                let dma32 = s.windows[0].filter(|w| w.start == 0).map_or(DMA32_SIZE, |w| w.size);
                info.dma32_window_start = 0;
                info.dma32_window_size = u32::try_from(dma32).unwrap_or(u32::MAX);
                (info.flags, info.ddw) = if s.v2 {
                    let ddw = VfioIommuSpaprTceDdwInfo {
                        pgsizes: SPAPR_PGSIZES,
                        max_dynamic_windows_supported: 2,
                        levels: SPAPR_MAX_LEVELS,
                    };
                    (uapi::VFIO_IOMMU_SPAPR_INFO_DDW, ddw)
                } else {
                    (0, VfioIommuSpaprTceDdwInfo::default())
                };
                let n = if info.argsz >= size_u32::<VfioIommuSpaprTceInfo>() {
                    std::mem::size_of::<VfioIommuSpaprTceInfo>()
                } else {
                    16
                };
                arg.write(&info.as_bytes()[..n]).map(|()| 0)
            }
        }
    }

    /// `VFIO_IOMMU_MAP_DMA`.
    pub(crate) fn map_dma(&mut self, arg: UserPtr) -> Result<i64, i32> {
        let map: VfioIommuType1DmaMap = arg.read_struct(32)?;
        match self {
            Iommu::Type1(t) => t.map(&map).map(|()| 0),
            Iommu::Spapr(s) => s.map(&map),
        }
    }

    /// `VFIO_IOMMU_UNMAP_DMA`.
    pub(crate) fn unmap_dma(&mut self, arg: UserPtr) -> Result<i64, i32> {
        let mut unmap: VfioIommuType1DmaUnmap = arg.read_struct(24)?;
        match self {
            Iommu::Type1(t) => {
                unmap.size = t.unmap(&unmap)?;
                arg.write(unmap.as_bytes()).map(|()| 0)
            }
            Iommu::Spapr(s) => s.unmap(&unmap),
        }
    }

    /// The sPAPR-only container ioctls (+15..=+20); `ENOTTY` on type1.
    pub(crate) fn spapr(&mut self, offset: u8, arg: UserPtr) -> Result<i64, i32> {
        let Iommu::Spapr(s) = self else { return Err(ENOTTY) };
        match offset {
            o if o == uapi::IOMMU_ENABLE.offset => s.enable(true),
            o if o == uapi::IOMMU_DISABLE.offset => s.enable(false),
            o if o == uapi::IOMMU_SPAPR_REGISTER_MEMORY.offset => s.register(arg, true),
            o if o == uapi::IOMMU_SPAPR_UNREGISTER_MEMORY.offset => s.register(arg, false),
            o if o == uapi::IOMMU_SPAPR_TCE_CREATE.offset => s.create(arg),
            o if o == uapi::IOMMU_SPAPR_TCE_REMOVE.offset => s.remove(arg),
            _ => Err(ENOTTY),
        }
        .map(|()| 0)
    }
}

impl Type1 {
    fn map(&mut self, map: &VfioIommuType1DmaMap) -> Result<(), i32> {
        if map.argsz < 32 || map.flags & !(MAP_RW | MAP_VADDR) != 0 {
            return Err(EINVAL);
        }
        if map.size == 0 || (map.iova | map.size | map.vaddr) & (PAGE - 1) != 0 {
            return Err(EINVAL);
        }
        let end = end_of(map.iova, map.size)?;
        end_of(map.vaddr, map.size)?;
        if map.flags & MAP_VADDR != 0 {
            // Updating the process address of an existing mapping.
            return match self.mapped.map.get(&map.iova) {
                Some(&e) if e == end => Ok(()),
                _ => Err(EINVAL),
            };
        }
        if self.mapped.overlaps(map.iova, end) {
            return Err(EEXIST);
        }
        if self.count >= TYPE1_MAX_MAPPINGS {
            return Err(ENOSPC);
        }
        self.mapped.insert(map.iova, end);
        self.count += 1;
        Ok(())
    }

    /// Returns the bytes unmapped.
    fn unmap(&mut self, unmap: &VfioIommuType1DmaUnmap) -> Result<u64, i32> {
        if unmap.argsz < 24 || unmap.flags & !UNMAP_ALL != 0 {
            return Err(EINVAL);
        }
        let (start, end) = if unmap.flags & UNMAP_ALL != 0 {
            if unmap.iova != 0 || unmap.size != 0 {
                return Err(EINVAL);
            }
            (0, u64::MAX)
        } else {
            if unmap.size == 0 || (unmap.iova | unmap.size) & (PAGE - 1) != 0 {
                return Err(EINVAL);
            }
            (unmap.iova, end_of(unmap.iova, unmap.size)?)
        };
        if self.v2 {
            // v2 refuses to bisect a mapping at either end.
            let bisects_start = self.mapped.containing(start).is_some_and(|(s, _)| s != start);
            let bisects_end = self.mapped.containing(end - 1).is_some_and(|(_, e)| e != end);
            if bisects_start || bisects_end {
                return Err(EINVAL);
            }
        } else if let Some((s, _)) = self.mapped.containing(start).filter(|&(s, _)| s != start) {
            // v1 unmaps whole mappings from the one holding `iova`.
            return Ok(self.remove(s, end));
        }
        Ok(self.remove(start, end))
    }

    fn remove(&mut self, start: u64, end: u64) -> u64 {
        let before = self.mapped.map.len();
        let bytes = self.mapped.remove_starting_in(start, end);
        self.count -= before - self.mapped.map.len();
        bytes
    }
}

impl Spapr {
    fn window_of(&self, iova: u64) -> Result<Window, i32> {
        self.windows.iter().flatten().find(|w| w.contains(iova)).copied().ok_or(ENXIO)
    }

    fn usable(&self) -> Result<(), i32> {
        if self.enabled || self.v2 {
            Ok(())
        } else {
            Err(EPERM)
        }
    }

    /// Linux checks the IOVA with `iommu_tce_check_ioba(...) || ...`, so a
    /// misaligned one is refused with the C truth value 1, not an errno.
    const MISALIGNED_IOVA: i64 = 1;

    /// The window holding `iova` (`ENXIO`), with `size` and `vaddr` aligned
    /// to its pages (`EINVAL`).
    fn window_for(&self, iova: u64, size: u64, vaddr: u64) -> Result<Window, i32> {
        let w = self.window_of(iova)?;
        if (size | vaddr) & w.page_mask() != 0 {
            return Err(EINVAL);
        }
        Ok(w)
    }

    fn map(&mut self, map: &VfioIommuType1DmaMap) -> Result<i64, i32> {
        self.usable()?;
        if map.argsz < 32 || map.flags & !MAP_RW != 0 {
            return Err(EINVAL);
        }
        let w = self.window_for(map.iova, map.size, map.vaddr)?;
        if map.flags & MAP_RW == 0 {
            // No DMA direction.
            return Err(EINVAL);
        }
        if map.iova & w.page_mask() != 0 {
            return Ok(Self::MISALIGNED_IOVA);
        }
        let end = end_of(map.iova, map.size)?;
        if end > w.start + w.size {
            return Err(EINVAL);
        }
        if self.v2 {
            let vend = end_of(map.vaddr, map.size)?;
            if self.registered.containing(map.vaddr).is_none_or(|(_, e)| e < vend) {
                return Err(EINVAL);
            }
        }
        self.mapped.punch(map.iova, end);
        self.mapped.insert(map.iova, end);
        Ok(0)
    }

    /// Clears `[iova, iova + size)`; a range running past the window's end
    /// is cleared up to it (Linux checks only the first page).
    fn unmap(&mut self, unmap: &VfioIommuType1DmaUnmap) -> Result<i64, i32> {
        self.usable()?;
        if unmap.argsz < 24 || unmap.flags != 0 {
            return Err(EINVAL);
        }
        let w = self.window_for(unmap.iova, unmap.size, 0)?;
        if unmap.iova & w.page_mask() != 0 {
            return Ok(Self::MISALIGNED_IOVA);
        }
        let end = end_of(unmap.iova, unmap.size)?.min(w.start + w.size);
        self.mapped.punch(unmap.iova, end);
        Ok(0)
    }

    fn enable(&mut self, on: bool) -> Result<(), i32> {
        if self.v2 {
            return Err(ENOTTY);
        }
        if on && self.enabled {
            return Err(EBUSY);
        }
        self.enabled = on;
        Ok(())
    }

    fn register(&mut self, arg: UserPtr, add: bool) -> Result<(), i32> {
        if !self.v2 {
            return Err(ENOTTY);
        }
        let reg: VfioIommuSpaprRegisterMemory = arg.read_struct(24)?;
        if reg.argsz < 24 || reg.flags != 0 {
            return Err(EINVAL);
        }
        if (reg.vaddr | reg.size) & (PAGE - 1) != 0 || reg.size == 0 {
            return Err(EINVAL);
        }
        let end = end_of(reg.vaddr, reg.size)?;
        let exact = self.registered.map.get(&reg.vaddr) == Some(&end);
        match (add, exact) {
            (true, true) => Err(EBUSY),
            (true, false) if self.registered.overlaps(reg.vaddr, end) => Err(EINVAL),
            (true, false) => {
                self.registered.insert(reg.vaddr, end);
                Ok(())
            }
            (false, true) => {
                self.registered.map.remove(&reg.vaddr);
                Ok(())
            }
            (false, false) => Err(ENOENT),
        }
    }

    fn create(&mut self, arg: UserPtr) -> Result<(), i32> {
        let mut create: VfioIommuSpaprTceCreate = arg.read_struct(40)?;
        if create.argsz < 40 || create.flags != 0 {
            return Err(EINVAL);
        }
        let slot = self.windows.iter().position(Option::is_none).ok_or(ENOSPC)?;
        let page_ok = create.page_shift < 64 && SPAPR_PGSIZES & (1 << create.page_shift) != 0;
        let size_ok = create.window_size.is_power_of_two() && create.window_size >> create.page_shift.min(63) > 0;
        if !page_ok || !size_ok || create.levels == 0 || create.levels > SPAPR_MAX_LEVELS {
            return Err(EINVAL);
        }
        let start = if slot == 0 { 0 } else { SPAPR_WINDOW1_START };
        end_of(start, create.window_size)?;
        self.windows[slot] = Some(Window { start, size: create.window_size, page_shift: create.page_shift });
        create.start_addr = start;
        arg.write(create.as_bytes())
    }

    fn remove(&mut self, arg: UserPtr) -> Result<(), i32> {
        let remove: VfioIommuSpaprTceRemove = arg.read_struct(16)?;
        if remove.argsz < 16 || remove.flags != 0 {
            return Err(EINVAL);
        }
        // Linux finds the window by any bus address inside it.
        let slot = self.windows.iter().position(|w| w.is_some_and(|w| w.contains(remove.start_addr))).ok_or(EINVAL)?;
        if let Some(w) = self.windows[slot].take() {
            self.mapped.punch(w.start, w.start + w.size);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call<T: IntoBytes + zerocopy::FromBytes>(
        value: &mut T,
        f: impl FnOnce(UserPtr) -> Result<i64, i32>,
    ) -> Result<i64, i32> {
        f(UserPtr::of(value.as_mut_bytes()))
    }

    fn map(iommu: &mut Iommu, iova: u64, size: u64, vaddr: u64) -> Result<i64, i32> {
        let mut m = VfioIommuType1DmaMap { argsz: 32, flags: MAP_RW, vaddr, iova, size };
        call(&mut m, |p| iommu.map_dma(p))
    }

    fn unmap(iommu: &mut Iommu, iova: u64, size: u64) -> Result<u64, i32> {
        let mut u = VfioIommuType1DmaUnmap { argsz: 24, flags: 0, iova, size };
        call(&mut u, |p| iommu.unmap_dma(p)).map(|_| u.size)
    }

    #[test]
    fn type1v2_keeps_linux_overlap_rules() {
        let mut t = Iommu::of_type(3, &[1, 3]).unwrap();
        assert_eq!(map(&mut t, 0x10000, 0x4000, 0x7000_0000), Ok(0));
        assert_eq!(map(&mut t, 0x12000, 0x4000, 0x7000_0000), Err(EEXIST));
        assert_eq!(map(&mut t, 0x20000, 0x1001, 0x7000_0000), Err(EINVAL));
        assert_eq!(map(&mut t, 0x14000, 0x1000, 0x7000_0000), Ok(0));
        assert_eq!(unmap(&mut t, 0x11000, 0x1000), Err(EINVAL), "bisects the first mapping");
        assert_eq!(unmap(&mut t, 0x10000, 0x2000), Err(EINVAL), "bisects at the end");
        assert_eq!(unmap(&mut t, 0x40000, 0x1000), Ok(0), "nothing mapped there");
        assert_eq!(unmap(&mut t, 0x10000, 0x5000), Ok(0x5000));
        assert_eq!(t.mapped_ranges(), 0);
        assert!(Iommu::of_type(7, &[1, 3]).is_none());
    }

    #[test]
    fn spapr_v2_windows_registration_and_cheap_unmaps() {
        let mut s = Iommu::of_type(7, &[2, 7]).unwrap();
        let mut info = VfioIommuSpaprTceInfo { argsz: 32, ..Default::default() };
        assert_eq!(call(&mut info, |p| s.get_info(p)), Ok(0));
        assert_eq!((info.flags, info.dma32_window_start, info.dma32_window_size), (1, 0, 0x8000_0000));
        assert_eq!((info.ddw.max_dynamic_windows_supported, info.ddw.levels), (2, 5));
        assert_ne!(info.ddw.pgsizes & 0x1000, 0);

        let mut reg = VfioIommuSpaprRegisterMemory { argsz: 24, flags: 0, vaddr: 0x7f00_0000_0000, size: 1 << 30 };
        assert_eq!(call(&mut reg, |p| s.spapr(17, p)), Ok(0));
        assert_eq!(call(&mut reg, |p| s.spapr(17, p)), Err(EBUSY));
        let mut remove = VfioIommuSpaprTceRemove { argsz: 16, flags: 0, start_addr: 0 };
        assert_eq!(call(&mut remove, |p| s.spapr(20, p)), Ok(0));
        assert_eq!(call(&mut remove, |p| s.spapr(20, p)), Err(EINVAL));
        assert_eq!(map(&mut s, 0, 0x1000, 0x7f00_0000_0000), Err(ENXIO), "no window");

        let mut create = VfioIommuSpaprTceCreate {
            argsz: 40,
            page_shift: 12,
            window_size: 1 << 30,
            levels: 2,
            ..Default::default()
        };
        assert_eq!(call(&mut create, |p| s.spapr(19, p)), Ok(0));
        assert_eq!(create.start_addr, 0);
        create.start_addr = 99;
        assert_eq!(call(&mut create, |p| s.spapr(19, p)), Ok(0));
        assert_eq!(create.start_addr, 1 << 59);
        assert_eq!(call(&mut create, |p| s.spapr(19, p)), Err(ENOSPC));

        assert_eq!(map(&mut s, 0x2000, 0x3000, 0x7f00_0000_0000), Ok(0));
        assert_eq!(map(&mut s, 0x2000, 0x1000, 0x1000), Err(EINVAL), "not registered");
        for page in 0..1000u64 {
            assert_eq!(unmap(&mut s, 0x10_0000 + page * 0x1000, 0x1000), Ok(0x1000), "sPAPR writes nothing back");
        }
        assert_eq!(unmap(&mut s, 0x3000, 0x1000), Ok(0x1000));
        assert_eq!(s.mapped_ranges(), 2, "the middle page was punched out");
        assert_eq!(unmap(&mut s, 0x4000_0000, 0x1000), Err(ENXIO), "beyond the 1 GiB window");
        assert_eq!(call(&mut reg, |p| s.spapr(18, p)), Ok(0));
        assert_eq!(call(&mut reg, |p| s.spapr(18, p)), Err(ENOENT));
        assert_eq!(call(&mut reg, |p| s.spapr(15, p)), Err(ENOTTY), "IOMMU_ENABLE is v1-only");
    }
}
