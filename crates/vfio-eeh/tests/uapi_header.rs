//! `src/uapi.rs` checked against the real `<linux/vfio.h>`, for this machine
//! and for powerpc64le.
//!
//! `tests/c/uapi_layout.c` stores every size, alignment, field offset and
//! size, constant and ioctl number the Rust side mirrors in a
//! `const unsigned long` global. Each compiler turns it into assembly (`-S`),
//! where a global is its label followed by its value (`.quad N`, `.8byte N`,
//! or `.zero 8` for 0); [`parse_assembly`] reads those and [`compare`] holds
//! them against the one table of Rust values, [`expected`]. Nothing is run
//! for powerpc, so no emulator is needed.
//!
//! A missing compiler or header fails the test, naming the Debian package to
//! install (`scripts/test-all.sh` installs them).

#[macro_use]
mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;
use std::io::ErrorKind;
use std::mem::{align_of, size_of};
use std::path::{Path, PathBuf};
use std::process::Command;

use vfio_eeh::ops::{ErrFunc, PeState};
use vfio_eeh::uapi::{self, Encoding, VfioIoctl};

/// A C compiler, the headers it sees, and the Debian packages behind both.
#[derive(Debug, Clone, Copy)]
struct Toolchain {
    /// What the messages call it.
    name: &'static str,
    compiler: &'static str,
    compiler_package: &'static str,
    header_package: &'static str,
    encoding: Encoding,
    /// Whether `asm/eeh.h` exists.
    powerpc: bool,
}

/// The machine's own compiler and `/usr/include`.
const HOST: Toolchain = Toolchain {
    name: "host",
    compiler: "gcc",
    compiler_package: "gcc",
    header_package: "linux-libc-dev",
    encoding: Encoding::NATIVE,
    powerpc: cfg!(any(target_arch = "powerpc", target_arch = "powerpc64")),
};

/// Debian's cross compiler and its `/usr/powerpc64le-linux-gnu/include`.
const PPC64LE: Toolchain = Toolchain {
    name: "powerpc64le",
    compiler: "powerpc64le-linux-gnu-gcc",
    compiler_package: "gcc-powerpc64le-linux-gnu",
    header_package: "libc6-dev-ppc64el-cross",
    encoding: Encoding::POWERPC,
    powerpc: true,
};

fn manifest_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn c_source() -> PathBuf {
    manifest_dir().join("tests/c/uapi_layout.c")
}

/// `tests/c/uapi_layout.c` compiled to assembly by `toolchain`.
fn assemble(toolchain: &Toolchain) -> String {
    let source = c_source();
    let Toolchain { compiler, compiler_package, header_package, .. } = toolchain;
    let mut command = Command::new(compiler);
    command.args(["-std=gnu11", "-Wall", "-Wextra", "-S", "-o", "-"]).arg(&source);
    let output = match command.output() {
        Ok(output) => output,
        Err(err) if err.kind() == ErrorKind::NotFound => {
            panic!("{compiler} is not installed: install the Debian package {compiler_package} (and {header_package})")
        }
        Err(err) => panic!("Cannot run {compiler}: {err}"),
    };
    assert!(
        output.status.success(),
        "{compiler} cannot compile {}; if a header is missing, install the Debian package {header_package}:\n{}",
        source.display(),
        String::from_utf8_lossy(&output.stderr),
    );
    String::from_utf8(output.stdout).expect("gcc writes ASCII assembly")
}

/// Every 8-byte global in `assembly`: a `NAME:` label whose next line is
/// `.quad N`, `.8byte N` or `.zero 8`. Other labels are skipped.
fn parse_assembly(assembly: &str) -> Result<BTreeMap<String, u64>, String> {
    let mut values = BTreeMap::new();
    let mut label = None;
    for line in assembly.lines().map(str::trim) {
        if let Some(name) = line.strip_suffix(':') {
            label = Some(name);
            continue;
        }
        let Some(name) = label.take() else { continue };
        let value = match line.split_whitespace().collect::<Vec<_>>()[..] {
            [".quad" | ".8byte", number] => parse_number(number).map_err(|err| format!("{name}: {err}"))?,
            [".zero", "8"] => 0,
            _ => continue,
        };
        if values.insert(name.to_owned(), value).is_some() {
            return Err(format!("{name}: defined twice"));
        }
    }
    Ok(values)
}

