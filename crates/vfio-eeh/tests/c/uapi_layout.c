/*
 * The VFIO UAPI that crates/vfio-eeh/src/uapi.rs mirrors, as the real headers
 * define it: every size, alignment, field offset and field size, every
 * constant and every ioctl number, each stored in a `const unsigned long`
 * global.
 *
 * tests/uapi_header.rs compiles this file to assembly (`-S`) with the host's
 * gcc and with powerpc64le-linux-gnu-gcc and reads each global's value from
 * its `.quad` line, so nothing is executed for powerpc. Symbols are named
 *
 *   sizeof__<struct>   alignof__<struct>
 *   offsetof__<struct>__<field>   fieldsize__<struct>__<field>
 *   value__<MACRO>
 *
 * and the Rust test expects exactly this set: add a line here and a row
 * there together.
 */
#include <stddef.h>
#include <linux/vfio.h>
#ifdef __powerpc__
#include <asm/eeh.h>
#endif

/* The seed's address-mapping proposal, as the seed wrote it. */
struct vfio_addr_mapping {
	__u64 buid;
	__u8 bus;
	__u8 slot;
	__u8 func;
};
#define VFIO_DEVICE_SET_ADDR_MAPPING _IO(VFIO_TYPE, VFIO_BASE + 12)

/* Ours: the VFIO argsz/flags header, then the seed's payload. */
struct vfio_device_addr_mapping {
	__u32 argsz;
	__u32 flags;
#define VFIO_DEVICE_ADDR_MAPPING_GET (1 << 0)
#define VFIO_DEVICE_ADDR_MAPPING_SET (1 << 1)
#define VFIO_DEVICE_ADDR_MAPPING_CLEAR (1 << 2)
	struct vfio_addr_mapping mapping;
};
#define VFIO_DEVICE_ADDR_MAPPING _IO(VFIO_TYPE, VFIO_BASE + 27)

/* What the kernel copies from a vfio_eeh_pe_op (vfio_iommu_spapr_tce.c). */
#define offsetofend(type, member) (offsetof(type, member) + sizeof(((type *)0)->member))
#define VFIO_EEH_PE_OP_MINSZ offsetofend(struct vfio_eeh_pe_op, op)
#define VFIO_EEH_PE_OP_INJECT_SZ offsetofend(struct vfio_eeh_pe_op, err.mask)

#define STRUCT(s)                                                   \
	const unsigned long sizeof__##s = sizeof(struct s);         \
	const unsigned long alignof__##s = _Alignof(struct s);
#define FIELD(s, f)                                                 \
	const unsigned long offsetof__##s##__##f = offsetof(struct s, f); \
	const unsigned long fieldsize__##s##__##f = sizeof(((struct s *)0)->f);
/* A flexible array member: no size, only where it starts. */
#define FLEX(s, f) const unsigned long offsetof__##s##__##f = offsetof(struct s, f);
/* `n` is pasted unexpanded into the name and expanded in the value. */
#define VALUE(n) const unsigned long value__##n = (n);

STRUCT(vfio_group_status)
FIELD(vfio_group_status, argsz)
FIELD(vfio_group_status, flags)

STRUCT(vfio_device_info)
FIELD(vfio_device_info, argsz)
FIELD(vfio_device_info, flags)
FIELD(vfio_device_info, num_regions)
FIELD(vfio_device_info, num_irqs)
FIELD(vfio_device_info, cap_offset)

STRUCT(vfio_region_info)
FIELD(vfio_region_info, argsz)
FIELD(vfio_region_info, flags)
FIELD(vfio_region_info, index)
FIELD(vfio_region_info, cap_offset)
FIELD(vfio_region_info, size)
FIELD(vfio_region_info, offset)

STRUCT(vfio_device_feature)
FIELD(vfio_device_feature, argsz)
FIELD(vfio_device_feature, flags)
FLEX(vfio_device_feature, data)

STRUCT(vfio_device_low_power_entry_with_wakeup)
FIELD(vfio_device_low_power_entry_with_wakeup, wakeup_eventfd)
FIELD(vfio_device_low_power_entry_with_wakeup, reserved)

STRUCT(vfio_irq_info)
FIELD(vfio_irq_info, argsz)
FIELD(vfio_irq_info, flags)
FIELD(vfio_irq_info, index)
FIELD(vfio_irq_info, count)

