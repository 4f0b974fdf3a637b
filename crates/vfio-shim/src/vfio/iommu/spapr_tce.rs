//! `vfio_iommu_spapr_tce`: DMA windows of TCE pages (the default 32-bit one,
//! and up to two dynamic ones on v2), preregistered memory on v2, and
//! `IOMMU_ENABLE`/`DISABLE` on v1.

use libc::ENOSPC;
use vfio_eeh::backend::errno::{EBUSY, EINVAL, ENOENT, ENOTTY, ENXIO, EPERM};
use vfio_eeh::uapi::{
    self, VfioIoctl, VfioIommuSpaprRegisterMemory, VfioIommuSpaprTceCreate, VfioIommuSpaprTceDdwInfo,
    VfioIommuSpaprTceInfo, VfioIommuSpaprTceRemove, VfioIommuType1DmaMap, VfioIommuType1DmaUnmap,
};
use vfio_eeh_sim::iova::{IovaMap, Ranges};
use zerocopy::IntoBytes;

use super::{end_of, size_u32, target_of, PAGE};
use crate::user::UserPtr;
use crate::vfio::IoctlResult;

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
/// The `MAP_DMA` direction flags.
const MAP_RW: u32 = uapi::VFIO_DMA_MAP_FLAG_READ | uapi::VFIO_DMA_MAP_FLAG_WRITE;

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
pub(in crate::vfio) struct Spapr {
    v2: bool,
    enabled: bool,
    windows: [Option<Window>; SPAPR_MAX_WINDOWS],
    registered: Ranges,
    mapped: IovaMap,
}

impl Spapr {
    /// An sPAPR IOMMU with the default 32-bit window; `v2` for
    /// `VFIO_SPAPR_TCE_v2_IOMMU`.
    pub(super) fn new(v2: bool) -> Self {
        Spapr {
            v2,
            enabled: false,
            windows: [Some(Window { start: 0, size: DMA32_SIZE, page_shift: 12 }), None],
            registered: Ranges::default(),
            mapped: IovaMap::default(),
        }
    }

    /// The TCEs set, as ranges.
    pub(super) fn mapped(&self) -> &IovaMap {
        &self.mapped
    }

    /// The TCEs, for their journal.
    pub(super) fn mapped_mut(&mut self) -> &mut IovaMap {
        &mut self.mapped
    }