/// A decimal or `0x` number as the assembler takes it; negative numbers are
/// the two's complement of the 64-bit value.
fn parse_number(text: &str) -> Result<u64, String> {
    let (negative, digits) = match text.strip_prefix('-') {
        Some(digits) => (true, digits),
        None => (false, text),
    };
    let magnitude = match digits.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => digits.parse(),
    }
    .map_err(|err| format!("Bad number {text:?}: {err}"))?;
    Ok(if negative { magnitude.wrapping_neg() } else { magnitude })
}

/// What the Rust side says one C global holds.
#[derive(Debug, Clone)]
struct Expected {
    /// The global in `tests/c/uapi_layout.c`.
    symbol: String,
    /// The Rust item it checks, for messages and the coverage test.
    rust: String,
    value: Value,
    /// Defined only by powerpc headers (`asm/eeh.h`).
    powerpc_only: bool,
}

#[derive(Debug, Clone, Copy)]
enum Value {
    /// The same on every architecture.
    Fixed(i128),
    /// An ioctl number, which depends on the encoding.
    Ioctl(VfioIoctl),
}

impl Expected {
    fn value(&self, encoding: Encoding) -> i128 {
        match self.value {
            Value::Fixed(value) => value,
            Value::Ioctl(ioctl) => ioctl.number(encoding).into(),
        }
    }
}

/// The rows of [`expected`], built by the macros below.
#[derive(Default)]
struct Table {
    rows: Vec<Expected>,
    /// Set while adding the rows of `asm/eeh.h`.
    powerpc_only: bool,
}

impl Table {
    fn push(&mut self, symbol: String, rust: String, value: Value) {
        self.rows.push(Expected { symbol, rust, value, powerpc_only: self.powerpc_only });
    }

    fn fixed(&mut self, symbol: String, rust: String, value: impl TryInto<i128, Error: Debug>) {
        self.push(symbol, rust, Value::Fixed(value.try_into().expect("every UAPI value fits in an i128")));
    }
}

/// The first of one or two names, as a string: `first_name!(rename name)`.
macro_rules! first_name {
    ($name:ident $($default:ident)?) => {
        stringify!($name)
    };
}

/// Size, alignment, and each listed field's offset and size of `uapi::$rust`
/// against `struct $c`; a field whose C name differs is written
/// `rust_name = c_name`. Padding the Rust side declares where C has none is
/// left out: the size covers it.
macro_rules! layout {
    ($table:ident, $rust:ident = $c:ident { $($field:ident $(= $c_field:ident)?),* $(,)? }) => {
        let rust = stringify!($rust);
        $table.fixed(format!("sizeof__{}", stringify!($c)), rust.to_owned(), size_of::<uapi::$rust>());
        $table.fixed(format!("alignof__{}", stringify!($c)), rust.to_owned(), align_of::<uapi::$rust>());
        $(
            let symbol = format!("{}__{}", stringify!($c), first_name!($($c_field)? $field));
            let rust_field = format!("{rust}::{}", stringify!($field));
            let (offset, size) = field!(uapi::$rust, $field);
            $table.fixed(format!("offsetof__{symbol}"), rust_field.clone(), offset);
            $table.fixed(format!("fieldsize__{symbol}"), rust_field, size);
        )*
    };
}

/// Constants: `C_NAME` checks `uapi::C_NAME`; `C_NAME = expr` checks `expr`.
macro_rules! values {
    ($table:ident, $($c:ident $(= $rust:expr)?),* $(,)?) => {
        $( values!(@one $table, $c $(, $rust)?); )*
    };
    (@one $table:ident, $c:ident) => {
        values!(@one $table, $c, uapi::$c)
    };
    (@one $table:ident, $c:ident, $rust:expr) => {
        $table.fixed(format!("value__{}", stringify!($c)), stringify!($rust).replace(' ', ""), $rust)
    };
}

