//! `eehctl events --socket PATH`: what happened to the PEs of the simulated
//! host inside a running VMM (freezes, resets, thaws, permanent failures),
//! oldest first.

use serde::Serialize;
use vfio_eeh_sim::event::SimEvent;

use crate::connect::{self, ConnectArgs};
use crate::output::{table, Output};
use crate::socket::{SocketArgs, OR_CONNECT};

/// `eehctl events` options.
#[derive(Debug, clap::Args)]
#[command(mut_arg("socket", OR_CONNECT))]
pub struct Args {
    #[command(flatten)]
    socket: SocketArgs,
    #[command(flatten)]
    pub daemon: ConnectArgs,
    /// Only events with a sequence number above this one.
    #[arg(long, value_name = "SEQ", default_value_t = 0)]
    after: u64,
    /// Only this PE's events.
    #[arg(long)]
    pub pe: Option<u32>,
    /// Print events as they happen, one line each (one JSON object each with
    /// --json), until interrupted: the kernel log's with --host linux, a VM's
    /// in eehd with --connect and --vm.
    #[arg(long, conflicts_with = "after")]
    pub follow: bool,
    /// With --follow: stop after this many events.
    #[arg(long, value_name = "N", requires = "follow")]
    count: Option<u64>,
}

/// The JSON document.
#[derive(Serialize)]
struct EventsView {
    events: Vec<SimEvent>,
}

/// An event's name and its other fields as `key=value`, from its JSON form
/// (the simulator's serde names are the vocabulary).
fn describe(event: &SimEvent) -> (String, String) {
    let Ok(serde_json::Value::Object(mut fields)) = serde_json::to_value(event.kind) else {
        return (format!("{:?}", event.kind), String::new());
    };
    let name = match fields.remove("event") {
        Some(serde_json::Value::String(name)) => name,
        _ => String::new(),
    };
    let details: Vec<String> = fields.iter().map(|(k, v)| format!("{k}={v}")).collect();
    (name, details.join(" "))
}

fn human(events: &[SimEvent]) -> String {
    let mut rows = table(&["SEQ", "TIME (s)", "PE", "EVENT", "DETAILS"]);
    for event in events {
        let (name, details) = describe(event);
        let seconds = format!("{:.3}", event.at_ns as f64 / 1e9);
        rows.add_row([event.seq.to_string(), seconds, event.pe.to_string(), name, details]);
    }
    format!("{rows}\n")
}

/// Prints the events.
pub fn run(args: &Args, out: &Output) -> anyhow::Result<()> {
    if args.daemon.connect.is_some() {
        anyhow::ensure!(args.follow, "eehd pushes events as they happen: give --follow (and --vm NAME)");
        return connect::follow_events(&args.daemon, args.pe, args.count, out);
    }
    anyhow::ensure!(
        !args.follow,
        "--follow follows the kernel log (--host linux) or a VM's events in eehd (--connect SOCKET --vm NAME)"
    );
    let mut events = args.socket.connect()?.events(args.after)?;
    events.retain(|e| args.pe.is_none_or(|pe| e.pe.0 == pe));
    let view = EventsView { events };
    out.print(&view, || human(&view.events))
}

#[cfg(test)]
mod tests {
    use vfio_eeh::addr::PeId;
    use vfio_eeh_sim::event::SimEventKind;

    use super::*;

    #[test]
    fn events_read_as_name_and_fields() {
        let event =
            SimEvent { seq: 3, at_ns: 1_500_000_000, pe: PeId(1), kind: SimEventKind::Enabled { thawed: true } };
        assert_eq!(describe(&event), ("enabled".to_owned(), "thawed=true".to_owned()));
        let text = human(&[event]);
        assert!(text.contains("1.500") && text.contains("enabled") && text.contains("thawed=true"), "{text}");
    }
}