STRUCT(vfio_irq_set)
FIELD(vfio_irq_set, argsz)
FIELD(vfio_irq_set, flags)
FIELD(vfio_irq_set, index)
FIELD(vfio_irq_set, start)
FIELD(vfio_irq_set, count)
FLEX(vfio_irq_set, data)

STRUCT(vfio_iommu_type1_info)
FIELD(vfio_iommu_type1_info, argsz)
FIELD(vfio_iommu_type1_info, flags)
FIELD(vfio_iommu_type1_info, iova_pgsizes)
FIELD(vfio_iommu_type1_info, cap_offset)

STRUCT(vfio_iommu_type1_dma_map)
FIELD(vfio_iommu_type1_dma_map, argsz)
FIELD(vfio_iommu_type1_dma_map, flags)
FIELD(vfio_iommu_type1_dma_map, vaddr)
FIELD(vfio_iommu_type1_dma_map, iova)
FIELD(vfio_iommu_type1_dma_map, size)

STRUCT(vfio_iommu_type1_dma_unmap)
FIELD(vfio_iommu_type1_dma_unmap, argsz)
FIELD(vfio_iommu_type1_dma_unmap, flags)
FIELD(vfio_iommu_type1_dma_unmap, iova)
FIELD(vfio_iommu_type1_dma_unmap, size)
FLEX(vfio_iommu_type1_dma_unmap, data)

STRUCT(vfio_iommu_spapr_tce_ddw_info)
FIELD(vfio_iommu_spapr_tce_ddw_info, pgsizes)
FIELD(vfio_iommu_spapr_tce_ddw_info, max_dynamic_windows_supported)
FIELD(vfio_iommu_spapr_tce_ddw_info, levels)

STRUCT(vfio_iommu_spapr_tce_info)
FIELD(vfio_iommu_spapr_tce_info, argsz)
FIELD(vfio_iommu_spapr_tce_info, flags)
FIELD(vfio_iommu_spapr_tce_info, dma32_window_start)
FIELD(vfio_iommu_spapr_tce_info, dma32_window_size)
FIELD(vfio_iommu_spapr_tce_info, ddw)

STRUCT(vfio_iommu_spapr_register_memory)
FIELD(vfio_iommu_spapr_register_memory, argsz)
FIELD(vfio_iommu_spapr_register_memory, flags)
FIELD(vfio_iommu_spapr_register_memory, vaddr)
FIELD(vfio_iommu_spapr_register_memory, size)

STRUCT(vfio_iommu_spapr_tce_create)
FIELD(vfio_iommu_spapr_tce_create, argsz)
FIELD(vfio_iommu_spapr_tce_create, flags)
FIELD(vfio_iommu_spapr_tce_create, page_shift)
FIELD(vfio_iommu_spapr_tce_create, __resv1)
FIELD(vfio_iommu_spapr_tce_create, window_size)
FIELD(vfio_iommu_spapr_tce_create, levels)
FIELD(vfio_iommu_spapr_tce_create, __resv2)
FIELD(vfio_iommu_spapr_tce_create, start_addr)

STRUCT(vfio_iommu_spapr_tce_remove)
FIELD(vfio_iommu_spapr_tce_remove, argsz)
FIELD(vfio_iommu_spapr_tce_remove, flags)
FIELD(vfio_iommu_spapr_tce_remove, start_addr)

STRUCT(vfio_eeh_pe_err)
FIELD(vfio_eeh_pe_err, type)
FIELD(vfio_eeh_pe_err, func)
FIELD(vfio_eeh_pe_err, addr)
FIELD(vfio_eeh_pe_err, mask)

STRUCT(vfio_eeh_pe_op)
FIELD(vfio_eeh_pe_op, argsz)
FIELD(vfio_eeh_pe_op, flags)
FIELD(vfio_eeh_pe_op, op)
FIELD(vfio_eeh_pe_op, err)

STRUCT(vfio_addr_mapping)
FIELD(vfio_addr_mapping, buid)
FIELD(vfio_addr_mapping, bus)
FIELD(vfio_addr_mapping, slot)
FIELD(vfio_addr_mapping, func)

STRUCT(vfio_device_addr_mapping)
FIELD(vfio_device_addr_mapping, argsz)
FIELD(vfio_device_addr_mapping, flags)
FIELD(vfio_device_addr_mapping, mapping)

VALUE(VFIO_API_VERSION)
VALUE(VFIO_TYPE)
VALUE(VFIO_BASE)