/// The one table: every value `tests/c/uapi_layout.c` computes, as the Rust
/// side has it.
fn expected() -> Vec<Expected> {
    let mut table = Table::default();

    layout!(table, VfioGroupStatus = vfio_group_status { argsz, flags });
    layout!(table, VfioDeviceInfo = vfio_device_info { argsz, flags, num_regions, num_irqs, cap_offset });
    layout!(table, VfioRegionInfo = vfio_region_info { argsz, flags, index, cap_offset, size, offset });
    layout!(table, VfioDeviceFeature = vfio_device_feature { argsz, flags });
    layout!(
        table,
        VfioDeviceLowPowerEntryWithWakeup = vfio_device_low_power_entry_with_wakeup { wakeup_eventfd, reserved }
    );
    layout!(table, VfioIrqInfo = vfio_irq_info { argsz, flags, index, count });
    layout!(table, VfioIrqSet = vfio_irq_set { argsz, flags, index, start, count });
    layout!(table, VfioIommuType1Info = vfio_iommu_type1_info { argsz, flags, iova_pgsizes, cap_offset });
    layout!(table, VfioIommuType1DmaMap = vfio_iommu_type1_dma_map { argsz, flags, vaddr, iova, size });
    layout!(table, VfioIommuType1DmaUnmap = vfio_iommu_type1_dma_unmap { argsz, flags, iova, size });
    layout!(
        table,
        VfioIommuSpaprTceDdwInfo = vfio_iommu_spapr_tce_ddw_info { pgsizes, max_dynamic_windows_supported, levels }
    );
    layout!(
        table,
        VfioIommuSpaprTceInfo = vfio_iommu_spapr_tce_info { argsz, flags, dma32_window_start, dma32_window_size, ddw }
    );
    layout!(table, VfioIommuSpaprRegisterMemory = vfio_iommu_spapr_register_memory { argsz, flags, vaddr, size });
    layout!(table, VfioIommuSpaprTceCreate = vfio_iommu_spapr_tce_create {
        argsz,
        flags,
        page_shift,
        resv1 = __resv1,
        window_size,
        levels,
        resv2 = __resv2,
        start_addr,
    });
    layout!(table, VfioIommuSpaprTceRemove = vfio_iommu_spapr_tce_remove { argsz, flags, start_addr });
    layout!(table, VfioEehPeErr = vfio_eeh_pe_err { type_ = type, func, addr, mask });
    layout!(table, VfioEehPeOp = vfio_eeh_pe_op { argsz, flags, op, err });
    layout!(table, VfioAddrMapping = vfio_addr_mapping { buid, bus, slot, func });
    layout!(table, VfioDeviceAddrMapping = vfio_device_addr_mapping { argsz, flags, mapping });

    // The flexible `data[]` arrays start where our fixed parts end.
    for (c, rust, size) in [
        ("vfio_irq_set", "VfioIrqSet", size_of::<uapi::VfioIrqSet>()),
        ("vfio_device_feature", "VfioDeviceFeature", size_of::<uapi::VfioDeviceFeature>()),
        ("vfio_iommu_type1_dma_unmap", "VfioIommuType1DmaUnmap", size_of::<uapi::VfioIommuType1DmaUnmap>()),
    ] {
        table.fixed(format!("offsetof__{c}__data"), format!("size_of::<{rust}>()"), size);
    }

    values!(
        table,
        VFIO_API_VERSION,
        VFIO_TYPE,
        VFIO_BASE,
        VFIO_TYPE1_IOMMU,
        VFIO_SPAPR_TCE_IOMMU,
        VFIO_TYPE1v2_IOMMU = uapi::VFIO_TYPE1V2_IOMMU,
        VFIO_EEH,
        VFIO_SPAPR_TCE_v2_IOMMU = uapi::VFIO_SPAPR_TCE_V2_IOMMU,
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
        VFIO_EEH_PE_OP_MINSZ,
        VFIO_EEH_PE_OP_INJECT_SZ,
        VFIO_DEVICE_ADDR_MAPPING_GET,
        VFIO_DEVICE_ADDR_MAPPING_SET,
        VFIO_DEVICE_ADDR_MAPPING_CLEAR,
    );

    // Every ioctl under the toolchain's encoding; the symbol is the name.
    for ioctl in uapi::UPSTREAM_IOCTLS.iter().chain(&[uapi::SEED_DEVICE_SET_ADDR_MAPPING, uapi::DEVICE_ADDR_MAPPING]) {
        table.push(format!("value__{}", ioctl.name), format!("our {}", ioctl.name), Value::Ioctl(*ioctl));
    }

    // arch/powerpc/include/uapi/asm/eeh.h.
    table.powerpc_only = true;
    values!(
        table,
        EEH_PE_STATE_NORMAL = PeState::Normal.raw(),
        EEH_PE_STATE_RESET = PeState::Reset.raw(),
        EEH_PE_STATE_STOPPED_IO_DMA = PeState::Stopped.raw(),
        EEH_PE_STATE_STOPPED_DMA = PeState::StoppedDma.raw(),
        EEH_PE_STATE_UNAVAIL = PeState::Unavailable.raw(),
        EEH_ERR_TYPE_32,
        EEH_ERR_TYPE_64,
        EEH_ERR_FUNC_MIN,
        EEH_ERR_FUNC_MAX,
        EEH_ERR_FUNC_LD_MEM_ADDR = ErrFunc::LoadMemAddr.raw(),
        EEH_ERR_FUNC_LD_MEM_DATA = ErrFunc::LoadMemData.raw(),
        EEH_ERR_FUNC_LD_IO_ADDR = ErrFunc::LoadIoAddr.raw(),
        EEH_ERR_FUNC_LD_IO_DATA = ErrFunc::LoadIoData.raw(),
        EEH_ERR_FUNC_LD_CFG_ADDR = ErrFunc::LoadConfigAddr.raw(),
        EEH_ERR_FUNC_LD_CFG_DATA = ErrFunc::LoadConfigData.raw(),
        EEH_ERR_FUNC_ST_MEM_ADDR = ErrFunc::StoreMemAddr.raw(),
        EEH_ERR_FUNC_ST_MEM_DATA = ErrFunc::StoreMemData.raw(),
        EEH_ERR_FUNC_ST_IO_ADDR = ErrFunc::StoreIoAddr.raw(),
        EEH_ERR_FUNC_ST_IO_DATA = ErrFunc::StoreIoData.raw(),
        EEH_ERR_FUNC_ST_CFG_ADDR = ErrFunc::StoreConfigAddr.raw(),
        EEH_ERR_FUNC_ST_CFG_DATA = ErrFunc::StoreConfigData.raw(),
        EEH_ERR_FUNC_DMA_RD_ADDR = ErrFunc::DmaReadAddr.raw(),
        EEH_ERR_FUNC_DMA_RD_DATA = ErrFunc::DmaReadData.raw(),
        EEH_ERR_FUNC_DMA_RD_MASTER = ErrFunc::DmaReadMaster.raw(),
        EEH_ERR_FUNC_DMA_RD_TARGET = ErrFunc::DmaReadTarget.raw(),
        EEH_ERR_FUNC_DMA_WR_ADDR = ErrFunc::DmaWriteAddr.raw(),
        EEH_ERR_FUNC_DMA_WR_DATA = ErrFunc::DmaWriteData.raw(),
        EEH_ERR_FUNC_DMA_WR_MASTER = ErrFunc::DmaWriteMaster.raw(),
        EEH_ERR_FUNC_DMA_WR_TARGET = ErrFunc::DmaWriteTarget.raw(),
    );

    table.rows
}

