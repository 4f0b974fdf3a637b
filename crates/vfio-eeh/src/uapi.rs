//! The VFIO user ABI this project speaks: `#[repr(C)]` mirrors of the kernel
//! structures (padding declared, sizes and offsets pinned at compile time),
//! the constants, and the ioctl numbers for both encodings Linux uses.
//!
//! # ioctl numbers
//!
//! Every VFIO ioctl is `_IO(VFIO_TYPE, VFIO_BASE + n)`. `_IO` differs by
//! architecture: the generic layout (x86_64, arm64) has `_IOC_NONE` = 0 with
//! the direction at bits 30..31; powerpc has `_IOC_NONE` = 1 with the
//! direction at bits 29..31. [`Encoding`] computes both; [`VfioIoctl::native`]
//! picks the one of the target.
//!
//! # The address-mapping ioctl
//!
//! The seed design proposed `VFIO_DEVICE_SET_ADDR_MAPPING` =
//! `_IO(VFIO_TYPE, VFIO_BASE + 12)` on the device fd, with the argument
//! `struct vfio_addr_mapping { __u64 buid; __u8 bus, slot, func; }`
//! ([`VfioAddrMapping`]). Upstream has since given device-fd `+12` to
//! `VFIO_DEVICE_GET_PCI_HOT_RESET_INFO`, so that number cannot be served.
//!
//! Ours is [`DEVICE_ADDR_MAPPING`] = `_IO(VFIO_TYPE, VFIO_BASE + 27)`:
//! `VFIO_BASE + 27` = 0x7f is the last number below 0x80, where iommufd (which
//! shares the `';'` type) starts its commands, and upstream hands out VFIO
//! numbers upwards from the bottom (device fds use `+7..=+20` today), so it is
//! the number least likely to be taken next. It is free on every VFIO fd kind.
//!
//! Its argument follows the VFIO `argsz`/`flags` convention
//! ([`VfioDeviceAddrMapping`]): `argsz` lets the structure grow, and `flags`
//! selects exactly one of
//! [`VFIO_DEVICE_ADDR_MAPPING_SET`] (install the seed's payload),
//! [`VFIO_DEVICE_ADDR_MAPPING_GET`] (the kernel fills the payload in) and
//! [`VFIO_DEVICE_ADDR_MAPPING_CLEAR`] (remove the mapping), the way
//! `VFIO_DEVICE_FEATURE` selects GET/SET/PROBE. The payload keeps the seed's
//! layout byte for byte, at offset 8.

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// `VFIO_API_VERSION`, answered by `VFIO_GET_API_VERSION`.
pub const VFIO_API_VERSION: i32 = 0;
/// The ioctl type of every VFIO ioctl, `';'`.
pub const VFIO_TYPE: u8 = b';';
/// The first VFIO ioctl number.
pub const VFIO_BASE: u8 = 100;

/// Extension: type1 IOMMU.
pub const VFIO_TYPE1_IOMMU: u32 = 1;
/// Extension: sPAPR TCE IOMMU (v1).
pub const VFIO_SPAPR_TCE_IOMMU: u32 = 2;
/// Extension: type1 IOMMU v2.
pub const VFIO_TYPE1V2_IOMMU: u32 = 3;
/// Extension: EEH on the container.
pub const VFIO_EEH: u32 = 5;
/// Extension: sPAPR TCE IOMMU v2.
pub const VFIO_SPAPR_TCE_V2_IOMMU: u32 = 7;

/// Group status: the group is viable (all its devices are bound to VFIO).
pub const VFIO_GROUP_FLAGS_VIABLE: u32 = 1 << 0;
/// Group status: the group is attached to a container.
pub const VFIO_GROUP_FLAGS_CONTAINER_SET: u32 = 1 << 1;

/// Device info: the device supports `VFIO_DEVICE_RESET`.
pub const VFIO_DEVICE_FLAGS_RESET: u32 = 1 << 0;
/// Device info: a vfio-pci device.
pub const VFIO_DEVICE_FLAGS_PCI: u32 = 1 << 1;

/// Region info: readable.
pub const VFIO_REGION_INFO_FLAG_READ: u32 = 1 << 0;
/// Region info: writable.
pub const VFIO_REGION_INFO_FLAG_WRITE: u32 = 1 << 1;
/// Region info: mappable.
pub const VFIO_REGION_INFO_FLAG_MMAP: u32 = 1 << 2;

