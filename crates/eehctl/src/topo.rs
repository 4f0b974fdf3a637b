//! `eehctl topo`: PHBs → IOMMU groups (PEs) → devices, with each device's
//! driver and each group's passthrough readiness.

use std::fmt::Write as _;

use serde::Serialize;
use vfio_eeh::addr::{PciAddr, PeId};
use vfio_eeh::topology::{Device, Readiness, Topology};

use crate::host::Host;
use crate::output::{table, Output};

/// `eehctl topo` options (the host options and `--json` are global).
#[derive(Debug, clap::Args)]
pub struct Args {}

/// The JSON document.
#[derive(Serialize)]
struct TopoView {
    host: &'static str,
    phbs: Vec<PhbView>,
    ungrouped: Vec<DeviceView>,
    problems: Vec<String>,
}

#[derive(Serialize)]
struct PhbView {
    domain: u32,
    groups: Vec<GroupView>,
}

#[derive(Serialize)]
struct GroupView {
    pe: PeId,
    ready: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    why: Option<String>,
    devices: Vec<DeviceView>,
}

#[derive(Serialize)]
struct DeviceView {
    addr: PciAddr,
    vendor: String,
    device: String,
    class: String,
    driver: Option<String>,
}

impl From<&Device> for DeviceView {
    fn from(d: &Device) -> Self {
        DeviceView {
            addr: d.addr,
            vendor: format!("{:#06x}", d.vendor),
            device: format!("{:#06x}", d.device),
            class: format!("{:#08x}", d.class),
            driver: d.driver.clone(),
        }
    }
}

impl TopoView {
    fn new(host: &'static str, topo: &Topology) -> Self {
        let phbs = topo
            .phbs
            .iter()
            .map(|phb| PhbView {
                domain: phb.domain,
                groups: phb
                    .groups
                    .iter()
                    .map(|g| {
                        let why = match g.readiness() {
                            Readiness::Yes => None,
                            Readiness::No { why } => Some(why),
                        };
                        GroupView {
                            pe: g.pe,
                            ready: why.is_none(),
                            why,
                            devices: g.devices.iter().map(Into::into).collect(),
                        }
                    })
                    .collect(),
            })
            .collect();
        TopoView {
            host,
            phbs,
            ungrouped: topo.ungrouped.iter().map(Into::into).collect(),
            problems: topo.problems.clone(),
        }
    }

    /// The table, then why groups are not ready, then the problems.
    fn human(&self) -> String {
        let mut rows = table(&["PHB", "PE", "READY", "DEVICE", "ID", "CLASS", "DRIVER"]);
        let mut notes = String::new();
        let device_cells = |d: &DeviceView| {
            let id = format!("{}:{}", &d.vendor[2..], &d.device[2..]);
            [d.addr.to_string(), id, d.class[2..].to_owned(), d.driver.clone().unwrap_or_else(|| "-".into())]
        };
        for phb in &self.phbs {
            let mut phb_cell = format!("{:04x}", phb.domain);
            for group in &phb.groups {
                let mut group_cells = [group.pe.to_string(), if group.ready { "yes" } else { "no" }.to_owned()];
                if let Some(why) = &group.why {
                    writeln!(notes, "PE {} is not ready for passthrough: {why}", group.pe)
                        .expect("writing to a String");
                }
                for device in &group.devices {
                    let [pe, ready] = std::mem::take(&mut group_cells);
                    rows.add_row([std::mem::take(&mut phb_cell), pe, ready].into_iter().chain(device_cells(device)));
                }
            }
            for device in self.ungrouped.iter().filter(|d| d.addr.domain() == phb.domain) {
                rows.add_row(
                    [std::mem::take(&mut phb_cell), "-".into(), "no group".into()]
                        .into_iter()
                        .chain(device_cells(device)),
                );
            }
        }
        let mut text = format!("{rows}\n");
        if !notes.is_empty() {
            text.push('\n');
            text.push_str(&notes);
        }
        if !self.problems.is_empty() {
            writeln!(text, "\nProblems reading the topology:").expect("writing to a String");
            for problem in &self.problems {
                writeln!(text, "  {problem}").expect("writing to a String");
            }
        }
        text
    }
}

/// Prints the host's topology.
pub fn run(host: &Host, _args: &Args, out: &Output) -> anyhow::Result<()> {
    let view = TopoView::new(host.name(), &host.topology()?);
    out.print(&view, || view.human())
}