/// Every difference between the globals `toolchain` compiled (`found`) and
/// `table`: values that differ, rows the assembly lacks, and globals the
/// table lacks.
fn compare(found: &BTreeMap<String, u64>, table: &[Expected], toolchain: &Toolchain) -> Vec<String> {
    let rows: Vec<_> = table.iter().filter(|row| toolchain.powerpc || !row.powerpc_only).collect();
    let mut problems = Vec::new();
    for row in &rows {
        let rust = row.value(toolchain.encoding);
        match found.get(&row.symbol) {
            None => problems.push(format!("{}: not in the assembly ({} is {rust})", row.symbol, row.rust)),
            Some(&c) if i128::from(c) != rust => {
                problems
                    .push(format!("{}: the header says {c} ({c:#x}), {} is {rust} ({rust:#x})", row.symbol, row.rust));
            }
            Some(_) => {}
        }
    }
    let known: BTreeSet<_> = rows.iter().map(|row| row.symbol.as_str()).collect();
    for symbol in found.keys().filter(|symbol| !known.contains(symbol.as_str())) {
        problems.push(format!("{symbol}: in {} but not in the Rust table", c_source().display()));
    }
    problems
}

fn compiled(toolchain: &Toolchain) -> BTreeMap<String, u64> {
    parse_assembly(&assemble(toolchain))
        .unwrap_or_else(|err| panic!("Cannot read the {} compiler's assembly: {err}", toolchain.name))
}

