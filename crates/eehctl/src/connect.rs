//! `--connect SOCKET`: the commands that act on the host an `eehd` serves
//! (docs/protocol.md). `state`, `inject` and `events` take it in place of
//! `--socket`, which reaches the host inside one VMM; `map`, `reset` and
//! `claims` exist only for eehd. Operator requests (`state`, `inject`, `claims`) need the
//! caller to be an operator in eehd's policy; a VM's requests (`map`,
//! `reset`, `events --follow`, `state --vm`) act for the VM `--vm` names.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use eehd::client::Client;
use eehd::protocol::{Answer, InjectTarget, PeAction, PeEvent, PeEventKind, PeView, Request, VmView};
use serde::Serialize;
use vfio_eeh::addr::{Buid, GuestAddr, PciAddr, PeId};

use crate::output::{table, Output};

/// The options that pick an eehd and the VM to act for.
#[derive(Debug, clap::Args)]
pub struct ConnectArgs {
    /// Act on the host eehd serves at this socket (instead of a VMM's
    /// control socket, `--socket`).
    #[arg(long, value_name = "SOCKET")]
    pub connect: Option<PathBuf>,
    /// With --connect: the VM to act for (eehd's policy must allow it).
    #[arg(long, value_name = "NAME", requires = "connect")]
    pub vm: Option<String>,
}

impl ConnectArgs {
    /// A session with eehd for `--vm` (or an operator session), if
    /// `--connect` was given.
    fn session(&self) -> anyhow::Result<Client> {
        let socket = self.connect.as_deref().context("This command needs --connect SOCKET (an eehd)")?;
        Client::connect(socket, self.vm.as_deref())
            .with_context(|| format!("Cannot open a session with eehd at {}", socket.display()))
    }

    /// The session of the VM `--vm` names, for `what`.
    fn vm_session(&self, what: &str) -> anyhow::Result<Client> {
        if self.vm.is_none() {
            bail!("{what} acts for a VM: give --vm NAME");
        }
        self.session()
    }
}

/// Sends `request` and returns the answer, naming the request in errors.
fn ask(client: &mut Client, request: &Request) -> anyhow::Result<Answer> {
    client.request(request).with_context(|| format!("eehd: {}", request.name()))
}

fn unexpected(request: &Request, answer: &Answer) -> anyhow::Error {
    anyhow::anyhow!("eehd answered {} with {answer:?}", request.name())
}

/// The PHBs and PEs of the whole host (operator).
fn host_state(client: &mut Client) -> anyhow::Result<HostStateView> {
    match ask(client, &Request::HostState)? {
        Answer::HostState { host, phbs } => Ok(HostStateView {
            host,
            pes: phbs
                .into_iter()
                .flat_map(|phb| phb.pes.into_iter().map(move |pe| HostPe { phb: phb.domain, pe }))
                .collect(),
        }),
        other => Err(unexpected(&Request::HostState, &other)),
    }
}

/// The VM's PEs.
fn vm_state(client: &mut Client) -> anyhow::Result<Vec<PeView>> {
    match ask(client, &Request::State)? {
        Answer::State { pes } => Ok(pes),
        other => Err(unexpected(&Request::State, &other)),
    }
}

/// The VM's table.
fn vm_table(client: &mut Client) -> anyhow::Result<VmView> {
    match ask(client, &Request::MapList)? {
        Answer::Maps(view) => Ok(view),
        other => Err(unexpected(&Request::MapList, &other)),
    }
}

/// A PE of the host, on its PHB.
#[derive(Serialize)]
struct HostPe {
    phb: u32,
    #[serde(flatten)]
    pe: PeView,
}

/// `state` without `--vm`, and `inject`'s PEs afterwards.
#[derive(Serialize)]
struct HostStateView {
    host: String,
    pes: Vec<HostPe>,
}

/// A table of PEs; `phb` and `owner` columns where known.
fn pe_rows<'a>(pes: impl IntoIterator<Item = (Option<u32>, &'a PeView)>) -> String {
    let mut rows = table(&["PHB", "PE", "STATE", "UNAVAILABLE FOR", "OWNER", "DEVICES"]);
    for (phb, pe) in pes {
        let unavailable = match pe.unavailable_for_ms {
            None => "-".to_owned(),
            Some(0) => "for good".to_owned(),
            Some(ms) => format!("{ms} ms"),
        };
        let devices: Vec<String> = pe.devices.iter().map(ToString::to_string).collect();
        rows.add_row([
            phb.map_or_else(|| "-".to_owned(), |d| format!("{d:04x}")),
            pe.pe.to_string(),
            pe.state.to_string(),
            unavailable,
            pe.owner.clone().unwrap_or_else(|| "-".to_owned()),
            devices.join(" "),
        ]);
    }
    format!("{rows}\n")
}

fn host_rows(pes: &[HostPe]) -> String {
    pe_rows(pes.iter().map(|p| (Some(p.phb), &p.pe)))
}