VALUE(VFIO_TYPE1_IOMMU)
VALUE(VFIO_SPAPR_TCE_IOMMU)
VALUE(VFIO_TYPE1v2_IOMMU)
VALUE(VFIO_EEH)
VALUE(VFIO_SPAPR_TCE_v2_IOMMU)

VALUE(VFIO_GROUP_FLAGS_VIABLE)
VALUE(VFIO_GROUP_FLAGS_CONTAINER_SET)
VALUE(VFIO_DEVICE_FLAGS_RESET)
VALUE(VFIO_DEVICE_FLAGS_PCI)
VALUE(VFIO_REGION_INFO_FLAG_READ)
VALUE(VFIO_REGION_INFO_FLAG_WRITE)
VALUE(VFIO_REGION_INFO_FLAG_MMAP)
VALUE(VFIO_PCI_BAR0_REGION_INDEX)
VALUE(VFIO_PCI_ROM_REGION_INDEX)
VALUE(VFIO_PCI_CONFIG_REGION_INDEX)
VALUE(VFIO_PCI_VGA_REGION_INDEX)
VALUE(VFIO_PCI_NUM_REGIONS)
VALUE(VFIO_IOMMU_SPAPR_INFO_DDW)
VALUE(VFIO_IRQ_INFO_EVENTFD)
VALUE(VFIO_IRQ_INFO_MASKABLE)
VALUE(VFIO_IRQ_INFO_AUTOMASKED)
VALUE(VFIO_IRQ_INFO_NORESIZE)
VALUE(VFIO_IRQ_SET_DATA_NONE)
VALUE(VFIO_IRQ_SET_DATA_BOOL)
VALUE(VFIO_IRQ_SET_DATA_EVENTFD)
VALUE(VFIO_IRQ_SET_ACTION_MASK)
VALUE(VFIO_IRQ_SET_ACTION_UNMASK)
VALUE(VFIO_IRQ_SET_ACTION_TRIGGER)
VALUE(VFIO_IRQ_SET_DATA_TYPE_MASK)
VALUE(VFIO_IRQ_SET_ACTION_TYPE_MASK)
VALUE(VFIO_PCI_INTX_IRQ_INDEX)
VALUE(VFIO_PCI_MSI_IRQ_INDEX)
VALUE(VFIO_PCI_MSIX_IRQ_INDEX)
VALUE(VFIO_PCI_ERR_IRQ_INDEX)
VALUE(VFIO_PCI_REQ_IRQ_INDEX)
VALUE(VFIO_PCI_NUM_IRQS)
VALUE(VFIO_DEVICE_FEATURE_MASK)
VALUE(VFIO_DEVICE_FEATURE_GET)
VALUE(VFIO_DEVICE_FEATURE_SET)
VALUE(VFIO_DEVICE_FEATURE_PROBE)
VALUE(VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY)
VALUE(VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY_WITH_WAKEUP)
VALUE(VFIO_DEVICE_FEATURE_LOW_POWER_EXIT)
VALUE(VFIO_IOMMU_INFO_PGSIZES)
VALUE(VFIO_DMA_MAP_FLAG_READ)
VALUE(VFIO_DMA_MAP_FLAG_WRITE)
VALUE(VFIO_DMA_MAP_FLAG_VADDR)
VALUE(VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP)
VALUE(VFIO_DMA_UNMAP_FLAG_ALL)
VALUE(VFIO_DMA_UNMAP_FLAG_VADDR)

VALUE(VFIO_EEH_PE_DISABLE)
VALUE(VFIO_EEH_PE_ENABLE)
VALUE(VFIO_EEH_PE_UNFREEZE_IO)
VALUE(VFIO_EEH_PE_UNFREEZE_DMA)
VALUE(VFIO_EEH_PE_GET_STATE)
VALUE(VFIO_EEH_PE_RESET_DEACTIVATE)
VALUE(VFIO_EEH_PE_RESET_HOT)
VALUE(VFIO_EEH_PE_RESET_FUNDAMENTAL)
VALUE(VFIO_EEH_PE_CONFIGURE)
VALUE(VFIO_EEH_PE_INJECT_ERR)
VALUE(VFIO_EEH_PE_STATE_NORMAL)
VALUE(VFIO_EEH_PE_STATE_RESET)
VALUE(VFIO_EEH_PE_STATE_STOPPED)
VALUE(VFIO_EEH_PE_STATE_STOPPED_DMA)
VALUE(VFIO_EEH_PE_STATE_UNAVAIL)
VALUE(VFIO_EEH_PE_OP_MINSZ)
VALUE(VFIO_EEH_PE_OP_INJECT_SZ)