fn check(toolchain: &Toolchain) {
    let problems = compare(&compiled(toolchain), &expected(), toolchain);
    assert!(
        problems.is_empty(),
        "src/uapi.rs differs from the {} <linux/vfio.h> ({} differences):\n  {}",
        toolchain.name,
        problems.len(),
        problems.join("\n  "),
    );
}

#[test]
fn host_header_matches_the_rust_uapi() {
    check(&HOST);
}

#[test]
fn powerpc64le_header_matches_the_rust_uapi() {
    check(&PPC64LE);
}

/// The facts the reference (§1.4, §1.5) states, read straight from the
/// powerpc64le compiler, so the table cannot agree with a wrong Rust side by
/// construction.
#[test]
fn powerpc64le_header_has_the_reference_values() {
    let found = compiled(&PPC64LE);
    for (symbol, value) in [
        ("sizeof__vfio_eeh_pe_op", 40),
        ("alignof__vfio_eeh_pe_op", 8),
        ("offsetof__vfio_eeh_pe_op__err", 16),
        ("sizeof__vfio_eeh_pe_err", 24),
        ("sizeof__vfio_device_info", 20),
        ("value__VFIO_EEH", 5),
        ("value__VFIO_EEH_PE_OP", 0x2000_3B79),
        ("value__VFIO_CHECK_EXTENSION", 0x2000_3B65),
        ("value__VFIO_DEVICE_ADDR_MAPPING", 0x2000_3B7F),
    ] {
        assert_eq!(found.get(symbol), Some(&value), "{symbol}");
    }
}

#[test]
fn parser_reads_every_form_gcc_emits() {
    let assembly = "\
        .globl a\n\
        a:\n\
        \t.quad\t15225\n\
        b:\n\
        \t.8byte\t0x20003b79\n\
        c:\n\
        \t.zero\t8\n\
        d:\n\
        \t.quad\t-1\n\
        main:\n\
        \tret\n";
    let values = parse_assembly(assembly).expect("parses");
    let expected: BTreeMap<_, _> =
        [("a", 15225), ("b", 0x2000_3B79), ("c", 0), ("d", u64::MAX)].map(|(k, v)| (k.to_owned(), v)).into();
    assert_eq!(values, expected);
    assert!(parse_assembly("a:\n.quad x\n").is_err());
    assert!(parse_assembly("a:\n.quad 1\na:\n.quad 1\n").is_err());
}