/// `eehctl state --connect S`: every PE of the host with its owner, or
/// with `--vm` the VM's PEs.
pub fn state(args: &ConnectArgs, out: &Output) -> anyhow::Result<()> {
    let mut client = args.session()?;
    match &args.vm {
        None => {
            let view = host_state(&mut client)?;
            out.print(&view, || host_rows(&view.pes))
        }
        Some(vm) => {
            #[derive(Serialize)]
            struct VmState<'a> {
                vm: &'a str,
                pes: Vec<PeView>,
            }
            let view = VmState { vm, pes: vm_state(&mut client)? };
            out.print(&view, || pe_rows(view.pes.iter().map(|pe| (None, pe))))
        }
    }
}

/// `eehctl inject --connect S`: an error where `target` says (operator);
/// prints the PEs it reached afterwards.
pub fn inject(args: &ConnectArgs, target: InjectTarget, out: &Output) -> anyhow::Result<()> {
    let mut client = args.session()?;
    ask(&mut client, &Request::Inject { target })?;
    let host = host_state(&mut client)?;
    let reached: Vec<HostPe> = host
        .pes
        .into_iter()
        .filter(|p| match target {
            InjectTarget::PeFreeze { pe } | InjectTarget::PeError { pe, .. } => p.pe.pe == pe,
            InjectTarget::Phb { domain, .. } => p.phb == domain,
        })
        .collect();
    #[derive(Serialize)]
    struct InjectView {
        target: InjectTarget,
        pes: Vec<HostPe>,
    }
    let view = InjectView { target, pes: reached };
    out.print(&view, || host_rows(&view.pes))
}

/// An event as a line of text.
fn event_line(event: &PeEvent) -> String {
    let what = match event.kind {
        PeEventKind::Frozen { count } => format!("frozen (freeze {count} in the window)"),
        PeEventKind::Recovered => "recovered".to_owned(),
        PeEventKind::Reset { reset } => format!("{reset:?} reset asserted").to_lowercase(),
        PeEventKind::PermanentlyFailed { count } => format!("permanently failed after {count} freezes"),
        PeEventKind::PhbFrozen { domain } => format!("frozen by an error on PHB {domain:04x}"),
        PeEventKind::PhbDead { domain } => format!("failed for good: PHB {domain:04x} is dead"),
    };
    format!("{:>8} {:>12.3} s  PE {}  {what}\n", event.seq, event.at_ns as f64 / 1e9, event.pe)
}

/// `eehctl events --connect S --vm NAME --follow`: the VM's PE events as
/// they happen, one line (or one JSON object) each, until `count` of them
/// (of PE `pe`, if given) or the daemon closes the session.
pub fn follow_events(args: &ConnectArgs, pe: Option<u32>, count: Option<u64>, out: &Output) -> anyhow::Result<()> {
    let mut client = args.vm_session("events --follow")?;
    ask(&mut client, &Request::Subscribe)?;
    tracing::info!("following the events of VM {}", args.vm.as_deref().unwrap_or_default());
    let mut printed = 0;
    while count.is_none_or(|count| printed < count) {
        let Some(event) = client.next_event(Duration::from_secs(3600)).context("eehd: events")? else { continue };
        if pe.is_some_and(|pe| event.pe.0 != pe) {
            continue;
        }
        out.line(&event, || event_line(&event))?;
        printed += 1;
    }
    Ok(())
}

/// `eehctl map --connect S --vm NAME …`: the VM's address map.
#[derive(Debug, clap::Args)]
#[command(mut_arg("connect", |a| a.required(true)), mut_arg("vm", |a| a.required(true)))]
pub struct MapArgs {
    #[command(flatten)]
    daemon: ConnectArgs,
    #[command(subcommand)]
    change: Option<MapChange>,
}

/// A change to the VM's table (each prints the table afterwards).
#[derive(Debug, clap::Subcommand)]
enum MapChange {
    /// Print the VM's PHBs, claims and mappings (the default).
    List,
    /// Map host function HOST at guest address GUEST (BUID:bus:slot.func):
    /// VFIO_DEVICE_ADDR_MAPPING_SET.
    Set {
        /// The host function (`0000:01:00.0`).
        #[arg(value_name = "HOST")]
        function: PciAddr,
        /// The guest address (`0x800000020000000:00:01.0`).
        guest: GuestAddr,
    },
    /// Remove a host function's mapping (VFIO_DEVICE_ADDR_MAPPING_CLEAR).
    Clear {
        /// The host function.
        #[arg(value_name = "HOST")]
        function: PciAddr,
    },
    /// Claim a group (PE) for the VM.
    Claim {
        /// The group.
        group: u32,
    },
    /// Release a group (refused while devices of it are mapped).
    Release {
        /// The group.
        group: u32,
    },
    /// Give the VM a virtual PHB.
    PhbAdd {
        /// Its BUID (`0x800000020000000`).
        buid: Buid,
    },
    /// Take a virtual PHB away (refused while devices are mapped under it).
    PhbRemove {
        /// Its BUID.
        buid: Buid,
    },
}