/// vfio-pci region index of BAR 0 (BARs 0..=5 follow in order).
pub const VFIO_PCI_BAR0_REGION_INDEX: u32 = 0;
/// vfio-pci region index of the expansion ROM.
pub const VFIO_PCI_ROM_REGION_INDEX: u32 = 6;
/// vfio-pci region index of config space.
pub const VFIO_PCI_CONFIG_REGION_INDEX: u32 = 7;
/// vfio-pci region index of VGA space.
pub const VFIO_PCI_VGA_REGION_INDEX: u32 = 8;
/// Number of fixed vfio-pci regions.
pub const VFIO_PCI_NUM_REGIONS: u32 = 9;

/// IRQ info: the IRQ can signal an eventfd.
pub const VFIO_IRQ_INFO_EVENTFD: u32 = 1 << 0;
/// IRQ info: the IRQ can be masked.
pub const VFIO_IRQ_INFO_MASKABLE: u32 = 1 << 1;
/// IRQ info: the IRQ is masked when it fires (level-triggered INTx).
pub const VFIO_IRQ_INFO_AUTOMASKED: u32 = 1 << 2;
/// IRQ info: the number of vectors cannot change while enabled.
pub const VFIO_IRQ_INFO_NORESIZE: u32 = 1 << 3;

/// Set IRQs: no data follows the header.
pub const VFIO_IRQ_SET_DATA_NONE: u32 = 1 << 0;
/// Set IRQs: the data is one `u8` boolean per vector.
pub const VFIO_IRQ_SET_DATA_BOOL: u32 = 1 << 1;
/// Set IRQs: the data is one `s32` eventfd per vector.
pub const VFIO_IRQ_SET_DATA_EVENTFD: u32 = 1 << 2;
/// Set IRQs: mask the vectors.
pub const VFIO_IRQ_SET_ACTION_MASK: u32 = 1 << 3;
/// Set IRQs: unmask the vectors.
pub const VFIO_IRQ_SET_ACTION_UNMASK: u32 = 1 << 4;
/// Set IRQs: trigger the vectors (or set their trigger eventfds).
pub const VFIO_IRQ_SET_ACTION_TRIGGER: u32 = 1 << 5;
/// Set IRQs: the data-type bits.
pub const VFIO_IRQ_SET_DATA_TYPE_MASK: u32 =
    VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_DATA_BOOL | VFIO_IRQ_SET_DATA_EVENTFD;
/// Set IRQs: the action bits.
pub const VFIO_IRQ_SET_ACTION_TYPE_MASK: u32 =
    VFIO_IRQ_SET_ACTION_MASK | VFIO_IRQ_SET_ACTION_UNMASK | VFIO_IRQ_SET_ACTION_TRIGGER;

/// vfio-pci IRQ index of INTx.
pub const VFIO_PCI_INTX_IRQ_INDEX: u32 = 0;
/// vfio-pci IRQ index of MSI.
pub const VFIO_PCI_MSI_IRQ_INDEX: u32 = 1;
/// vfio-pci IRQ index of MSI-X.
pub const VFIO_PCI_MSIX_IRQ_INDEX: u32 = 2;
/// vfio-pci IRQ index of the AER error notification.
pub const VFIO_PCI_ERR_IRQ_INDEX: u32 = 3;
/// vfio-pci IRQ index of the device-release request.
pub const VFIO_PCI_REQ_IRQ_INDEX: u32 = 4;
/// Number of vfio-pci IRQ indexes.
pub const VFIO_PCI_NUM_IRQS: u32 = 5;

/// Device feature: the bits holding the feature index.
pub const VFIO_DEVICE_FEATURE_MASK: u32 = 0xffff;
/// Device feature: read the feature's data.
pub const VFIO_DEVICE_FEATURE_GET: u32 = 1 << 16;
/// Device feature: write the feature's data.
pub const VFIO_DEVICE_FEATURE_SET: u32 = 1 << 17;
/// Device feature: only ask whether GET/SET are supported.
pub const VFIO_DEVICE_FEATURE_PROBE: u32 = 1 << 18;
/// Device feature index: enter low power (runtime PM).
pub const VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY: u32 = 3;
/// Device feature index: enter low power with a wakeup eventfd.
pub const VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY_WITH_WAKEUP: u32 = 4;
/// Device feature index: leave low power.
pub const VFIO_DEVICE_FEATURE_LOW_POWER_EXIT: u32 = 5;

