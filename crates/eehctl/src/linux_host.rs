//! `eehctl --host linux state|inject|events|max-freezes`: the EEH chores
//! of a real POWER host, done today by hand with sysfs, debugfs and dmesg.
//!
//! * `state`: every PE (IOMMU group) with its devices, the kernel's EEH
//!   state (`eeh_pe_state`, `eeh_mode`), the freezes the kernel log counted,
//!   and its owner (host drivers, or vfio-pci and the process holding it);
//!   `--vfio` also asks `VFIO_EEH_PE_GET_STATE` of a vfio-pci PE no one holds.
//! * `inject`: `VFIO_EEH_PE_INJECT_ERR` on a vfio-pci PE the tool opens, or
//!   PowerNV's debugfs `err_injct` for a PE the host owns; a PE a running
//!   process (a VM) holds is refused unless `--force`.
//! * `events`: the kernel log's `EEH:` lines as PE, event and outcome;
//!   `--follow` waits for more (NDJSON with `--json`).
//! * `max-freezes`: `eeh_max_freezes`, read or set.
//!
//! Every path is a parameter (`--sysfs`, `--dev-vfio`, `--debugfs`,
//! `--kmsg`, `--proc`), so the tests run on fixture trees.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write as _;
use std::path::Path;

use anyhow::{bail, Context};
use serde::Serialize;
use vfio_eeh::addr::{PciAddr, PeId};
use vfio_eeh::backend::{EehBackend, PeOpReply};
use vfio_eeh::ops::{EehOp, ErrInjection};
use vfio_eeh_linux::debugfs::{err_injct_line, PowerpcDebugfs};
use vfio_eeh_linux::kmsg::{EehEvent, EehLog, Kmsg};
use vfio_eeh_linux::sysfs::Sysfs;
use vfio_eeh_linux::VfioHost;

use crate::host::HostArgs;
use crate::output::{table, Output};

/// The driver a passed-through device is bound to.
const VFIO_PCI: &str = "vfio-pci";

/// `EEH_STATE_*` bits of `eeh_pe_state`'s first word
/// (arch/powerpc/include/asm/eeh.h).
const EEH_STATE_UNAVAILABLE: u32 = 1 << 0;
const EEH_STATE_NOT_SUPPORT: u32 = 1 << 1;
const EEH_STATE_RESET_ACTIVE: u32 = 1 << 2;
const EEH_STATE_MMIO_ACTIVE: u32 = 1 << 3;
const EEH_STATE_DMA_ACTIVE: u32 = 1 << 4;
/// `EEH_PE_*` flags of its second word.
const EEH_PE_FLAGS: [(u32, &str); 4] =
    [(1 << 0, "isolated"), (1 << 1, "recovering"), (1 << 3, "reset"), (1 << 10, "removed")];

/// The kernel's EEH state of a PE from `eeh_pe_state`.
fn describe_pe_state((state, flags): (u32, u32)) -> String {
    let base = if state & EEH_STATE_NOT_SUPPORT != 0 {
        "not supported"
    } else if state & EEH_STATE_UNAVAILABLE != 0 {
        "unavailable"
    } else if state & EEH_STATE_RESET_ACTIVE != 0 {
        "reset"
    } else if state & (EEH_STATE_MMIO_ACTIVE | EEH_STATE_DMA_ACTIVE) == EEH_STATE_MMIO_ACTIVE | EEH_STATE_DMA_ACTIVE {
        "normal"
    } else {
        "frozen"
    };
    let marks: Vec<&str> = EEH_PE_FLAGS.iter().filter(|(bit, _)| flags & bit != 0).map(|&(_, name)| name).collect();
    match marks.is_empty() {
        true => base.to_owned(),
        false => format!("{base} ({})", marks.join(", ")),
    }
}

/// Processes that hold `/dev/vfio/<group>` open, as `PID (COMM)`.
fn holders(proc_root: &Path, dev_vfio: &Path, group: PeId) -> Vec<String> {
    let wanted = dev_vfio.join(group.0.to_string());
    let Ok(entries) = fs::read_dir(proc_root) else { return Vec::new() };
    let mut found = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let Ok(fds) = fs::read_dir(entry.path().join("fd")) else { continue };
        if fds.flatten().any(|fd| fs::read_link(fd.path()).is_ok_and(|target| target == wanted)) {
            let comm = fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
            found.push(format!("{name} ({})", comm.trim()));
        }
    }
    found.sort();
    found
}