    /// `VFIO_IOMMU_SPAPR_TCE_GET_INFO`.
    pub(super) fn get_info(&self, arg: UserPtr<'_>) -> IoctlResult {
        // The input flags are ignored; the answer's flags (in the first 16
        // bytes) say DDW on v2 whatever argsz is.
        let mut info: VfioIommuSpaprTceInfo = arg.read_struct(16)?;
        if info.argsz < 16 {
            return Err(EINVAL);
        }
        let dma32 = self.windows[0].filter(|w| w.start == 0).map_or(DMA32_SIZE, |w| w.size);
        info.dma32_window_start = 0;
        info.dma32_window_size = u32::try_from(dma32).unwrap_or(u32::MAX);
        (info.flags, info.ddw) = if self.v2 {
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
        arg.write_prefix(info.as_bytes(), n).map(|()| 0)
    }

    /// The sPAPR-only container ioctls (`IOMMU_ENABLE` .. `SPAPR_TCE_REMOVE`);
    /// `ENOTTY` for the others.
    pub(super) fn ioctl(&mut self, ioctl: VfioIoctl, arg: UserPtr<'_>) -> IoctlResult {
        match ioctl {
            uapi::IOMMU_ENABLE => self.enable(true),
            uapi::IOMMU_DISABLE => self.enable(false),
            uapi::IOMMU_SPAPR_REGISTER_MEMORY => self.register(arg, true),
            uapi::IOMMU_SPAPR_UNREGISTER_MEMORY => self.register(arg, false),
            uapi::IOMMU_SPAPR_TCE_CREATE => self.create(arg),
            uapi::IOMMU_SPAPR_TCE_REMOVE => self.remove(arg),
            _ => Err(ENOTTY),
        }
        .map(|()| 0)
    }

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

    /// `VFIO_IOMMU_MAP_DMA`.
    pub(super) fn map(&mut self, map: &VfioIommuType1DmaMap) -> IoctlResult {
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
        self.mapped.insert(map.iova, end, target_of(map));
        Ok(0)
    }

    /// `VFIO_IOMMU_UNMAP_DMA`: clears `[iova, iova + size)`; a range running
    /// past the window's end is cleared up to it (Linux checks only the
    /// first page).
    pub(super) fn unmap(&mut self, unmap: &VfioIommuType1DmaUnmap) -> IoctlResult {
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

    fn register(&mut self, arg: UserPtr<'_>, add: bool) -> Result<(), i32> {
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
        let exact = self.registered.end_of(reg.vaddr) == Some(end);
        match (add, exact) {
            (true, true) => Err(EBUSY),
            (true, false) if self.registered.overlaps(reg.vaddr, end) => Err(EINVAL),
            (true, false) => {
                self.registered.insert(reg.vaddr, end, ());
                Ok(())
            }
            (false, true) => {
                self.registered.remove(reg.vaddr);
                Ok(())
            }
            (false, false) => Err(ENOENT),
        }
    }

    fn create(&mut self, arg: UserPtr<'_>) -> Result<(), i32> {
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
        *self.windows.get_mut(slot).ok_or(EINVAL)? =
            Some(Window { start, size: create.window_size, page_shift: create.page_shift });
        create.start_addr = start;
        arg.write(create.as_bytes())
    }

    fn remove(&mut self, arg: UserPtr<'_>) -> Result<(), i32> {
        let remove: VfioIommuSpaprTceRemove = arg.read_struct(16)?;
        if remove.argsz < 16 || remove.flags != 0 {
            return Err(EINVAL);
        }
        // Linux finds the window by any bus address inside it.
        let slot = self.windows.iter().position(|w| w.is_some_and(|w| w.contains(remove.start_addr))).ok_or(EINVAL)?;
        if let Some(w) = self.windows.get_mut(slot).and_then(Option::take) {
            self.mapped.punch(w.start, w.start + w.size);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{call, map, unmap};
    use super::super::Iommu;
    use super::*;

    #[test]
    fn spapr_v2_windows_registration_and_cheap_unmaps() {
        let mut s = Iommu::of_type(7, &[2, 7]).unwrap();
        let mut info = VfioIommuSpaprTceInfo { argsz: 32, ..Default::default() };
        assert_eq!(call(&mut s, uapi::IOMMU_SPAPR_TCE_GET_INFO, &mut info), Ok(0));
        assert_eq!((info.flags, info.dma32_window_start, info.dma32_window_size), (1, 0, 0x8000_0000));
        assert_eq!((info.ddw.max_dynamic_windows_supported, info.ddw.levels), (2, 5));
        assert_ne!(info.ddw.pgsizes & 0x1000, 0);

        let mut reg = VfioIommuSpaprRegisterMemory { argsz: 24, flags: 0, vaddr: 0x7f00_0000_0000, size: 1 << 30 };
        assert_eq!(call(&mut s, uapi::IOMMU_SPAPR_REGISTER_MEMORY, &mut reg), Ok(0));
        assert_eq!(call(&mut s, uapi::IOMMU_SPAPR_REGISTER_MEMORY, &mut reg), Err(EBUSY));
        let mut remove = VfioIommuSpaprTceRemove { argsz: 16, flags: 0, start_addr: 0 };
        assert_eq!(call(&mut s, uapi::IOMMU_SPAPR_TCE_REMOVE, &mut remove), Ok(0));
        assert_eq!(call(&mut s, uapi::IOMMU_SPAPR_TCE_REMOVE, &mut remove), Err(EINVAL));
        assert_eq!(map(&mut s, 0, 0x1000, 0x7f00_0000_0000), Err(ENXIO), "no window");

        let mut create = VfioIommuSpaprTceCreate {
            argsz: 40,
            page_shift: 12,
            window_size: 1 << 30,
            levels: 2,
            ..Default::default()
        };
        assert_eq!(call(&mut s, uapi::IOMMU_SPAPR_TCE_CREATE, &mut create), Ok(0));
        assert_eq!(create.start_addr, 0);
        create.start_addr = 99;
        assert_eq!(call(&mut s, uapi::IOMMU_SPAPR_TCE_CREATE, &mut create), Ok(0));
        assert_eq!(create.start_addr, 1 << 59);
        assert_eq!(call(&mut s, uapi::IOMMU_SPAPR_TCE_CREATE, &mut create), Err(ENOSPC));

        assert_eq!(map(&mut s, 0x2000, 0x3000, 0x7f00_0000_0000), Ok(0));
        assert_eq!(map(&mut s, 0x2000, 0x1000, 0x1000), Err(EINVAL), "not registered");
        for page in 0..1000u64 {
            assert_eq!(unmap(&mut s, 0x10_0000 + page * 0x1000, 0x1000), Ok(0x1000), "sPAPR writes nothing back");
        }
        assert_eq!(unmap(&mut s, 0x3000, 0x1000), Ok(0x1000));
        assert_eq!(s.mapped_ranges(), 2, "the middle page was punched out");
        assert_eq!(unmap(&mut s, 0x4000_0000, 0x1000), Err(ENXIO), "beyond the 1 GiB window");
        assert_eq!(call(&mut s, uapi::IOMMU_SPAPR_UNREGISTER_MEMORY, &mut reg), Ok(0));
        assert_eq!(call(&mut s, uapi::IOMMU_SPAPR_UNREGISTER_MEMORY, &mut reg), Err(ENOENT));
        assert_eq!(call(&mut s, uapi::IOMMU_ENABLE, &mut reg), Err(ENOTTY), "IOMMU_ENABLE is v1-only");
    }

    #[test]
    fn spapr_v1_needs_enable_and_answers_a_misaligned_iova_with_one() {
        let mut s = Iommu::of_type(2, &[2, 7]).unwrap();
        let mut nothing = [0u8; 8];
        assert_eq!(map(&mut s, 0, 0x1000, 0x1000), Err(EPERM), "not enabled");
        assert_eq!(call(&mut s, uapi::IOMMU_ENABLE, &mut nothing), Ok(0));
        assert_eq!(call(&mut s, uapi::IOMMU_ENABLE, &mut nothing), Err(EBUSY));
        assert_eq!(map(&mut s, 0x800, 0x1000, 0x1000), Ok(Spapr::MISALIGNED_IOVA));
        assert_eq!(map(&mut s, 0x1000, 0x1000, 0x1000), Ok(0), "v1 needs no registration");
        let mut info = VfioIommuSpaprTceInfo { argsz: 32, ..Default::default() };
        assert_eq!(call(&mut s, uapi::IOMMU_SPAPR_TCE_GET_INFO, &mut info), Ok(0));
        assert_eq!(info.flags, 0, "no DDW on v1");
        assert_eq!(call(&mut s, uapi::IOMMU_DISABLE, &mut nothing), Ok(0));
        assert_eq!(unmap(&mut s, 0x1000, 0x1000), Err(EPERM));
    }
}