/// type1 IOMMU info: `iova_pgsizes` is valid.
pub const VFIO_IOMMU_INFO_PGSIZES: u32 = 1 << 0;

/// DMA map: the device may read the memory.
pub const VFIO_DMA_MAP_FLAG_READ: u32 = 1 << 0;
/// DMA map: the device may write the memory.
pub const VFIO_DMA_MAP_FLAG_WRITE: u32 = 1 << 1;
/// DMA map (type1): update the process address of an existing mapping.
pub const VFIO_DMA_MAP_FLAG_VADDR: u32 = 1 << 2;
/// DMA unmap (type1): also return the dirty bitmap.
pub const VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP: u32 = 1 << 0;
/// DMA unmap (type1): unmap everything (`iova` and `size` must be 0).
pub const VFIO_DMA_UNMAP_FLAG_ALL: u32 = 1 << 1;
/// DMA unmap (type1): invalidate the process addresses, keep the mappings.
pub const VFIO_DMA_UNMAP_FLAG_VADDR: u32 = 1 << 2;

/// sPAPR TCE info flag: dynamic DMA windows supported.
pub const VFIO_IOMMU_SPAPR_INFO_DDW: u32 = 1 << 0;

/// EEH op: disable.
pub const VFIO_EEH_PE_DISABLE: u32 = 0;
/// EEH op: enable.
pub const VFIO_EEH_PE_ENABLE: u32 = 1;
/// EEH op: thaw MMIO.
pub const VFIO_EEH_PE_UNFREEZE_IO: u32 = 2;
/// EEH op: thaw DMA.
pub const VFIO_EEH_PE_UNFREEZE_DMA: u32 = 3;
/// EEH op: read the state (returned as the ioctl's value).
pub const VFIO_EEH_PE_GET_STATE: u32 = 4;
/// EEH op: deassert reset.
pub const VFIO_EEH_PE_RESET_DEACTIVATE: u32 = 5;
/// EEH op: hot reset.
pub const VFIO_EEH_PE_RESET_HOT: u32 = 6;
/// EEH op: fundamental reset.
pub const VFIO_EEH_PE_RESET_FUNDAMENTAL: u32 = 7;
/// EEH op: configure after reset.
pub const VFIO_EEH_PE_CONFIGURE: u32 = 8;
/// EEH op: inject an error.
pub const VFIO_EEH_PE_INJECT_ERR: u32 = 9;

/// PE state: normal.
pub const VFIO_EEH_PE_STATE_NORMAL: u32 = 0;
/// PE state: reset asserted.
pub const VFIO_EEH_PE_STATE_RESET: u32 = 1;
/// PE state: MMIO and DMA stopped.
pub const VFIO_EEH_PE_STATE_STOPPED: u32 = 2;
/// PE state: DMA stopped.
pub const VFIO_EEH_PE_STATE_STOPPED_DMA: u32 = 4;
/// PE state: unavailable.
pub const VFIO_EEH_PE_STATE_UNAVAIL: u32 = 5;

/// Error injection: 32-bit address (`EEH_ERR_TYPE_32`).
pub const EEH_ERR_TYPE_32: u32 = 0;
/// Error injection: 64-bit address (`EEH_ERR_TYPE_64`).
pub const EEH_ERR_TYPE_64: u32 = 1;
/// Lowest error function (`EEH_ERR_FUNC_MIN`).
pub const EEH_ERR_FUNC_MIN: u32 = 0;
/// Highest error function (`EEH_ERR_FUNC_MAX`).
pub const EEH_ERR_FUNC_MAX: u32 = 19;

/// The bytes the kernel copies first from a `vfio_eeh_pe_op`:
/// `offsetofend(op)`.
pub const VFIO_EEH_PE_OP_MINSZ: u32 = 12;
/// The bytes `INJECT_ERR` needs: `offsetofend(err.mask)`.
pub const VFIO_EEH_PE_OP_INJECT_SZ: u32 = 40;

/// Address-mapping flag: read the installed mapping into the payload.
pub const VFIO_DEVICE_ADDR_MAPPING_GET: u32 = 1 << 0;
/// Address-mapping flag: install the payload as the device's guest address.
pub const VFIO_DEVICE_ADDR_MAPPING_SET: u32 = 1 << 1;
/// Address-mapping flag: remove the device's mapping.
pub const VFIO_DEVICE_ADDR_MAPPING_CLEAR: u32 = 1 << 2;

