//! `src/uapi.rs` cross-checked against two crates that bindgen generated from
//! the kernel headers: `vfio-bindings` (struct layouts and constants) and
//! `linux-raw-sys` (ioctl numbers, one module per architecture).

#[macro_use]
mod common;

use std::collections::BTreeMap;
use std::mem::{align_of, size_of};
use std::path::PathBuf;
use std::process::Command;

use linux_raw_sys::ioctl as raw_ioctl;
use serde_json::Value;
use vfio_bindings::bindings::vfio as vb;
use vfio_eeh::uapi::{self, Encoding};

/// Each listed field's offset and size in `uapi::$ours` and `vb::$theirs`
/// (`ours = theirs` where the names differ).
macro_rules! same_fields {
    ($ours:ident = $theirs:ident { $($field:ident $(= $their_field:ident)?),* $(,)? }) => {
        $(
            assert_eq!(
                field!(uapi::$ours, $field),
                field!(vb::$theirs, $($their_field)? $field),
                concat!("(offset, size) of ", stringify!($ours), "::", stringify!($field)),
            );
        )*
    };
}

/// [`same_fields`] plus the size and alignment of the whole struct.
macro_rules! same_layout {
    ($ours:ident = $theirs:ident { $($fields:tt)* }) => {
        assert_eq!(size_of::<uapi::$ours>(), size_of::<vb::$theirs>(), concat!("size of ", stringify!($ours)));
        assert_eq!(align_of::<uapi::$ours>(), align_of::<vb::$theirs>(), concat!("align of ", stringify!($ours)));
        same_fields!($ours = $theirs { $($fields)* });
    };
}

#[test]
fn struct_layouts_match_vfio_bindings() {
    same_layout!(VfioGroupStatus = vfio_group_status { argsz, flags });
    same_layout!(VfioRegionInfo = vfio_region_info { argsz, flags, index, cap_offset, size, offset });
    same_layout!(VfioIrqInfo = vfio_irq_info { argsz, flags, index, count });
    same_layout!(VfioIrqSet = vfio_irq_set { argsz, flags, index, start, count });
    same_layout!(VfioDeviceFeature = vfio_device_feature { argsz, flags });
    same_layout!(
        VfioDeviceLowPowerEntryWithWakeup = vfio_device_low_power_entry_with_wakeup { wakeup_eventfd, reserved }
    );
    same_layout!(VfioIommuType1Info = vfio_iommu_type1_info { argsz, flags, iova_pgsizes, cap_offset, pad });
    same_layout!(VfioIommuType1DmaMap = vfio_iommu_type1_dma_map { argsz, flags, vaddr, iova, size });
    same_layout!(VfioIommuType1DmaUnmap = vfio_iommu_type1_dma_unmap { argsz, flags, iova, size });
    same_layout!(
        VfioIommuSpaprTceDdwInfo = vfio_iommu_spapr_tce_ddw_info { pgsizes, max_dynamic_windows_supported, levels }
    );
    same_layout!(
        VfioIommuSpaprTceInfo = vfio_iommu_spapr_tce_info { argsz, flags, dma32_window_start, dma32_window_size, ddw }
    );
    same_layout!(VfioIommuSpaprRegisterMemory = vfio_iommu_spapr_register_memory { argsz, flags, vaddr, size });
    same_layout!(VfioIommuSpaprTceCreate = vfio_iommu_spapr_tce_create {
        argsz,
        flags,
        page_shift,
        resv1 = __resv1,
        window_size,
        levels,
        resv2 = __resv2,
        start_addr,
    });
    same_layout!(VfioIommuSpaprTceRemove = vfio_iommu_spapr_tce_remove { argsz, flags, start_addr });
    same_layout!(VfioEehPeErr = vfio_eeh_pe_err { type_, func, addr, mask });
    // Our `pad` is the implicit padding before bindgen's anonymous union.
    same_layout!(VfioEehPeOp = vfio_eeh_pe_op { argsz, flags, op, err = __bindgen_anon_1 });
}