/// The comparison reports each way the two sides can drift apart, so a green
/// run means agreement and not a check that never looked.
#[test]
fn comparison_reports_every_kind_of_difference() {
    let table = expected();
    // What a compiler that agrees with every row would produce.
    let agreeing: BTreeMap<_, _> = table
        .iter()
        .filter(|row| !row.powerpc_only)
        .map(|row| (row.symbol.clone(), u64::try_from(row.value(HOST.encoding)).expect("fits")))
        .collect();
    assert_eq!(compare(&agreeing, &table, &HOST), Vec::<String>::new());

    // A wrong Rust value.
    let mut wrong = table.clone();
    let row = wrong.iter_mut().find(|row| row.symbol == "sizeof__vfio_eeh_pe_op").expect("row");
    row.value = Value::Fixed(41);
    let problems = compare(&agreeing, &wrong, &HOST);
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(problems[0].starts_with("sizeof__vfio_eeh_pe_op: the header says 40"), "{}", problems[0]);

    // A global the table does not know, and a row the C file does not define.
    let mut extra = agreeing.clone();
    extra.insert("value__VFIO_NEW".to_owned(), 1);
    extra.remove("value__VFIO_EEH");
    let problems = compare(&extra, &table, &HOST);
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert!(problems.iter().any(|p| p.starts_with("value__VFIO_EEH: not in the assembly")), "{problems:?}");
    assert!(problems.iter().any(|p| p.starts_with("value__VFIO_NEW: in ")), "{problems:?}");
}

/// The real powerpc64le numbers checked under the generic encoding: every
/// ioctl is reported, so the encodings are told apart.
#[test]
fn powerpc64le_numbers_fail_under_the_generic_encoding() {
    let table = expected();
    let generic = Toolchain { encoding: Encoding::GENERIC, ..PPC64LE };
    let problems = compare(&compiled(&PPC64LE), &table, &generic);
    for row in table.iter().filter(|row| matches!(row.value, Value::Ioctl(_))) {
        let prefix = format!("{}: the header says", row.symbol);
        assert!(problems.iter().any(|p| p.starts_with(&prefix)), "{} not reported: {problems:#?}", row.symbol);
    }
}

#[test]
#[should_panic(expected = "install the Debian package gcc-powerpc64le-linux-gnu")]
fn a_missing_compiler_fails_naming_its_package() {
    assemble(&Toolchain { compiler: "powerpc64le-linux-gnu-gcc-not-installed", ..PPC64LE });
}

/// Every integer constant, UAPI struct and ioctl `src/uapi.rs` declares has a
/// row, so a new one cannot go unchecked.
#[test]
fn table_covers_everything_uapi_rs_declares() {
    let source = std::fs::read_to_string(manifest_dir().join("src/uapi.rs")).expect("src/uapi.rs");
    let table = expected();
    let checked: BTreeSet<_> = table.iter().map(|row| row.rust.as_str()).collect();

    let mut missing = Vec::new();
    let mut ioctls = 0;
    let mut after_uapi_struct = false;
    for line in source.lines() {
        if let Some(rest) = line.strip_prefix("pub const ") {
            let (name, ty) = rest.split_once(": ").expect("pub const NAME: TYPE");
            let ty = ty.split(' ').next().unwrap_or_default();
            match ty {
                "u8" | "u16" | "u32" | "u64" | "i32" | "i64" if !checked.contains(format!("uapi::{name}").as_str()) => {
                    missing.push(format!("constant {name}"));
                }
                "VfioIoctl" => ioctls += 1,
                _ => {}
            }
        }
        after_uapi_struct |= line.starts_with("uapi_struct!");
        if let Some(rest) = line.trim_start().strip_prefix("pub struct ").filter(|_| after_uapi_struct) {
            after_uapi_struct = false;
            let name = rest.split([' ', '{']).next().unwrap_or_default();
            if !checked.contains(name) {
                missing.push(format!("struct {name}"));
            }
        }
    }
    assert!(missing.is_empty(), "src/uapi.rs items with no row in the table: {missing:?}");
    let rows = table.iter().filter(|row| matches!(row.value, Value::Ioctl(_))).count();
    assert_eq!(ioctls, rows, "every VfioIoctl const must be in UPSTREAM_IOCTLS or be one of the two proposal ioctls");
}
