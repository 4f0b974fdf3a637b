//! The simulated host's topology: PHBs, PEs (one IOMMU group each) and
//! devices with their BARs, read from a TOML file (or the built-in one) and
//! checked, with each problem reported as `file:line: what is wrong`.
//!
//! BARs get addresses as firmware would assign them, per PHB: 32-bit and
//! non-prefetchable 64-bit memory BARs in the 32-bit window (bus addresses
//! 0x8000_0000..0x1_0000_0000), prefetchable 64-bit BARs in the PHB's 64-bit
//! window (1 TiB at 0x6_0000_0000_0000 + domain × 1 TiB), I/O BARs in
//! 0x1000..0x10000; each naturally aligned.

use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use toml::Spanned;
use vfio_eeh::addr::{PciAddr, PeId};

use crate::nvme::{NvmeSpec, BAR0_BYTES, BLOCK_BYTES, MAX_IO_QUEUES};

/// The built-in topology file.
pub const BUILTIN_TOML: &str = include_str!("builtin.toml");

/// What a BAR decodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BarKind {
    /// 32-bit memory.
    Mem32,
    /// 64-bit memory; takes two BAR slots.
    Mem64,
    /// I/O space.
    Io,
}

/// One BAR of a device, as VFIO region info reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BarInfo {
    /// BAR index 0..=5 (the low slot of a 64-bit BAR).
    pub index: u8,
    /// What it decodes.
    pub kind: BarKind,
    /// Prefetchable memory.
    pub prefetchable: bool,
    /// Size in bytes, a power of two.
    pub size: u64,
    /// The bus address firmware assigned.
    pub addr: u64,
}

impl BarInfo {
    /// The flag bits of the BAR register (bits 0..3).
    pub const fn flags(&self) -> u32 {
        match self.kind {
            BarKind::Io => 0x1,
            BarKind::Mem32 | BarKind::Mem64 => {
                let wide = if matches!(self.kind, BarKind::Mem64) { 0x4 } else { 0 };
                wide | if self.prefetchable { 0x8 } else { 0 }
            }
        }
    }
}

/// A PCI function of the simulated host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceInfo {
    /// Its address.
    pub addr: PciAddr,
    /// PCI vendor id.
    pub vendor: u16,
    /// PCI device id.
    pub device: u16,
    /// 24-bit class code.
    pub class: u32,
    /// Revision id.
    pub revision: u8,
    /// Whether its slot has more than one function (header type bit 7 on
    /// function 0).
    pub multifunction: bool,
    /// Its BARs, by index.
    pub bars: Vec<BarInfo>,
    /// How long after a reset is deasserted the device answers config
    /// reads (before that it answers Configuration Request Retry).
    pub ready_delay: Duration,
    /// What answers behind its BARs.
    pub model: DeviceModel,
}

/// What answers behind a device's BARs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeviceModel {
    /// Plain memory (`model = "memory"`; what kinds other than `nvme`
    /// get).
    Memory,
    /// An NVMe controller in BAR0 ([`crate::nvme`]) with an MSI-X
    /// capability (`model = "nvme"`; what kind `nvme` gets).
    Nvme(NvmeSpec),
}

impl DeviceInfo {
    /// The BAR with this index.
    pub fn bar(&self, index: u8) -> Option<&BarInfo> {
        self.bars.iter().find(|b| b.index == index)
    }
}

/// A PE: one IOMMU group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeSpec {
    /// The group (and PE) number.
    pub pe: PeId,
    /// Its functions, by address.
    pub devices: Vec<DeviceInfo>,
}

/// A PHB: one PCI domain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PhbSpec {
    /// The domain.
    pub domain: u32,
    /// Its PEs, in file order.
    pub pes: Vec<PeSpec>,
}

/// A checked topology. Only [`from_toml_str`](Self::from_toml_str) and its
/// relatives make one, so every topology a simulator is built from is valid.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TopologySpec {
    phbs: Vec<PhbSpec>,
}