/// vfio-bindings 0.7 comes from a newer header than Debian 12's, one where
/// `struct vfio_device_info` ends with `__u32 pad` (size 24; kernel commit
/// a881b496941f, "vfio: align capability structures"). We mirror the header
/// this project builds against (size 20, pinned in `uapi_header.rs`); the
/// fields both have agree.
#[test]
fn device_info_matches_vfio_bindings_up_to_its_newer_tail_padding() {
    same_fields!(VfioDeviceInfo = vfio_device_info { argsz, flags, num_regions, num_irqs, cap_offset });
    assert_eq!(size_of::<uapi::VfioDeviceInfo>(), 20);
    assert_eq!(std::mem::offset_of!(vb::vfio_device_info, pad), 20);
    assert_eq!(size_of::<vb::vfio_device_info>(), 24);
}

#[test]
fn constants_match_vfio_bindings() {
    /// `uapi::$ours` against `vb::$theirs` (`vb::$ours` unless given).
    macro_rules! same_values {
        ($($ours:ident $(= $theirs:ident)?),* $(,)?) => {
            $(
                assert_eq!(
                    i128::from(uapi::$ours),
                    i128::from(same_values!(@theirs $($theirs)? $ours)),
                    stringify!($ours),
                );
            )*
        };
        (@theirs $theirs:ident $($ours:ident)?) => {
            vb::$theirs
        };
    }
    same_values!(
        VFIO_API_VERSION,
        VFIO_TYPE,
        VFIO_BASE,
        VFIO_TYPE1_IOMMU,
        VFIO_SPAPR_TCE_IOMMU,
        VFIO_TYPE1V2_IOMMU = VFIO_TYPE1v2_IOMMU,
        VFIO_EEH,
        VFIO_SPAPR_TCE_V2_IOMMU = VFIO_SPAPR_TCE_v2_IOMMU,
        VFIO_GROUP_FLAGS_VIABLE,
        VFIO_GROUP_FLAGS_CONTAINER_SET,
        VFIO_DEVICE_FLAGS_RESET,
        VFIO_DEVICE_FLAGS_PCI,
        VFIO_REGION_INFO_FLAG_READ,
        VFIO_REGION_INFO_FLAG_WRITE,
        VFIO_REGION_INFO_FLAG_MMAP,
        VFIO_PCI_BAR0_REGION_INDEX,
        VFIO_PCI_ROM_REGION_INDEX,
        VFIO_PCI_CONFIG_REGION_INDEX,
        VFIO_PCI_VGA_REGION_INDEX,
        VFIO_PCI_NUM_REGIONS,
        VFIO_IOMMU_SPAPR_INFO_DDW,
        VFIO_IRQ_INFO_EVENTFD,
        VFIO_IRQ_INFO_MASKABLE,
        VFIO_IRQ_INFO_AUTOMASKED,
        VFIO_IRQ_INFO_NORESIZE,
        VFIO_IRQ_SET_DATA_NONE,
        VFIO_IRQ_SET_DATA_BOOL,
        VFIO_IRQ_SET_DATA_EVENTFD,
        VFIO_IRQ_SET_ACTION_MASK,
        VFIO_IRQ_SET_ACTION_UNMASK,
        VFIO_IRQ_SET_ACTION_TRIGGER,
        VFIO_IRQ_SET_DATA_TYPE_MASK,
        VFIO_IRQ_SET_ACTION_TYPE_MASK,
        VFIO_PCI_INTX_IRQ_INDEX,
        VFIO_PCI_MSI_IRQ_INDEX,
        VFIO_PCI_MSIX_IRQ_INDEX,
        VFIO_PCI_ERR_IRQ_INDEX,
        VFIO_PCI_REQ_IRQ_INDEX,
        VFIO_PCI_NUM_IRQS,
        VFIO_DEVICE_FEATURE_MASK,
        VFIO_DEVICE_FEATURE_GET,
        VFIO_DEVICE_FEATURE_SET,
        VFIO_DEVICE_FEATURE_PROBE,
        VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY,
        VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY_WITH_WAKEUP,
        VFIO_DEVICE_FEATURE_LOW_POWER_EXIT,
        VFIO_IOMMU_INFO_PGSIZES,
        VFIO_DMA_MAP_FLAG_READ,
        VFIO_DMA_MAP_FLAG_WRITE,
        VFIO_DMA_MAP_FLAG_VADDR,
        VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP,
        VFIO_DMA_UNMAP_FLAG_ALL,
        VFIO_DMA_UNMAP_FLAG_VADDR,
        VFIO_EEH_PE_DISABLE,
        VFIO_EEH_PE_ENABLE,
        VFIO_EEH_PE_UNFREEZE_IO,
        VFIO_EEH_PE_UNFREEZE_DMA,
        VFIO_EEH_PE_GET_STATE,
        VFIO_EEH_PE_RESET_DEACTIVATE,
        VFIO_EEH_PE_RESET_HOT,
        VFIO_EEH_PE_RESET_FUNDAMENTAL,
        VFIO_EEH_PE_CONFIGURE,
        VFIO_EEH_PE_INJECT_ERR,
        VFIO_EEH_PE_STATE_NORMAL,
        VFIO_EEH_PE_STATE_RESET,
        VFIO_EEH_PE_STATE_STOPPED,
        VFIO_EEH_PE_STATE_STOPPED_DMA,
        VFIO_EEH_PE_STATE_UNAVAIL,
    );
}