/// One PE as `state` shows it.
#[derive(Debug, Serialize)]
struct PeView {
    /// The IOMMU group.
    group: PeId,
    /// The PCI domain (PowerNV's PHB number).
    domain: u32,
    /// The kernel's PE number on the PHB (`eeh_pe_config_addr`).
    pe: Option<u32>,
    devices: Vec<PciAddr>,
    /// `eeh_pe_state` decoded; `None` without the file.
    eeh_state: Option<String>,
    /// `eeh_pe_state` as the kernel wrote it.
    eeh_pe_state: Option<[u32; 2]>,
    /// `eeh_mode` of the first device.
    eeh_mode: Option<u32>,
    /// `VFIO_EEH_PE_GET_STATE`, with `--vfio` on a free vfio-pci PE.
    vfio_state: Option<String>,
    /// Freezes the kernel log reports for the PE in the last hour, else the
    /// number of `Frozen` lines it holds; `None` when the log is unreadable.
    freezes: Option<u32>,
    /// `vfio-pci`, the host drivers, or `none`.
    owner: String,
    /// Processes holding the group's VFIO file (a running VM).
    held_by: Vec<String>,
}

/// The freezes per (PHB, PE) the kernel log reports.
fn freeze_counts(kmsg: &Path) -> anyhow::Result<BTreeMap<(u32, u32), u32>> {
    let mut counts = BTreeMap::new();
    let mut log = EehLog::default();
    let mut reader = Kmsg::open(kmsg, false)?;
    while let Some(record) = reader.next_record()? {
        let Some(event) = log.parse_record(&record) else { continue };
        let (Some(phb), Some(pe)) = (event.phb, event.pe) else { continue };
        let count = counts.entry((phb, pe)).or_insert(0);
        match (event.kind, event.freezes) {
            (_, Some(n)) => *count = n,
            (vfio_eeh_linux::kmsg::EventKind::Frozen, None) => *count += 1,
            _ => {}
        }
    }
    Ok(counts)
}

/// Every PE of the host.
fn pes(global: &HostArgs, ask_vfio: bool) -> anyhow::Result<Vec<PeView>> {
    let sysfs = Sysfs::new(global.sysfs_root());
    let topology = sysfs.topology().context("Cannot read the PCI topology")?;
    for problem in &topology.problems {
        tracing::warn!("{problem}");
    }
    let counts = freeze_counts(&global.kmsg).map_err(|e| tracing::warn!("No freeze counts: {e:#}")).ok();
    let host = ask_vfio.then(|| VfioHost::new(sysfs.clone(), &global.dev_vfio));
    let mut views = Vec::new();
    for phb in &topology.phbs {
        for group in &phb.groups {
            let first = group.devices.first().map(|d| d.addr);
            let attributes = first.map(|addr| sysfs.eeh_attributes(addr)).transpose()?.unwrap_or_default();
            let pe = first.and_then(|addr| sysfs.device(addr).ok()).and_then(|(d, _)| d.eeh_pe);
            let mut drivers: Vec<&str> = group.devices.iter().filter_map(|d| d.driver.as_deref()).collect();
            drivers.sort_unstable();
            drivers.dedup();
            let owner = if drivers.is_empty() { "none".to_owned() } else { drivers.join(",") };
            let held_by = match owner == VFIO_PCI {
                true => holders(&global.proc, &global.dev_vfio, group.pe),
                false => Vec::new(),
            };
            let vfio_state = match (&host, owner == VFIO_PCI && held_by.is_empty()) {
                (Some(host), true) => Some(match host.pe_op(group.pe, EehOp::GetState) {
                    Ok(PeOpReply::State(state)) => format!("{state:?}").to_lowercase(),
                    Ok(PeOpReply::Done) => "done".to_owned(),
                    Err(e) => format!("error: {e}"),
                }),
                _ => None,
            };
            views.push(PeView {
                group: group.pe,
                domain: phb.domain,
                pe,
                devices: group.devices.iter().map(|d| d.addr).collect(),
                eeh_state: attributes.pe_state.map(describe_pe_state),
                eeh_pe_state: attributes.pe_state.map(|(s, f)| [s, f]),
                eeh_mode: attributes.mode,
                vfio_state,
                freezes: pe.zip(counts.as_ref()).map(|(pe, c)| c.get(&(phb.domain, pe)).copied().unwrap_or(0)),
                owner,
                held_by,
            });
        }
    }
    Ok(views)
}

