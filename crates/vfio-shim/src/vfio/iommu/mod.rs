//! The IOMMU driver behind an emulated container, chosen by `VFIO_SET_IOMMU`:
//! [`type1`] (`vfio_iommu_type1`, v1/v2) or [`spapr_tce`]
//! (`vfio_iommu_spapr_tce`, v1/v2), with the kernel's argument checks and
//! errnos.
//!
//! Only bookkeeping is kept (what is mapped, registered, which windows
//! exist), in interval maps ([`vfio_eeh_sim::iova`]): every map and unmap is
//! O(log n) and an unmap of nothing allocates nothing, which matters because
//! a booting pseries guest issues ~262,000 `UNMAP_DMA` calls. The mappings
//! are an [`IovaMap`], whose journal lets eehd keep a copy.

mod spapr_tce;
mod type1;

use vfio_eeh::backend::errno::{EINVAL, ENOTTY};
use vfio_eeh::uapi::{self, VfioIoctl, VfioIommuType1DmaMap, VfioIommuType1DmaUnmap};
use vfio_eeh_sim::iova::{IovaChange, IovaMap, Target};
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

/// Where `map` points its range: its process address and directions
/// (`VFIO_DMA_MAP_FLAG_READ`: the device reads; `_WRITE`: it writes).
fn target_of(map: &VfioIommuType1DmaMap) -> Target {
    Target {
        vaddr: map.vaddr,
        device_reads: map.flags & uapi::VFIO_DMA_MAP_FLAG_READ != 0,
        device_writes: map.flags & uapi::VFIO_DMA_MAP_FLAG_WRITE != 0,
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
        self.mapped().translate(iova, len, device_writes)
    }

    /// The type1 mappings or sPAPR TCEs.
    fn mapped(&self) -> &IovaMap {
        match self {
            Iommu::Type1(t) => t.mapped(),
            Iommu::Spapr(s) => s.mapped(),
        }
    }

    /// The mappings, for their journal.
    fn mapped_mut(&mut self) -> &mut IovaMap {
        match self {
            Iommu::Type1(t) => t.mapped_mut(),
            Iommu::Spapr(s) => s.mapped_mut(),
        }
    }

    /// Number of mapped ranges.
    #[cfg(test)]
    fn mapped_ranges(&self) -> usize {
        self.mapped().len()
    }

    /// Starts the journal of the mappings with a snapshot of them
    /// ([`IovaMap::start_journal`]).
    pub(super) fn start_journal(&mut self) {
        self.mapped_mut().start_journal();
    }

    /// The changes of the mappings since the journal was started or last
    /// taken ([`IovaMap::take_journal`]).
    pub(super) fn take_journal(&mut self) -> Vec<IovaChange> {
        self.mapped_mut().take_journal()
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