/// A topology file that could not be read or is wrong.
#[derive(Debug, thiserror::Error)]
pub enum TopologyError {
    /// The file could not be read.
    #[error("Cannot read topology file {file}")]
    Read {
        /// The file.
        file: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is malformed or describes an impossible host.
    #[error("{file}:{line}: {what}")]
    Invalid {
        /// The file.
        file: String,
        /// The 1-based line.
        line: usize,
        /// What is wrong.
        what: String,
    },
}

struct Preset {
    name: &'static str,
    vendor: u16,
    device: u16,
    class: u32,
    ready_ms: u64,
    bars: &'static [(u8, BarKind, bool, u64)],
}

const KIB: u64 = 1 << 10;
const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

const PRESETS: &[Preset] = &[
    Preset {
        name: "nvme",
        vendor: 0x144d,
        device: 0xa824,
        class: 0x01_08_02,
        ready_ms: 200,
        bars: &[(0, BarKind::Mem64, false, 16 * KIB)],
    },
    Preset {
        name: "nic",
        vendor: 0x8086,
        device: 0x10fb,
        class: 0x02_00_00,
        ready_ms: 100,
        bars: &[(0, BarKind::Mem64, true, 512 * KIB), (2, BarKind::Io, false, 32), (4, BarKind::Mem64, true, 16 * KIB)],
    },
    Preset {
        name: "gpu",
        vendor: 0x10de,
        device: 0x1db4,
        class: 0x03_02_00,
        ready_ms: 300,
        bars: &[
            (0, BarKind::Mem32, false, 16 * MIB),
            (1, BarKind::Mem64, true, 16 * GIB),
            (3, BarKind::Mem64, true, 32 * MIB),
        ],
    },
    Preset {
        name: "mlx5",
        vendor: 0x15b3,
        device: 0x1017,
        class: 0x02_00_00,
        ready_ms: 300,
        bars: &[(0, BarKind::Mem64, true, 32 * MIB)],
    },
];

/// Longest ready delay a file may ask for.
const MAX_READY_MS: u64 = 60_000;
const DEFAULT_READY_MS: u64 = 100;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    phb: Vec<Spanned<RawPhb>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPhb {
    domain: Spanned<u32>,
    #[serde(default)]
    pe: Vec<Spanned<RawPe>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPe {
    group: Spanned<u32>,
    #[serde(default)]
    device: Vec<Spanned<RawDevice>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDevice {
    addr: Spanned<String>,
    kind: Option<Spanned<String>>,
    vendor: Option<u16>,
    device: Option<u16>,
    class: Option<Spanned<u32>>,
    revision: Option<u8>,
    ready_ms: Option<Spanned<u64>>,
    bars: Option<Vec<Spanned<RawBar>>>,
    model: Option<Spanned<String>>,
    namespace_size: Option<Spanned<u64>>,
    namespace_file: Option<Spanned<String>>,
    io_queues: Option<Spanned<u16>>,
    queue_entries: Option<Spanned<u16>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBar {
    index: u8,
    kind: BarKind,
    #[serde(default)]
    prefetchable: bool,
    size: u64,
}

/// Turns byte spans into `file:line` errors.
struct Source<'a> {
    text: &'a str,
    file: &'a str,
}

impl Source<'_> {
    fn error(&self, at: usize, what: impl Into<String>) -> TopologyError {
        let line = self.text.get(..at).map_or(1, |head| head.matches('\n').count() + 1);
        TopologyError::Invalid { file: self.file.to_owned(), line, what: what.into() }
    }

    fn at<T>(&self, item: &Spanned<T>, what: impl Into<String>) -> TopologyError {
        self.error(item.span().start, what)
    }
}

/// A bump allocator for one address window.
struct Window {
    name: &'static str,
    next: u64,
    end: u64,
}

impl Window {
    fn take(&mut self, size: u64) -> Option<u64> {
        let addr = self.next.checked_next_multiple_of(size)?;
        let end = addr.checked_add(size)?;
        (end <= self.end).then(|| {
            self.next = end;
            addr
        })
    }
}

struct PhbWindows {
    m32: Window,
    m64: Window,
    io: Window,
}

impl PhbWindows {
    const M64_BASE: u64 = 0x0006_0000_0000_0000;
    const M64_SIZE: u64 = 1 << 40;

    fn new(domain: u32) -> Self {
        let m64 = Self::M64_BASE + u64::from(domain) * Self::M64_SIZE;
        PhbWindows {
            m32: Window { name: "32-bit MMIO", next: 0x8000_0000, end: 0x1_0000_0000 },
            m64: Window { name: "64-bit MMIO", next: m64, end: m64 + Self::M64_SIZE },
            io: Window { name: "I/O", next: 0x1000, end: 0x1_0000 },
        }
    }

    fn for_bar(&mut self, kind: BarKind, prefetchable: bool) -> &mut Window {
        match kind {
            BarKind::Io => &mut self.io,
            BarKind::Mem64 if prefetchable => &mut self.m64,
            BarKind::Mem32 | BarKind::Mem64 => &mut self.m32,
        }
    }
}

/// Highest domain a file may use (keeps the 64-bit windows apart).
const MAX_DOMAIN: u32 = 0xffff;

impl TopologySpec {
    /// The built-in host: two PHBs, five PEs, multi-function PEs, four
    /// device kinds (see `builtin.toml`).
    pub fn builtin() -> Self {
        Self::from_toml_str(BUILTIN_TOML, "builtin.toml").expect("The built-in topology is valid")
    }

    /// Reads a topology file.
    pub fn from_toml_file(path: impl AsRef<Path>) -> Result<Self, TopologyError> {
        let path = path.as_ref();
        let file = path.display().to_string();
        let text =
            std::fs::read_to_string(path).map_err(|source| TopologyError::Read { file: file.clone(), source })?;
        Self::from_toml_str(&text, &file)
    }

    /// Reads topology text; `file` names it in errors.
    pub fn from_toml_str(text: &str, file: &str) -> Result<Self, TopologyError> {
        let src = Source { text, file };
        let raw: RawFile = toml::from_str(text).map_err(|e| {
            let at = e.span().map_or(0, |s| s.start);
            src.error(at, capitalized(e.message().trim_end()))
        })?;
        if raw.phb.is_empty() {
            return Err(src.error(0, "The topology has no [[phb]]"));
        }
        let mut seen_domains = std::collections::HashSet::new();
        let mut seen_groups = std::collections::HashSet::new();
        let mut seen_devices = std::collections::HashSet::new();
        let mut phbs = Vec::with_capacity(raw.phb.len());
        for phb in &raw.phb {
            let domain = *phb.get_ref().domain.get_ref();
            if domain > MAX_DOMAIN {
                return Err(src.at(&phb.get_ref().domain, format!("Domain {domain:#x} is above {MAX_DOMAIN:#x}")));
            }
            if !seen_domains.insert(domain) {
                return Err(src.at(&phb.get_ref().domain, format!("Domain {domain:04x} is listed twice")));
            }
            if phb.get_ref().pe.is_empty() {
                return Err(src.at(phb, format!("PHB {domain:04x} has no [[phb.pe]]")));
            }
            let mut windows = PhbWindows::new(domain);
            let mut pes = Vec::with_capacity(phb.get_ref().pe.len());
            for pe in &phb.get_ref().pe {
                let group = *pe.get_ref().group.get_ref();
                if !seen_groups.insert(group) {
                    return Err(src.at(&pe.get_ref().group, format!("IOMMU group {group} is listed twice")));
                }
                if pe.get_ref().device.is_empty() {
                    return Err(src.at(pe, format!("PE {group} has no device")));
                }
                let mut devices = Vec::new();
                for dev in &pe.get_ref().device {
                    let info = device_info(&src, dev, domain, &mut windows)?;
                    if !seen_devices.insert(info.addr) {
                        return Err(src.at(&dev.get_ref().addr, format!("Device {} is listed twice", info.addr)));
                    }
                    devices.push((dev.span().start, info));
                }
                devices.sort_by_key(|(_, d)| d.addr);
                pes.push((PeId(group), devices));
            }
            phbs.push((domain, pes));
        }
        check_functions(&src, &mut phbs)?;
        let phbs = phbs
            .into_iter()
            .map(|(domain, pes)| PhbSpec {
                domain,
                pes: pes
                    .into_iter()
                    .map(|(pe, devs)| PeSpec { pe, devices: devs.into_iter().map(|(_, d)| d).collect() })
                    .collect(),
            })
            .collect();
        Ok(TopologySpec { phbs })
    }

    /// The PHBs, in file order.
    pub fn phbs(&self) -> &[PhbSpec] {
        &self.phbs
    }
}

/// Error text starts with a capital letter; the TOML parser's does not.
fn capitalized(text: &str) -> String {
    let mut chars = text.chars();
    chars.next().map_or_else(String::new, |first| first.to_uppercase().chain(chars).collect())
}

type RawPhbs = Vec<(u32, Vec<(PeId, Vec<(usize, DeviceInfo)>)>)>;

/// Function N > 0 needs function 0 in its slot (else a bus scan never finds
/// it), and function 0 of a slot with more functions is multi-function.
fn check_functions(src: &Source<'_>, phbs: &mut RawPhbs) -> Result<(), TopologyError> {
    let all: std::collections::HashSet<PciAddr> =
        phbs.iter().flat_map(|(_, pes)| pes.iter().flat_map(|(_, ds)| ds.iter().map(|(_, d)| d.addr))).collect();
    let slot_of = |a: PciAddr| (a.domain(), a.bus(), a.slot());
    for (_, pes) in phbs.iter_mut() {
        for (_, devices) in pes.iter_mut() {
            for (at, dev) in devices.iter_mut() {
                let a = dev.addr;
                let func0 = PciAddr::new(a.domain(), a.bus(), a.slot(), 0).expect("Slot and function are valid");
                if a.func() != 0 && !all.contains(&func0) {
                    return Err(src.error(*at, format!("Device {a} has no function 0 ({func0}) in its slot")));
                }
                dev.multifunction = all.iter().any(|&o| o != a && slot_of(o) == slot_of(a));
            }
        }
    }
    Ok(())
}

fn device_info(
    src: &Source<'_>,
    dev: &Spanned<RawDevice>,
    domain: u32,
    windows: &mut PhbWindows,
) -> Result<DeviceInfo, TopologyError> {
    let raw = dev.get_ref();
    let addr: PciAddr = raw.addr.get_ref().parse().map_err(|e| src.at(&raw.addr, format!("{e}")))?;
    if addr.domain() != domain {
        return Err(src.at(&raw.addr, format!("Device {addr} is not in domain {domain:04x} of its PHB")));
    }
    let preset = match &raw.kind {
        None => None,
        Some(kind) => Some(PRESETS.iter().find(|p| p.name == kind.get_ref()).ok_or_else(|| {
            let names: Vec<&str> = PRESETS.iter().map(|p| p.name).collect();
            src.at(kind, format!("Unknown device kind {:?} (known: {})", kind.get_ref(), names.join(", ")))
        })?),
    };
    let missing = |field: &str| src.at(dev, format!("Device {addr} has no kind, so it needs `{field}`"));
    let vendor = raw.vendor.or(preset.map(|p| p.vendor)).ok_or_else(|| missing("vendor"))?;
    let device = raw.device.or(preset.map(|p| p.device)).ok_or_else(|| missing("device"))?;
    let class = match &raw.class {
        Some(c) if *c.get_ref() > 0xff_ffff => {
            return Err(src.at(c, format!("Class {:#x} is wider than 24 bits", c.get_ref())));
        }
        Some(c) => *c.get_ref(),
        None => preset.map(|p| p.class).ok_or_else(|| missing("class"))?,
    };
    if vendor == 0xffff {
        return Err(src.at(dev, format!("Device {addr}: vendor 0xffff means no device")));
    }
    let ready_ms = match &raw.ready_ms {
        Some(ms) if *ms.get_ref() > MAX_READY_MS => {
            return Err(src.at(ms, format!("Ready delay {} ms (ready_ms) is above {MAX_READY_MS}", ms.get_ref())));
        }
        Some(ms) => *ms.get_ref(),
        None => preset.map_or(DEFAULT_READY_MS, |p| p.ready_ms),
    };
    let wanted: Vec<(usize, RawBar)> = match &raw.bars {
        Some(bars) => bars
            .iter()
            .map(|b| {
                let r = b.get_ref();
                (b.span().start, RawBar { index: r.index, kind: r.kind, prefetchable: r.prefetchable, size: r.size })
            })
            .collect(),
        None => preset.map_or_else(Vec::new, |p| {
            p.bars
                .iter()
                .map(|&(index, kind, prefetchable, size)| {
                    (dev.span().start, RawBar { index, kind, prefetchable, size })
                })
                .collect()
        }),
    };
    let bars = assign_bars(src, addr, &wanted, windows)?;
    let model = device_model(src, dev, addr, preset.map(|p| p.name), &bars)?;
    Ok(DeviceInfo {
        addr,
        vendor,
        device,
        class,
        revision: raw.revision.unwrap_or(1),
        multifunction: false,
        bars,
        ready_delay: Duration::from_millis(ready_ms),
        model,
    })
}

/// Largest namespace a file may ask for (1 TiB).
const MAX_NAMESPACE_BYTES: u64 = 1 << 40;
/// Largest I/O queue a file may ask for, in entries.
const MAX_QUEUE_ENTRIES: u16 = 4096;

/// The model behind a device's BARs: `model`, or what its kind implies,
/// with the NVMe fields checked.
fn device_model(
    src: &Source<'_>,
    dev: &Spanned<RawDevice>,
    addr: PciAddr,
    kind: Option<&str>,
    bars: &[BarInfo],
) -> Result<DeviceModel, TopologyError> {
    let raw = dev.get_ref();
    let name = match &raw.model {
        Some(m) => m.get_ref().as_str(),
        None if kind == Some("nvme") => "nvme",
        None => "memory",
    };
    let at_model = |what: String| match &raw.model {
        Some(m) => src.at(m, what),
        None => src.at(dev, what),
    };
    let nvme_only = [
        raw.namespace_size.as_ref().map(Spanned::span),
        raw.namespace_file.as_ref().map(Spanned::span),
        raw.io_queues.as_ref().map(Spanned::span),
        raw.queue_entries.as_ref().map(Spanned::span),
    ];
    match name {
        "memory" => match nvme_only.into_iter().flatten().next() {
            Some(span) => Err(src.error(span.start, format!("Device {addr}: NVMe fields need model = \"nvme\""))),
            None => Ok(DeviceModel::Memory),
        },
        "nvme" => {
            let bar0_ok = bars.iter().any(|b| b.index == 0 && b.kind != BarKind::Io && b.size >= BAR0_BYTES);
            if !bar0_ok {
                return Err(at_model(format!(
                    "Device {addr}: the NVMe model needs a memory BAR0 of at least {BAR0_BYTES:#x} bytes"
                )));
            }
            let d = NvmeSpec::DEFAULT;
            let namespace_bytes = match &raw.namespace_size {
                Some(n)
                    if *n.get_ref() == 0 || *n.get_ref() % BLOCK_BYTES != 0 || *n.get_ref() > MAX_NAMESPACE_BYTES =>
                {
                    return Err(src.at(
                        n,
                        format!(
                            "Namespace size {:#x} is not a multiple of {BLOCK_BYTES} in 1..={MAX_NAMESPACE_BYTES:#x}",
                            n.get_ref()
                        ),
                    ));
                }
                Some(n) => *n.get_ref(),
                None => d.namespace_bytes,
            };
            let io_queues = match &raw.io_queues {
                Some(q) if *q.get_ref() == 0 || *q.get_ref() > MAX_IO_QUEUES => {
                    return Err(
                        src.at(q, format!("{} I/O queues (io_queues) is not in 1..={MAX_IO_QUEUES}", q.get_ref()))
                    );
                }
                Some(q) => *q.get_ref(),
                None => d.io_queues,
            };
            let queue_entries = match &raw.queue_entries {
                Some(q) if *q.get_ref() < 2 || *q.get_ref() > MAX_QUEUE_ENTRIES => {
                    return Err(src.at(q, format!("Queue entries {} is not in 2..={MAX_QUEUE_ENTRIES}", q.get_ref())));
                }
                Some(q) => *q.get_ref(),
                None => d.queue_entries,
            };
            let namespace_file = match &raw.namespace_file {
                Some(f) => {
                    let path = std::path::PathBuf::from(f.get_ref());
                    crate::nvme::Media::file(&path, namespace_bytes).map_err(|e| {
                        let why = std::error::Error::source(&e).map_or_else(String::new, |s| format!(": {s}"));
                        src.at(f, format!("Cannot use {}{why}", e.path.display()))
                    })?;
                    Some(path)
                }
                None => None,
            };
            Ok(DeviceModel::Nvme(NvmeSpec { namespace_bytes, namespace_file, io_queues, queue_entries }))
        }
        other => Err(at_model(format!("Unknown device model {other:?} (known: memory, nvme)"))),
    }
}

fn assign_bars(
    src: &Source<'_>,
    addr: PciAddr,
    wanted: &[(usize, RawBar)],
    windows: &mut PhbWindows,
) -> Result<Vec<BarInfo>, TopologyError> {
    let mut used = [false; 6];
    let mut bars = Vec::with_capacity(wanted.len());
    for (at, bar) in wanted {
        let fail = |what: String| src.error(*at, format!("Device {addr} BAR {}: {what}", bar.index));
        let slots = if bar.kind == BarKind::Mem64 { 2 } else { 1 };
        let index = usize::from(bar.index);
        if index + slots > 6 {
            return Err(fail(format!("index must be 0..={}", 6 - slots)));
        }
        if used[index..index + slots].iter().any(|&u| u) {
            return Err(fail("overlaps another BAR".into()));
        }
        used[index..index + slots].fill(true);
        let (min, max) = match bar.kind {
            BarKind::Io => (4, 256),
            BarKind::Mem32 => (16, 1 << 31),
            BarKind::Mem64 => (16, 1 << 39),
        };
        if !bar.size.is_power_of_two() || bar.size < min || bar.size > max {
            return Err(fail(format!("size {:#x} is not a power of two in {min:#x}..={max:#x}", bar.size)));
        }
        if bar.prefetchable && bar.kind == BarKind::Io {
            return Err(fail("an I/O BAR cannot be prefetchable".into()));
        }
        let window = windows.for_bar(bar.kind, bar.prefetchable);
        let name = window.name;
        let base = window.take(bar.size).ok_or_else(|| fail(format!("the PHB's {name} window is full")))?;
        bars.push(BarInfo {
            index: bar.index,
            kind: bar.kind,
            prefetchable: bar.prefetchable,
            size: bar.size,
            addr: base,
        });
    }
    bars.sort_by_key(|b| b.index);
    Ok(bars)
}

#[cfg(test)]
mod tests;