/// One architecture's layout of ioctl numbers (`asm/ioctl.h`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Encoding {
    /// `_IOC_NONE`.
    pub none: u32,
    /// `_IOC_WRITE`.
    pub write: u32,
    /// `_IOC_READ`.
    pub read: u32,
    /// `_IOC_SIZEBITS`.
    pub size_bits: u32,
}

impl Encoding {
    /// `asm-generic/ioctl.h`: x86_64, arm64, riscv64, ...
    pub const GENERIC: Encoding = Encoding { none: 0, write: 1, read: 2, size_bits: 14 };
    /// `arch/powerpc/include/uapi/asm/ioctl.h` (32- and 64-bit, both endians).
    pub const POWERPC: Encoding = Encoding { none: 1, write: 4, read: 2, size_bits: 13 };

    /// The encoding of the architecture this is compiled for.
    pub const NATIVE: Encoding = if cfg!(any(target_arch = "powerpc", target_arch = "powerpc64")) {
        Encoding::POWERPC
    } else {
        Encoding::GENERIC
    };

    /// `_IOC(dir, type, nr, size)`.
    pub const fn ioc(self, dir: u32, ty: u8, nr: u8, size: u32) -> u32 {
        let size_shift = 16;
        let dir_shift = size_shift + self.size_bits;
        dir << dir_shift | (size & ((1 << self.size_bits) - 1)) << size_shift | (ty as u32) << 8 | nr as u32
    }

    /// `_IO(type, nr)`.
    pub const fn io(self, ty: u8, nr: u8) -> u32 {
        self.ioc(self.none, ty, nr, 0)
    }
}

/// Which kind of VFIO fd an ioctl is served on. Numbers repeat across kinds
/// (`+12` is three different ioctls), so dispatch is on (kind, number).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FdKind {
    /// `/dev/vfio/vfio`.
    Container,
    /// `/dev/vfio/<group>`.
    Group,
    /// A device fd from `VFIO_GROUP_GET_DEVICE_FD`.
    Device,
}

/// A VFIO ioctl: its name, the fd kind it is served on and `n` in
/// `_IO(VFIO_TYPE, VFIO_BASE + n)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VfioIoctl {
    /// The header's name.
    pub name: &'static str,
    /// The fd kind that serves it.
    pub fd: FdKind,
    /// Offset from `VFIO_BASE`.
    pub offset: u8,
}

impl VfioIoctl {
    const fn new(name: &'static str, fd: FdKind, offset: u8) -> Self {
        VfioIoctl { name, fd, offset }
    }

    /// The ioctl number (`nr` byte).
    pub const fn nr(self) -> u8 {
        VFIO_BASE + self.offset
    }

    /// The request number under `encoding`.
    pub const fn number(self, encoding: Encoding) -> u32 {
        encoding.io(VFIO_TYPE, self.nr())
    }

    /// The request number on the architecture this is compiled for.
    pub const fn native(self) -> u32 {
        self.number(Encoding::NATIVE)
    }
}

use FdKind::{Container, Device, Group};