/// linux-raw-sys's VFIO ioctl numbers for the architecture this is compiled
/// for (the only `ioctl` module its `cfg`s let us name).
fn compiled_raw_ioctls() -> BTreeMap<&'static str, u32> {
    macro_rules! named {
        ($($name:ident),* $(,)?) => {
            BTreeMap::from([$((stringify!($name), raw_ioctl::$name)),*])
        };
    }
    named!(
        VFIO_GET_API_VERSION,
        VFIO_CHECK_EXTENSION,
        VFIO_SET_IOMMU,
        VFIO_GROUP_GET_STATUS,
        VFIO_GROUP_SET_CONTAINER,
        VFIO_GROUP_UNSET_CONTAINER,
        VFIO_GROUP_GET_DEVICE_FD,
        VFIO_DEVICE_GET_INFO,
        VFIO_DEVICE_GET_REGION_INFO,
        VFIO_DEVICE_GET_IRQ_INFO,
        VFIO_DEVICE_SET_IRQS,
        VFIO_DEVICE_RESET,
        VFIO_DEVICE_GET_PCI_HOT_RESET_INFO,
        VFIO_DEVICE_PCI_HOT_RESET,
        VFIO_DEVICE_FEATURE,
        VFIO_IOMMU_GET_INFO,
        VFIO_IOMMU_SPAPR_TCE_GET_INFO,
        VFIO_IOMMU_MAP_DMA,
        VFIO_IOMMU_UNMAP_DMA,
        VFIO_IOMMU_ENABLE,
        VFIO_IOMMU_DISABLE,
        VFIO_IOMMU_SPAPR_REGISTER_MEMORY,
        VFIO_IOMMU_SPAPR_UNREGISTER_MEMORY,
        VFIO_IOMMU_SPAPR_TCE_CREATE,
        VFIO_IOMMU_SPAPR_TCE_REMOVE,
        VFIO_EEH_PE_OP,
    )
}

/// Every upstream ioctl's number under `encoding`, by name.
fn ours(encoding: Encoding) -> BTreeMap<&'static str, u32> {
    uapi::UPSTREAM_IOCTLS.iter().map(|ioctl| (ioctl.name, ioctl.number(encoding))).collect()
}

/// One line per name whose number differs or that only one side has.
fn differences<K: Ord + std::fmt::Display>(ours: &BTreeMap<K, u32>, theirs: &BTreeMap<K, u32>) -> Vec<String> {
    let names: std::collections::BTreeSet<_> = ours.keys().chain(theirs.keys()).collect();
    names
        .into_iter()
        .filter(|name| ours.get(name) != theirs.get(name))
        .map(|name| format!("{name}: ours {:#x?}, linux-raw-sys {:#x?}", ours.get(name), theirs.get(name)))
        .collect()
}