VALUE(VFIO_DEVICE_ADDR_MAPPING_GET)
VALUE(VFIO_DEVICE_ADDR_MAPPING_SET)
VALUE(VFIO_DEVICE_ADDR_MAPPING_CLEAR)

VALUE(VFIO_GET_API_VERSION)
VALUE(VFIO_CHECK_EXTENSION)
VALUE(VFIO_SET_IOMMU)
VALUE(VFIO_GROUP_GET_STATUS)
VALUE(VFIO_GROUP_SET_CONTAINER)
VALUE(VFIO_GROUP_UNSET_CONTAINER)
VALUE(VFIO_GROUP_GET_DEVICE_FD)
VALUE(VFIO_DEVICE_GET_INFO)
VALUE(VFIO_DEVICE_GET_REGION_INFO)
VALUE(VFIO_DEVICE_GET_IRQ_INFO)
VALUE(VFIO_DEVICE_SET_IRQS)
VALUE(VFIO_DEVICE_RESET)
VALUE(VFIO_DEVICE_GET_PCI_HOT_RESET_INFO)
VALUE(VFIO_DEVICE_PCI_HOT_RESET)
VALUE(VFIO_DEVICE_FEATURE)
VALUE(VFIO_IOMMU_GET_INFO)
VALUE(VFIO_IOMMU_SPAPR_TCE_GET_INFO)
VALUE(VFIO_IOMMU_MAP_DMA)
VALUE(VFIO_IOMMU_UNMAP_DMA)
VALUE(VFIO_IOMMU_ENABLE)
VALUE(VFIO_IOMMU_DISABLE)
VALUE(VFIO_IOMMU_SPAPR_REGISTER_MEMORY)
VALUE(VFIO_IOMMU_SPAPR_UNREGISTER_MEMORY)
VALUE(VFIO_IOMMU_SPAPR_TCE_CREATE)
VALUE(VFIO_IOMMU_SPAPR_TCE_REMOVE)
VALUE(VFIO_EEH_PE_OP)
VALUE(VFIO_DEVICE_SET_ADDR_MAPPING)
VALUE(VFIO_DEVICE_ADDR_MAPPING)

/* arch/powerpc/include/uapi/asm/eeh.h exists only on powerpc. */
#ifdef __powerpc__
VALUE(EEH_PE_STATE_NORMAL)
VALUE(EEH_PE_STATE_RESET)
VALUE(EEH_PE_STATE_STOPPED_IO_DMA)
VALUE(EEH_PE_STATE_STOPPED_DMA)
VALUE(EEH_PE_STATE_UNAVAIL)
VALUE(EEH_ERR_TYPE_32)
VALUE(EEH_ERR_TYPE_64)
VALUE(EEH_ERR_FUNC_MIN)
VALUE(EEH_ERR_FUNC_MAX)
VALUE(EEH_ERR_FUNC_LD_MEM_ADDR)
VALUE(EEH_ERR_FUNC_LD_MEM_DATA)
VALUE(EEH_ERR_FUNC_LD_IO_ADDR)
VALUE(EEH_ERR_FUNC_LD_IO_DATA)
VALUE(EEH_ERR_FUNC_LD_CFG_ADDR)
VALUE(EEH_ERR_FUNC_LD_CFG_DATA)
VALUE(EEH_ERR_FUNC_ST_MEM_ADDR)
VALUE(EEH_ERR_FUNC_ST_MEM_DATA)
VALUE(EEH_ERR_FUNC_ST_IO_ADDR)
VALUE(EEH_ERR_FUNC_ST_IO_DATA)
VALUE(EEH_ERR_FUNC_ST_CFG_ADDR)
VALUE(EEH_ERR_FUNC_ST_CFG_DATA)
VALUE(EEH_ERR_FUNC_DMA_RD_ADDR)
VALUE(EEH_ERR_FUNC_DMA_RD_DATA)
VALUE(EEH_ERR_FUNC_DMA_RD_MASTER)
VALUE(EEH_ERR_FUNC_DMA_RD_TARGET)
VALUE(EEH_ERR_FUNC_DMA_WR_ADDR)
VALUE(EEH_ERR_FUNC_DMA_WR_DATA)
VALUE(EEH_ERR_FUNC_DMA_WR_MASTER)
VALUE(EEH_ERR_FUNC_DMA_WR_TARGET)
#endif
