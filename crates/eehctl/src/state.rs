//! `eehctl state --socket PATH`: every PE of the simulated host inside a
//! running VMM, with its state and devices.

use serde::Serialize;
use vfio_eeh_shim::protocol::PeReport;

use crate::connect::{self, ConnectArgs};
use crate::output::{table, Output};
use crate::socket::{SocketArgs, OR_CONNECT};

/// `eehctl state` options.
#[derive(Debug, clap::Args)]
#[command(mut_arg("socket", OR_CONNECT))]
pub struct Args {
    #[command(flatten)]
    socket: SocketArgs,
    /// With --host linux: also ask VFIO_EEH_PE_GET_STATE of each vfio-pci PE
    /// no process holds (this opens its devices, which resets them).
    #[arg(long)]
    pub vfio: bool,
    #[command(flatten)]
    pub daemon: ConnectArgs,
}

/// The JSON document.
#[derive(Serialize)]
struct StateView {
    pes: Vec<PeReport>,
}

/// The table of `pes` (also used by `eehctl inject`).
pub fn pe_table(pes: &[PeReport]) -> String {
    let mut rows = table(&["PE", "STATE", "UNAVAILABLE FOR", "DEVICES"]);
    for pe in pes {
        let unavailable = pe.unavailable_for_ms.map_or_else(|| "-".to_owned(), |ms| format!("{ms} ms"));
        let devices: Vec<String> = pe.devices.iter().map(ToString::to_string).collect();
        rows.add_row([pe.pe.to_string(), pe.state.to_string(), unavailable, devices.join(" ")]);
    }
    format!("{rows}\n")
}

/// Prints every PE's state.
pub fn run(args: &Args, out: &Output) -> anyhow::Result<()> {
    if args.daemon.connect.is_some() {
        return connect::state(&args.daemon, out);
    }
    let view = StateView { pes: args.socket.connect()?.state()? };
    out.print(&view, || pe_table(&view.pes))
}
