//! `vfio_iommu_type1`: page-aligned mappings that must not overlap, at most
//! `dma_entry_limit` of them; v2 refuses to bisect a mapping on unmap.

use libc::ENOSPC;
use vfio_eeh::backend::errno::{EEXIST, EINVAL};
use vfio_eeh::uapi::{self, VfioIommuType1DmaMap, VfioIommuType1DmaUnmap, VfioIommuType1Info};
use vfio_eeh_sim::iova::IovaMap;
use zerocopy::IntoBytes;

use super::{end_of, target_of, PAGE};
use crate::user::UserPtr;
use crate::vfio::IoctlResult;

/// Every power of two from 4 KiB.
const TYPE1_PGSIZES: u64 = !(PAGE - 1);
/// `dma_entry_limit`.
const TYPE1_MAX_MAPPINGS: usize = 65535;
/// The `MAP_DMA` flags type1 accepts.
const MAP_FLAGS: u32 = uapi::VFIO_DMA_MAP_FLAG_READ | uapi::VFIO_DMA_MAP_FLAG_WRITE | uapi::VFIO_DMA_MAP_FLAG_VADDR;

/// A type1 IOMMU.
#[derive(Debug, Default)]
pub(in crate::vfio) struct Type1 {
    v2: bool,
    mapped: IovaMap,
    count: usize,
}

impl Type1 {
    /// A type1 IOMMU with nothing mapped; `v2` for `VFIO_TYPE1v2_IOMMU`.
    pub(super) fn new(v2: bool) -> Self {
        Type1 { v2, ..Type1::default() }
    }

    /// The mappings.
    pub(super) fn mapped(&self) -> &IovaMap {
        &self.mapped
    }

    /// The mappings, for their journal.
    pub(super) fn mapped_mut(&mut self) -> &mut IovaMap {
        &mut self.mapped
    }

    /// `VFIO_IOMMU_GET_INFO`.
    pub(super) fn get_info(&self, arg: UserPtr<'_>) -> IoctlResult {
        let mut info: VfioIommuType1Info = arg.read_struct(16)?;
        if info.argsz < 16 {
            return Err(EINVAL);
        }
        info.flags = uapi::VFIO_IOMMU_INFO_PGSIZES;
        info.iova_pgsizes = TYPE1_PGSIZES;
        info.cap_offset = 0;
        let n = if info.argsz >= 20 { 20 } else { 16 };
        arg.write_prefix(info.as_bytes(), n).map(|()| 0)
    }

    /// `VFIO_IOMMU_MAP_DMA`.
    pub(super) fn map(&mut self, map: &VfioIommuType1DmaMap) -> Result<(), i32> {
        if map.argsz < 32 || map.flags & !MAP_FLAGS != 0 {
            return Err(EINVAL);
        }
        if map.size == 0 || (map.iova | map.size | map.vaddr) & (PAGE - 1) != 0 {
            return Err(EINVAL);
        }
        let end = end_of(map.iova, map.size)?;
        end_of(map.vaddr, map.size)?;
        if map.flags & uapi::VFIO_DMA_MAP_FLAG_VADDR != 0 {
            // Updating the process address of an existing mapping.
            return if self.mapped.set_vaddr(map.iova, end, map.vaddr) { Ok(()) } else { Err(EINVAL) };
        }
        if self.mapped.overlaps(map.iova, end) {
            return Err(EEXIST);
        }
        if self.count >= TYPE1_MAX_MAPPINGS {
            return Err(ENOSPC);
        }
        self.mapped.insert(map.iova, end, target_of(map));
        self.count += 1;
        Ok(())
    }

    /// `VFIO_IOMMU_UNMAP_DMA`: returns the bytes unmapped.
    pub(super) fn unmap(&mut self, unmap: &VfioIommuType1DmaUnmap) -> Result<u64, i32> {
        let all = uapi::VFIO_DMA_UNMAP_FLAG_ALL;
        if unmap.argsz < 24 || unmap.flags & !all != 0 {
            return Err(EINVAL);
        }
        let (start, end) = if unmap.flags & all != 0 {
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
        let before = self.mapped.len();
        let bytes = self.mapped.remove_starting_in(start, end);
        self.count -= before - self.mapped.len();
        bytes
    }
}

#[cfg(test)]
mod tests {
    use vfio_eeh::backend::errno::EINVAL;

    use super::super::testing::{call, map, unmap};
    use super::super::Iommu;
    use super::*;

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
    fn type1v1_unmaps_whole_mappings_and_all_clears_everything() {
        let mut t = Iommu::of_type(1, &[1, 3]).unwrap();
        assert_eq!(map(&mut t, 0x10000, 0x4000, 0x7000_0000), Ok(0));
        assert_eq!(unmap(&mut t, 0x11000, 0x1000), Ok(0x4000), "v1 takes the whole mapping");
        assert_eq!(map(&mut t, 0x10000, 0x1000, 0x7000_0000), Ok(0));
        assert_eq!(map(&mut t, 0x20000, 0x1000, 0x7000_0000), Ok(0));
        let mut all = VfioIommuType1DmaUnmap { argsz: 24, flags: uapi::VFIO_DMA_UNMAP_FLAG_ALL, iova: 0, size: 0 };
        assert_eq!(call(&mut t, uapi::IOMMU_UNMAP_DMA, &mut all), Ok(0));
        assert_eq!(all.size, 0x2000, "the bytes unmapped are written back");
        assert_eq!(t.mapped_ranges(), 0);

        let mut info = VfioIommuType1Info { argsz: 24, ..Default::default() };
        assert_eq!(call(&mut t, uapi::IOMMU_GET_INFO, &mut info), Ok(0));
        assert_eq!((info.flags, info.iova_pgsizes), (uapi::VFIO_IOMMU_INFO_PGSIZES, TYPE1_PGSIZES));
    }
}
