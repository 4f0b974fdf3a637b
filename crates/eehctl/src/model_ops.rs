//! `eehctl model-ops [--device ADDR]`: the `VFIO_EEH_PE_OP` sequence the
//! guest model makes when a passed-through device with no guest driver is
//! frozen and recovered ("Reset with hotplug activity"), one `name=result`
//! per line (or `--json`). `tests/qemu/e2e.sh` compares it op for op with
//! the real guest's op log (`eehctl oplog`) of the same scenario.

use serde::Serialize;
use vfio_eeh::addr::PciAddr;
use vfio_eeh_sim::opseq::no_driver_recovery;

use crate::output::Output;

/// `eehctl model-ops` options.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The device of the built-in simulated host to pass through.
    #[arg(long, value_name = "ADDR", default_value = "0000:01:00.0")]
    device: PciAddr,
}

/// The JSON document.
#[derive(Serialize)]
struct ModelOpsView {
    scenario: &'static str,
    device: PciAddr,
    /// `name=result`, oldest first.
    ops: Vec<String>,
}

/// Runs the scenario on the model and prints its ops.
pub fn run(args: &Args, out: &Output) -> anyhow::Result<()> {
    let ops = no_driver_recovery(args.device)?;
    let view = ModelOpsView { scenario: "no-driver-recovery", device: args.device, ops };
    out.print(&view, || view.ops.iter().map(|op| format!("{op}\n")).collect())
}