fn dash<T: ToString>(value: Option<T>) -> String {
    value.map_or_else(|| "-".to_owned(), |v| v.to_string())
}

fn state_table(pes: &[PeView]) -> String {
    let mut rows = table(&["GROUP", "PHB", "PE", "EEH STATE", "VFIO STATE", "FREEZES", "OWNER", "DEVICES"]);
    for pe in pes {
        let devices: Vec<String> = pe.devices.iter().map(ToString::to_string).collect();
        let owner = match pe.held_by.is_empty() {
            true => pe.owner.clone(),
            false => format!("{} (held by {})", pe.owner, pe.held_by.join(", ")),
        };
        rows.add_row([
            pe.group.to_string(),
            format!("{:04x}", pe.domain),
            pe.pe.map_or_else(|| "-".to_owned(), |pe| format!("{pe:#x}")),
            pe.eeh_state.clone().unwrap_or_else(|| "- (no eeh_pe_state)".to_owned()),
            dash(pe.vfio_state.clone()),
            dash(pe.freezes),
            owner,
            devices.join(" "),
        ]);
    }
    format!("{rows}\n")
}

/// `eehctl --host linux state`.
pub fn state(global: &HostArgs, ask_vfio: bool, out: &Output) -> anyhow::Result<()> {
    #[derive(Serialize)]
    struct View {
        pes: Vec<PeView>,
    }
    let view = View { pes: pes(global, ask_vfio)? };
    if view.pes.iter().all(|pe| pe.eeh_state.is_none()) {
        tracing::warn!("No device has eeh_pe_state: this kernel exposes no EEH in sysfs (not a POWER host with EEH)");
    }
    out.print(&view, || state_table(&view.pes))
}

/// How `inject` reaches the PE.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Via {
    /// `VFIO_EEH_PE_INJECT_ERR` on the group (vfio-pci PEs).
    Vfio,
    /// PowerNV's debugfs `PCIxxxx/err_injct` (any PE, host-owned ones too).
    Debugfs,
}

/// What `inject` is asked to do.
pub struct InjectRequest {
    /// The PE (IOMMU group), or a device of it.
    pub target: Result<PeId, PciAddr>,
    /// The error.
    pub injection: ErrInjection,
    /// The way, if not the natural one.
    pub via: Option<Via>,
    /// Inject into a PE a running process holds.
    pub force: bool,
}

/// `eehctl --host linux inject`.
pub fn inject(global: &HostArgs, request: &InjectRequest, out: &Output) -> anyhow::Result<()> {
    #[derive(Serialize)]
    struct View {
        group: PeId,
        via: Via,
        /// What was written to `err_injct`, for `debugfs`.
        err_injct: Option<String>,
        injection: ErrInjection,
        /// The PE afterwards.
        pe: PeView,
    }
    let sysfs = Sysfs::new(global.sysfs_root());
    let group = match request.target {
        Ok(group) => group,
        Err(device) => sysfs.iommu_group(device).with_context(|| format!("Cannot find the PE of {device}"))?,
    };
    let before = pes(global, false)?
        .into_iter()
        .find(|pe| pe.group == group)
        .with_context(|| format!("No IOMMU group {group} in {}", sysfs.root().join("kernel/iommu_groups").display()))?;
    let via = request.via.unwrap_or(if before.owner == VFIO_PCI { Via::Vfio } else { Via::Debugfs });
    if !before.held_by.is_empty() && !request.force {
        bail!(
            "PE {group} is held by {}: a running VM owns it, and an injection would hit the guest; \
             --force injects anyway (through debugfs)",
            before.held_by.join(", ")
        );
    }
    let via = if before.held_by.is_empty() { via } else { Via::Debugfs };
    let err_injct = match via {
        Via::Vfio => {
            if before.owner != VFIO_PCI {
                bail!("PE {group} is owned by {}, not vfio-pci: use --via debugfs", before.owner);
            }
            let host = VfioHost::new(sysfs.clone(), &global.dev_vfio);
            host.pe_op(group, EehOp::Enable).with_context(|| format!("Cannot enable EEH on PE {group}"))?;
            host.pe_op(group, EehOp::InjectErr(request.injection))
                .with_context(|| format!("VFIO_EEH_PE_INJECT_ERR on PE {group} failed"))?;
            None
        }
        Via::Debugfs => {
            let pe = before.pe.with_context(|| {
                format!(
                    "PE {group} has no eeh_pe_config_addr in sysfs: the kernel has no EEH for it (not a POWER host?)"
                )
            })?;
            let debugfs = PowerpcDebugfs::new(&global.debugfs);
            debugfs.inject(before.domain, pe, &request.injection)?;
            Some(err_injct_line(pe, &request.injection))
        }
    };
    let pe = pes(global, false)?.into_iter().find(|pe| pe.group == group).unwrap_or(before);
    let view = View { group, via, err_injct, injection: request.injection, pe };
    out.print(&view, || state_table(std::slice::from_ref(&view.pe)))
}