fn vm_rows(vms: &[VmView]) -> String {
    let mut rows = table(&["VM", "PHBS", "CLAIMS", "MAPPINGS (guest -> host, PE)"]);
    for vm in vms {
        let phbs: Vec<String> = vm.phbs.iter().map(ToString::to_string).collect();
        let claims: Vec<String> = vm.claims.iter().map(ToString::to_string).collect();
        let mappings: Vec<String> =
            vm.mappings.iter().map(|m| format!("{} -> {} (PE {})", m.guest, m.host, m.pe)).collect();
        rows.add_row([vm.vm.clone(), phbs.join(" "), claims.join(" "), mappings.join("\n")]);
    }
    format!("{rows}\n")
}

/// Applies the change, then prints the VM's table.
pub fn map(map: &MapArgs, out: &Output) -> anyhow::Result<()> {
    let mut client = map.daemon.vm_session("map")?;
    let request = match map.change.as_ref().unwrap_or(&MapChange::List) {
        MapChange::List => None,
        &MapChange::Set { function, guest } => Some(Request::MapSet { host: function, guest }),
        &MapChange::Clear { function } => Some(Request::MapClear { host: function }),
        &MapChange::Claim { group } => Some(Request::Claim { group: PeId(group) }),
        &MapChange::Release { group } => Some(Request::Release { group: PeId(group) }),
        &MapChange::PhbAdd { buid } => Some(Request::PhbAdd { buid }),
        &MapChange::PhbRemove { buid } => Some(Request::PhbRemove { buid }),
    };
    if let Some(request) = request {
        ask(&mut client, &request)?;
    }
    let view = vm_table(&mut client)?;
    out.print(&view, || vm_rows(std::slice::from_ref(&view)))
}

/// `eehctl claims --connect S` options.
#[derive(Debug, clap::Args)]
#[command(mut_arg("connect", |a| a.required(true)))]
pub struct ClaimsArgs {
    #[command(flatten)]
    daemon: ConnectArgs,
}

/// `eehctl claims --connect S`: every VM's PHBs, claims and mappings
/// (operator).
pub fn claims(args: &ClaimsArgs, out: &Output) -> anyhow::Result<()> {
    let mut client = args.daemon.session()?;
    #[derive(Serialize)]
    struct ClaimsView {
        vms: Vec<VmView>,
    }
    let view = match ask(&mut client, &Request::Claims)? {
        Answer::Claims { vms } => ClaimsView { vms },
        other => return Err(unexpected(&Request::Claims, &other)),
    };
    out.print(&view, || vm_rows(&view.vms))
}

/// `eehctl reset --connect S --vm NAME --pe N`: a PE reset as the guest's
/// firmware does it — assert, hold, deactivate (`VFIO_EEH_PE_OP` on a PE
/// the VM claimed).
#[derive(Debug, clap::Args)]
#[command(mut_arg("connect", |a| a.required(true)), mut_arg("vm", |a| a.required(true)))]
pub struct ResetArgs {
    #[command(flatten)]
    daemon: ConnectArgs,
    /// The PE (a group the VM claimed).
    #[arg(long)]
    pe: u32,
    /// Which reset.
    #[arg(long, value_enum, default_value_t = ResetChoice::Hot)]
    kind: ResetChoice,
    /// Milliseconds to hold the reset before deactivating it.
    #[arg(long, value_name = "MS", default_value_t = 250)]
    hold_ms: u64,
}

/// `--kind` values.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum ResetChoice {
    Hot,
    Fundamental,
}

/// Resets the PE and prints its state afterwards.
pub fn reset(reset: &ResetArgs, out: &Output) -> anyhow::Result<()> {
    let mut client = reset.daemon.vm_session("reset")?;
    let group = PeId(reset.pe);
    let assert = match reset.kind {
        ResetChoice::Hot => PeAction::ResetHot,
        ResetChoice::Fundamental => PeAction::ResetFundamental,
    };
    ask(&mut client, &Request::PeOp { group, action: assert })?;
    std::thread::sleep(Duration::from_millis(reset.hold_ms));
    ask(&mut client, &Request::PeOp { group, action: PeAction::ResetDeactivate })?;
    let pes: Vec<PeView> = vm_state(&mut client)?.into_iter().filter(|p| p.pe == group).collect();
    #[derive(Serialize)]
    struct ResetView {
        pes: Vec<PeView>,
    }
    let view = ResetView { pes };
    out.print(&view, || pe_rows(view.pes.iter().map(|pe| (None, pe))))
}

#[cfg(test)]
mod tests {
    use vfio_eeh::ops::ResetKind;

    use super::*;

    #[test]
    fn events_read_as_one_line_each() {
        let event = PeEvent { seq: 7, at_ns: 1_500_000_000, pe: PeId(1), kind: PeEventKind::Frozen { count: 2 } };
        assert_eq!(event_line(&event), "       7        1.500 s  PE 1  frozen (freeze 2 in the window)\n");
        let reset = PeEvent { kind: PeEventKind::Reset { reset: ResetKind::Fundamental }, ..event };
        assert!(event_line(&reset).ends_with("fundamental reset asserted\n"));
    }
}