/// `VFIO_GET_API_VERSION`.
pub const GET_API_VERSION: VfioIoctl = VfioIoctl::new("VFIO_GET_API_VERSION", Container, 0);
/// `VFIO_CHECK_EXTENSION`.
pub const CHECK_EXTENSION: VfioIoctl = VfioIoctl::new("VFIO_CHECK_EXTENSION", Container, 1);
/// `VFIO_SET_IOMMU`.
pub const SET_IOMMU: VfioIoctl = VfioIoctl::new("VFIO_SET_IOMMU", Container, 2);
/// `VFIO_GROUP_GET_STATUS`.
pub const GROUP_GET_STATUS: VfioIoctl = VfioIoctl::new("VFIO_GROUP_GET_STATUS", Group, 3);
/// `VFIO_GROUP_SET_CONTAINER`.
pub const GROUP_SET_CONTAINER: VfioIoctl = VfioIoctl::new("VFIO_GROUP_SET_CONTAINER", Group, 4);
/// `VFIO_GROUP_UNSET_CONTAINER`.
pub const GROUP_UNSET_CONTAINER: VfioIoctl = VfioIoctl::new("VFIO_GROUP_UNSET_CONTAINER", Group, 5);
/// `VFIO_GROUP_GET_DEVICE_FD`.
pub const GROUP_GET_DEVICE_FD: VfioIoctl = VfioIoctl::new("VFIO_GROUP_GET_DEVICE_FD", Group, 6);
/// `VFIO_DEVICE_GET_INFO`.
pub const DEVICE_GET_INFO: VfioIoctl = VfioIoctl::new("VFIO_DEVICE_GET_INFO", Device, 7);
/// `VFIO_DEVICE_GET_REGION_INFO`.
pub const DEVICE_GET_REGION_INFO: VfioIoctl = VfioIoctl::new("VFIO_DEVICE_GET_REGION_INFO", Device, 8);
/// `VFIO_DEVICE_GET_IRQ_INFO`.
pub const DEVICE_GET_IRQ_INFO: VfioIoctl = VfioIoctl::new("VFIO_DEVICE_GET_IRQ_INFO", Device, 9);
/// `VFIO_DEVICE_SET_IRQS`.
pub const DEVICE_SET_IRQS: VfioIoctl = VfioIoctl::new("VFIO_DEVICE_SET_IRQS", Device, 10);
/// `VFIO_DEVICE_RESET`.
pub const DEVICE_RESET: VfioIoctl = VfioIoctl::new("VFIO_DEVICE_RESET", Device, 11);
/// `VFIO_DEVICE_GET_PCI_HOT_RESET_INFO` (device `+12`).
pub const DEVICE_GET_PCI_HOT_RESET_INFO: VfioIoctl = VfioIoctl::new("VFIO_DEVICE_GET_PCI_HOT_RESET_INFO", Device, 12);
/// `VFIO_DEVICE_PCI_HOT_RESET`.
pub const DEVICE_PCI_HOT_RESET: VfioIoctl = VfioIoctl::new("VFIO_DEVICE_PCI_HOT_RESET", Device, 13);
/// `VFIO_DEVICE_FEATURE`.
pub const DEVICE_FEATURE: VfioIoctl = VfioIoctl::new("VFIO_DEVICE_FEATURE", Device, 17);
/// `VFIO_IOMMU_GET_INFO` (type1; container `+12`).
pub const IOMMU_GET_INFO: VfioIoctl = VfioIoctl::new("VFIO_IOMMU_GET_INFO", Container, 12);
/// `VFIO_IOMMU_SPAPR_TCE_GET_INFO` (sPAPR; the same number as `IOMMU_GET_INFO`).
pub const IOMMU_SPAPR_TCE_GET_INFO: VfioIoctl = VfioIoctl::new("VFIO_IOMMU_SPAPR_TCE_GET_INFO", Container, 12);
/// `VFIO_IOMMU_MAP_DMA`.
pub const IOMMU_MAP_DMA: VfioIoctl = VfioIoctl::new("VFIO_IOMMU_MAP_DMA", Container, 13);
/// `VFIO_IOMMU_UNMAP_DMA`.
pub const IOMMU_UNMAP_DMA: VfioIoctl = VfioIoctl::new("VFIO_IOMMU_UNMAP_DMA", Container, 14);
/// `VFIO_IOMMU_ENABLE` (sPAPR v1).
pub const IOMMU_ENABLE: VfioIoctl = VfioIoctl::new("VFIO_IOMMU_ENABLE", Container, 15);
/// `VFIO_IOMMU_DISABLE` (sPAPR v1).
pub const IOMMU_DISABLE: VfioIoctl = VfioIoctl::new("VFIO_IOMMU_DISABLE", Container, 16);
/// `VFIO_IOMMU_SPAPR_REGISTER_MEMORY` (the same number as type1 `DIRTY_PAGES`).
pub const IOMMU_SPAPR_REGISTER_MEMORY: VfioIoctl = VfioIoctl::new("VFIO_IOMMU_SPAPR_REGISTER_MEMORY", Container, 17);
/// `VFIO_IOMMU_SPAPR_UNREGISTER_MEMORY`.
pub const IOMMU_SPAPR_UNREGISTER_MEMORY: VfioIoctl =
    VfioIoctl::new("VFIO_IOMMU_SPAPR_UNREGISTER_MEMORY", Container, 18);