/// An event with the IOMMU group of its PE, where sysfs knows it.
#[derive(Serialize)]
struct EventView {
    group: Option<PeId>,
    #[serde(flatten)]
    event: EehEvent,
}

fn event_row(event: &EventView) -> [String; 7] {
    let at = event.event.pe.map_or_else(
        || dash(event.event.phb.map(|phb| format!("PHB#{phb:x}"))),
        |pe| format!("PHB#{:x}-PE#{pe:x}", event.event.phb.unwrap_or_default()),
    );
    [
        event.event.seq.to_string(),
        format!("{:.6}", event.event.time_us as f64 / 1e6),
        at,
        dash(event.group),
        format!("{:?}", event.event.kind).to_lowercase(),
        dash(event.event.outcome),
        event.event.text.clone(),
    ]
}

/// `eehctl --host linux events [--follow]`.
pub fn events(global: &HostArgs, group_filter: Option<u32>, follow: bool, out: &Output) -> anyhow::Result<()> {
    let sysfs = Sysfs::new(global.sysfs_root());
    let mut groups = BTreeMap::new();
    if let Ok(topology) = sysfs.topology() {
        for (group, device) in topology.devices() {
            if let Ok((found, _)) = sysfs.device(device.addr) {
                if let Some(pe) = found.eeh_pe {
                    groups.insert((device.addr.domain(), pe), group.pe);
                }
            }
        }
    }
    let mut reader = Kmsg::open(&global.kmsg, follow)?;
    let mut log = EehLog::default();
    let mut collected = Vec::new();
    let mut stdout = std::io::stdout().lock();
    while let Some(record) = reader.next_record()? {
        let Some(event) = log.parse_record(&record) else { continue };
        let group = event.phb.zip(event.pe).and_then(|key| groups.get(&key).copied());
        if group_filter.is_some_and(|wanted| group != Some(PeId(wanted))) {
            continue;
        }
        let view = EventView { group, event };
        if !follow {
            collected.push(view);
            continue;
        }
        // One line per event as it comes.
        let line = match out.json {
            true => serde_json::to_string(&view)?,
            false => event_row(&view).join("  "),
        };
        if writeln!(stdout, "{line}").and_then(|()| stdout.flush()).is_err() {
            return Ok(());
        }
    }
    drop(stdout);
    #[derive(Serialize)]
    struct View {
        events: Vec<EventView>,
    }
    let view = View { events: collected };
    out.print(&view, || {
        let mut rows = table(&["SEQ", "TIME (s)", "PE", "GROUP", "EVENT", "OUTCOME", "TEXT"]);
        for event in &view.events {
            rows.add_row(event_row(event));
        }
        format!("{rows}\n")
    })
}

/// `eehctl --host linux max-freezes [N]`.
pub fn max_freezes(global: &HostArgs, set: Option<u32>, out: &Output) -> anyhow::Result<()> {
    #[derive(Serialize)]
    struct View {
        max_freezes: u32,
        previous: Option<u32>,
    }
    let debugfs = PowerpcDebugfs::new(&global.debugfs);
    let current = debugfs.max_freezes()?;
    let view = match set {
        Some(max) => {
            debugfs.set_max_freezes(max)?;
            View { max_freezes: debugfs.max_freezes()?, previous: Some(current) }
        }
        None => View { max_freezes: current, previous: None },
    };
    out.print(&view, || match view.previous {
        Some(previous) => format!("eeh_max_freezes: {} (was {previous})\n", view.max_freezes),
        None => format!("eeh_max_freezes: {}\n", view.max_freezes),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pe_states_read_as_words() {
        assert_eq!(describe_pe_state((0x78, 0)), "normal");
        assert_eq!(describe_pe_state((0x60, 0x3)), "frozen (isolated, recovering)");
        assert_eq!(describe_pe_state((0x4, 0x8)), "reset (reset)");
        assert_eq!(describe_pe_state((0x2, 0)), "not supported");
    }
}