#[test]
fn ioctl_numbers_match_linux_raw_sys_for_this_architecture() {
    let problems = differences(&ours(Encoding::NATIVE), &compiled_raw_ioctls());
    assert!(problems.is_empty(), "{problems:#?}");
}

/// The `src` directory of the linux-raw-sys these tests are built with, from
/// `cargo metadata`. It resolves the whole workspace, so it may fetch what a
/// `-p vfio-eeh` build did not; `--filter-platform` keeps it to the host's
/// packages.
fn linux_raw_sys_src() -> PathBuf {
    let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml");
    let output = Command::new(env!("CARGO"))
        .args(["metadata", "--format-version=1", "--filter-platform=host-tuple", "--manifest-path"])
        .arg(manifest)
        .output()
        .expect("cargo runs");
    assert!(output.status.success(), "cargo metadata failed:\n{}", String::from_utf8_lossy(&output.stderr));
    let metadata: Value = serde_json::from_slice(&output.stdout).expect("cargo metadata prints JSON");

    let by_key = |list: &'static str, key: &'static str, wanted: &Value| {
        metadata[list]
            .as_array()
            .and_then(|items| items.iter().find(|item| &item[key] == wanted))
            .cloned()
            .unwrap_or_else(|| panic!("cargo metadata: no {list} entry with {key} = {wanted}"))
    };
    let nodes = &metadata["resolve"]["nodes"];
    let this = by_key("packages", "name", &Value::from(env!("CARGO_PKG_NAME")));
    let node = nodes.as_array().and_then(|nodes| nodes.iter().find(|node| node["id"] == this["id"])).expect("our node");
    let dep = node["deps"].as_array().and_then(|deps| deps.iter().find(|dep| dep["name"] == "linux_raw_sys"));
    let package = by_key("packages", "id", &dep.expect("linux-raw-sys is a dev-dependency")["pkg"]);
    let manifest_path = PathBuf::from(package["manifest_path"].as_str().expect("manifest_path"));
    manifest_path.parent().expect("manifest in a directory").join("src")
}

/// The `pub const NAME: u32 = N;` lines of one generated module.
fn read_u32_consts(path: &std::path::Path) -> BTreeMap<String, u32> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|err| panic!("{}: {err}", path.display()));
    text.lines()
        .filter_map(|line| {
            let (name, value) = line.strip_prefix("pub const ")?.strip_suffix(';')?.split_once(": u32 = ")?;
            Some((name.to_owned(), value.parse().ok()?))
        })
        .collect()
}

/// linux-raw-sys has a module for every architecture but compiles only the
/// host's, so the others are read from its source: powerpc and powerpc64 pin
/// [`Encoding::POWERPC`], the rest [`Encoding::GENERIC`].
#[test]
fn ioctl_numbers_match_linux_raw_sys_for_every_encoding() {
    let src = linux_raw_sys_src();
    let vfio_numbers = |arch: &str| {
        let mut numbers = read_u32_consts(&src.join(arch).join("ioctl.rs"));
        numbers.retain(|name, _| ours(Encoding::GENERIC).contains_key(name.as_str()));
        numbers
    };

    // The source read is the source compiled.
    let compiled: BTreeMap<_, _> = compiled_raw_ioctls().into_iter().map(|(name, n)| (name.to_owned(), n)).collect();
    assert_eq!(vfio_numbers(std::env::consts::ARCH), compiled);

    for (arch, encoding) in [
        ("x86_64", Encoding::GENERIC),
        ("aarch64", Encoding::GENERIC),
        ("riscv64", Encoding::GENERIC),
        ("powerpc", Encoding::POWERPC),
        ("powerpc64", Encoding::POWERPC),
    ] {
        let expected: BTreeMap<_, _> = ours(encoding).into_iter().map(|(name, n)| (name.to_owned(), n)).collect();
        let problems = differences(&expected, &vfio_numbers(arch));
        assert!(problems.is_empty(), "linux-raw-sys {arch}: {problems:#?}");
    }
}