/// `VFIO_IOMMU_SPAPR_TCE_CREATE`.
pub const IOMMU_SPAPR_TCE_CREATE: VfioIoctl = VfioIoctl::new("VFIO_IOMMU_SPAPR_TCE_CREATE", Container, 19);
/// `VFIO_IOMMU_SPAPR_TCE_REMOVE`.
pub const IOMMU_SPAPR_TCE_REMOVE: VfioIoctl = VfioIoctl::new("VFIO_IOMMU_SPAPR_TCE_REMOVE", Container, 20);
/// `VFIO_EEH_PE_OP`.
pub const EEH_PE_OP: VfioIoctl = VfioIoctl::new("VFIO_EEH_PE_OP", Container, 21);
/// The seed's `VFIO_DEVICE_SET_ADDR_MAPPING` (`+12`): kept to document and
/// test the collision, never served.
pub const SEED_DEVICE_SET_ADDR_MAPPING: VfioIoctl = VfioIoctl::new("VFIO_DEVICE_SET_ADDR_MAPPING", Device, 12);
/// Our address-mapping ioctl on device fds (see the module docs).
pub const DEVICE_ADDR_MAPPING: VfioIoctl = VfioIoctl::new("VFIO_DEVICE_ADDR_MAPPING", Device, 27);

/// Every upstream ioctl above, for tables and tests.
pub const UPSTREAM_IOCTLS: &[VfioIoctl] = &[
    GET_API_VERSION,
    CHECK_EXTENSION,
    SET_IOMMU,
    GROUP_GET_STATUS,
    GROUP_SET_CONTAINER,
    GROUP_UNSET_CONTAINER,
    GROUP_GET_DEVICE_FD,
    DEVICE_GET_INFO,
    DEVICE_GET_REGION_INFO,
    DEVICE_GET_IRQ_INFO,
    DEVICE_SET_IRQS,
    DEVICE_RESET,
    DEVICE_GET_PCI_HOT_RESET_INFO,
    DEVICE_PCI_HOT_RESET,
    DEVICE_FEATURE,
    IOMMU_GET_INFO,
    IOMMU_SPAPR_TCE_GET_INFO,
    IOMMU_MAP_DMA,
    IOMMU_UNMAP_DMA,
    IOMMU_ENABLE,
    IOMMU_DISABLE,
    IOMMU_SPAPR_REGISTER_MEMORY,
    IOMMU_SPAPR_UNREGISTER_MEMORY,
    IOMMU_SPAPR_TCE_CREATE,
    IOMMU_SPAPR_TCE_REMOVE,
    EEH_PE_OP,
];

/// Derives for every UAPI struct: plain old data, readable from and
/// writable to bytes.
macro_rules! uapi_struct {
    ($(#[$meta:meta])* pub struct $name:ident { $($(#[$fmeta:meta])* pub $field:ident : $ty:ty),* $(,)? } size $size:expr) => {
        $(#[$meta])*
        #[repr(C)]
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
        pub struct $name { $($(#[$fmeta])* pub $field: $ty),* }
        const _: () = assert!(std::mem::size_of::<$name>() == $size);
    };
}

uapi_struct! {
    /// `struct vfio_group_status`.
    pub struct VfioGroupStatus { /** Caller's size. */ pub argsz: u32, /** `VFIO_GROUP_FLAGS_*`. */ pub flags: u32 } size 8
}

uapi_struct! {
    /// `struct vfio_device_info`.
    pub struct VfioDeviceInfo {
        /** Caller's size. */ pub argsz: u32,
        /** `VFIO_DEVICE_FLAGS_*`. */ pub flags: u32,
        /** Highest region index + 1. */ pub num_regions: u32,
        /** Highest IRQ index + 1. */ pub num_irqs: u32,
        /** Offset of the first capability. */ pub cap_offset: u32,
    } size 20
}

uapi_struct! {
    /// `struct vfio_region_info`.
    pub struct VfioRegionInfo {
        /** Caller's size. */ pub argsz: u32,
        /** `VFIO_REGION_INFO_FLAG_*`. */ pub flags: u32,
        /** Region index. */ pub index: u32,
        /** Offset of the first capability. */ pub cap_offset: u32,
        /** Region size in bytes. */ pub size: u64,
        /** Region offset within the device fd. */ pub offset: u64,
    } size 32
}

uapi_struct! {
    /// `struct vfio_irq_info`.
    pub struct VfioIrqInfo {
        /** Caller's size. */ pub argsz: u32,
        /** `VFIO_IRQ_INFO_*`. */ pub flags: u32,
        /** IRQ index. */ pub index: u32,
        /** Number of IRQs in the index. */ pub count: u32,
    } size 16
}

uapi_struct! {
    /// `struct vfio_irq_set` without its flexible `data[]`.
    pub struct VfioIrqSet {
        /** Caller's size, `data` included. */ pub argsz: u32,
        /** `VFIO_IRQ_SET_*`. */ pub flags: u32,
        /** IRQ index. */ pub index: u32,
        /** First IRQ. */ pub start: u32,
        /** Number of IRQs. */ pub count: u32,
    } size 20
}

uapi_struct! {
    /// `struct vfio_device_feature` without its flexible `data[]`.
    pub struct VfioDeviceFeature {
        /** Caller's size, `data` included. */ pub argsz: u32,
        /** The feature index and `VFIO_DEVICE_FEATURE_GET`/`SET`/`PROBE`. */ pub flags: u32,
    } size 8
}

uapi_struct! {
    /// `struct vfio_device_low_power_entry_with_wakeup`.
    pub struct VfioDeviceLowPowerEntryWithWakeup {
        /** Signalled when the device wakes up. */ pub wakeup_eventfd: i32,
        /** Reserved. */ pub reserved: u32,
    } size 8
}

uapi_struct! {
    /// `struct vfio_iommu_type1_info` (tail padding declared).
    pub struct VfioIommuType1Info {
        /** Caller's size. */ pub argsz: u32,
        /** `VFIO_IOMMU_INFO_*`. */ pub flags: u32,
        /** Supported IOVA page sizes. */ pub iova_pgsizes: u64,
        /** Offset of the first capability. */ pub cap_offset: u32,
        /** Tail padding. */ pub pad: u32,
    } size 24
}

uapi_struct! {
    /// `struct vfio_iommu_type1_dma_map`.
    pub struct VfioIommuType1DmaMap {
        /** Caller's size. */ pub argsz: u32,
        /** `VFIO_DMA_MAP_FLAG_*`. */ pub flags: u32,
        /** Process virtual address. */ pub vaddr: u64,
        /** IO virtual address. */ pub iova: u64,
        /** Size in bytes. */ pub size: u64,
    } size 32
}

uapi_struct! {
    /// `struct vfio_iommu_type1_dma_unmap` without its flexible `data[]`.
    pub struct VfioIommuType1DmaUnmap {
        /** Caller's size. */ pub argsz: u32,
        /** `VFIO_DMA_UNMAP_FLAG_*`. */ pub flags: u32,
        /** IO virtual address. */ pub iova: u64,
        /** Size in bytes (written back: bytes unmapped). */ pub size: u64,
    } size 24
}

uapi_struct! {
    /// `struct vfio_iommu_spapr_tce_ddw_info`.
    pub struct VfioIommuSpaprTceDdwInfo {
        /** Bitmap of supported page sizes. */ pub pgsizes: u64,
        /** Windows that can be created. */ pub max_dynamic_windows_supported: u32,
        /** TCE table levels supported. */ pub levels: u32,
    } size 16
}

uapi_struct! {
    /// `struct vfio_iommu_spapr_tce_info`.
    pub struct VfioIommuSpaprTceInfo {
        /** Caller's size. */ pub argsz: u32,
        /** `VFIO_IOMMU_SPAPR_INFO_DDW`. */ pub flags: u32,
        /** Start of the default 32-bit window. */ pub dma32_window_start: u32,
        /** Size of the default 32-bit window. */ pub dma32_window_size: u32,
        /** Dynamic DMA window facts. */ pub ddw: VfioIommuSpaprTceDdwInfo,
    } size 32
}

uapi_struct! {
    /// `struct vfio_iommu_spapr_register_memory`.
    pub struct VfioIommuSpaprRegisterMemory {
        /** Caller's size. */ pub argsz: u32,
        /** Must be 0. */ pub flags: u32,
        /** Process virtual address. */ pub vaddr: u64,
        /** Size in bytes. */ pub size: u64,
    } size 24
}

uapi_struct! {
    /// `struct vfio_iommu_spapr_tce_create`.
    pub struct VfioIommuSpaprTceCreate {
        /** Caller's size. */ pub argsz: u32,
        /** Must be 0. */ pub flags: u32,
        /** log2 of the IOMMU page size. */ pub page_shift: u32,
        /** Reserved. */ pub resv1: u32,
        /** Window size in bytes. */ pub window_size: u64,
        /** TCE table levels. */ pub levels: u32,
        /** Reserved. */ pub resv2: u32,
        /** Written back: the window's bus address. */ pub start_addr: u64,
    } size 40
}

uapi_struct! {
    /// `struct vfio_iommu_spapr_tce_remove`.
    pub struct VfioIommuSpaprTceRemove {
        /** Caller's size. */ pub argsz: u32,
        /** Must be 0. */ pub flags: u32,
        /** The window's bus address. */ pub start_addr: u64,
    } size 16
}

uapi_struct! {
    /// `struct vfio_eeh_pe_err`.
    pub struct VfioEehPeErr {
        /** `EEH_ERR_TYPE_*` (`type` in C). */ pub type_: u32,
        /** `EEH_ERR_FUNC_*`. */ pub func: u32,
        /** Address to match. */ pub addr: u64,
        /** Address mask. */ pub mask: u64,
    } size 24
}

uapi_struct! {
    /// `struct vfio_eeh_pe_op`; the anonymous union holds only `err`, and
    /// the 4 bytes of padding before it are declared.
    pub struct VfioEehPeOp {
        /** Caller's size; at least 12, 40 for `INJECT_ERR`. */ pub argsz: u32,
        /** Must be 0. */ pub flags: u32,
        /** `VFIO_EEH_PE_*` op. */ pub op: u32,
        /** Padding before the 8-aligned union. */ pub pad: u32,
        /** The union's `err` member. */ pub err: VfioEehPeErr,
    } size 40
}

impl VfioEehPeOp {
    /// An op with `argsz` = 40 and `flags` = 0.
    pub const fn new(op: u32, err: VfioEehPeErr) -> Self {
        VfioEehPeOp { argsz: VFIO_EEH_PE_OP_INJECT_SZ, flags: 0, op, pad: 0, err }
    }
}

uapi_struct! {
    /// The seed's `struct vfio_addr_mapping { __u64 buid; __u8 bus, slot, func; }`
    /// with its 5 bytes of tail padding declared.
    pub struct VfioAddrMapping {
        /** Virtual PHB unit id. */ pub buid: u64,
        /** Guest bus. */ pub bus: u8,
        /** Guest slot. */ pub slot: u8,
        /** Guest function. */ pub func: u8,
        /** Tail padding. */ pub pad: [u8; 5],
    } size 16
}

uapi_struct! {
    /// Our `struct vfio_device_addr_mapping`: the VFIO `argsz`/`flags` header
    /// followed by the seed's payload (see the module docs).
    pub struct VfioDeviceAddrMapping {
        /** Caller's size. */ pub argsz: u32,
        /** Exactly one `VFIO_DEVICE_ADDR_MAPPING_*`. */ pub flags: u32,
        /** The seed's payload. */ pub mapping: VfioAddrMapping,
    } size 24
}

/// Field offsets pinned at compile time where padding makes them matter.
const _: () = {
    assert!(std::mem::offset_of!(VfioEehPeOp, op) == 8);
    assert!(std::mem::offset_of!(VfioEehPeOp, err) == 16);
    assert!(std::mem::align_of::<VfioEehPeOp>() == 8);
    assert!(std::mem::size_of::<VfioEehPeOp>() == VFIO_EEH_PE_OP_INJECT_SZ as usize);
    assert!(std::mem::offset_of!(VfioEehPeErr, addr) == 8);
    assert!(std::mem::offset_of!(VfioEehPeErr, mask) == 16);
    assert!(std::mem::offset_of!(VfioAddrMapping, bus) == 8);
    assert!(std::mem::offset_of!(VfioAddrMapping, slot) == 9);
    assert!(std::mem::offset_of!(VfioAddrMapping, func) == 10);
    assert!(std::mem::offset_of!(VfioDeviceAddrMapping, mapping) == 8);
    assert!(std::mem::offset_of!(VfioRegionInfo, size) == 16);
    assert!(std::mem::offset_of!(VfioIommuSpaprTceInfo, ddw) == 16);
    assert!(std::mem::offset_of!(VfioIommuSpaprTceCreate, window_size) == 16);
    assert!(std::mem::offset_of!(VfioIommuSpaprTceCreate, start_addr) == 32);
};

#[cfg(test)]
mod tests;
