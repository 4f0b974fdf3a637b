//! `eehctl inject --socket PATH --pe N`: an error in a PE of the simulated
//! host inside a running VMM — a freeze now (the default), or an error with
//! `VFIO_EEH_PE_INJECT_ERR` semantics (`--func`), which freezes the PE at
//! once or on the first matching access, as the VMM's
//! `VFIO_EEH_SHIM_INJECTION` says.
//!
//! `eehctl inject --socket PATH --phb DOMAIN [--dead]`: a PHB-wide error
//! (`vfio_eeh_sim::phb`): a fence, which every PE under the PHB sees and the
//! host recovers with a complete reset, or with `--dead` a PHB that dies and
//! takes every PE under it down for good.
//!
//! `eehctl --host linux inject --pe N | --device ADDR --func N`: an error in a
//! PE of the real host (`crate::linux_host`), through VFIO or debugfs.

use anyhow::Context;
use eehd::protocol::InjectTarget;
use serde::Serialize;
use vfio_eeh::addr::PeId;
use vfio_eeh::ops::{ErrFunc, ErrInjection, ErrType};
use vfio_eeh_shim::protocol::{Injection, PeReport};
use vfio_eeh_sim::phb::{PhbError, PhbStatus};

use crate::connect::{self, ConnectArgs};
use crate::output::Output;
use crate::socket::{SocketArgs, OR_CONNECT};
use crate::state::pe_table;

/// `eehctl inject` options.
#[derive(Debug, clap::Args)]
#[command(mut_arg("socket", OR_CONNECT))]
pub struct Args {
    #[command(flatten)]
    socket: SocketArgs,
    #[command(flatten)]
    pub daemon: ConnectArgs,
    /// The PE (IOMMU group number).
    #[arg(long, required_unless_present_any = ["phb", "device"], conflicts_with = "phb")]
    pe: Option<u32>,
    /// With --host linux: the PE of this device (e.g. 0000:01:00.0).
    #[arg(long, conflicts_with_all = ["pe", "phb"])]
    device: Option<vfio_eeh::addr::PciAddr>,
    /// With --host linux: how to inject [default: vfio for a vfio-pci PE,
    /// else debugfs].
    #[arg(long, value_enum)]
    via: Option<crate::linux_host::Via>,
    /// With --host linux: inject even into a PE a running process (a VM) holds.
    #[arg(long)]
    force: bool,
    /// A PHB-wide error instead: the PHB's PCI domain (decimal or 0x hex).
    /// It fences, and the host recovers it, unless `--dead`.
    #[arg(long, value_name = "DOMAIN", value_parser = parse_u32)]
    phb: Option<u32>,
    /// With `--phb`: the PHB dies; nothing recovers it.
    #[arg(long, requires = "phb", conflicts_with = "pe")]
    dead: bool,
    /// Inject this error function (0..=19, PAPR `ibm,errinjct` numbering)
    /// instead of freezing the PE outright.
    #[arg(long, value_name = "N", conflicts_with = "phb")]
    func: Option<u32>,
    /// Address width of the injected error's address.
    #[arg(long = "type", value_enum, default_value_t = Width::Bus32, requires = "func")]
    width: Width,
    /// Bus address the error matches.
    #[arg(long, value_parser = parse_u64, default_value = "0", requires = "func")]
    addr: u64,
    /// Bits of `--addr` to compare; 0 matches any address.
    #[arg(long, value_parser = parse_u64, default_value = "0", requires = "func")]
    mask: u64,
}

/// `--type` values.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Width {
    /// 32-bit bus address.
    #[value(name = "32")]
    Bus32,
    /// 64-bit bus address.
    #[value(name = "64")]
    Bus64,
}

/// A decimal or `0x` hexadecimal number.
fn parse_u64(text: &str) -> Result<u64, std::num::ParseIntError> {
    match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => text.parse(),
    }
}

/// A decimal or `0x` hexadecimal `u32`.
fn parse_u32(text: &str) -> Result<u32, String> {
    let value = parse_u64(text).map_err(|e| e.to_string())?;
    u32::try_from(value).map_err(|e| e.to_string())
}

/// The JSON document of a PHB injection.
#[derive(Serialize)]
struct PhbInjectView {
    error: PhbError,
    /// The PHB afterwards.
    phb: PhbStatus,
    /// Its PEs afterwards.
    pes: Vec<PeReport>,
}

/// The JSON document.
#[derive(Serialize)]
struct InjectView {
    injection: Injection,
    /// The PE afterwards.
    pe: PeReport,
}

/// The `--func` error, for a Linux host (which has no outright freeze).
pub fn linux_request(args: &Args) -> anyhow::Result<crate::linux_host::InjectRequest> {
    anyhow::ensure!(args.phb.is_none(), "--phb needs --socket or --connect; a Linux host injects by --pe or --device");
    let Injection::Error(injection) = injection(args)? else {
        anyhow::bail!("--host linux needs --func (e.g. --func 4, a config-space load)");
    };
    let target = match (args.pe, args.device) {
        (Some(pe), _) => Ok(PeId(pe)),
        (None, Some(device)) => Err(device),
        (None, None) => anyhow::bail!("--pe or --device is required"),
    };
    Ok(crate::linux_host::InjectRequest { target, injection, via: args.via, force: args.force })
}

/// The injection the options describe.
fn injection(args: &Args) -> anyhow::Result<Injection> {
    Ok(match args.func {
        None => Injection::Freeze,
        Some(raw) => Injection::Error(ErrInjection {
            kind: match args.width {
                Width::Bus32 => ErrType::Bus32,
                Width::Bus64 => ErrType::Bus64,
            },
            func: ErrFunc::from_raw(raw).with_context(|| format!("No error function {raw} (0..=19)"))?,
            addr: args.addr,
            mask: args.mask,
        }),
    })
}

/// Injects and prints the state of the PE (or the PHB and its PEs)
/// afterwards.
pub fn run(args: &Args, out: &Output) -> anyhow::Result<()> {
    anyhow::ensure!(args.device.is_none(), "--device names a PE on a Linux host: it needs --host linux");
    if let Some(domain) = args.phb {
        if args.daemon.connect.is_some() {
            return connect::inject(&args.daemon, InjectTarget::Phb { domain, dead: args.dead }, out);
        }
        let error = if args.dead { PhbError::Dead } else { PhbError::Fence };
        let (phb, pes) = args.socket.connect()?.inject_phb(domain, error)?;
        let view = PhbInjectView { error, phb, pes };
        return out.print(&view, || format!("PHB {domain:04x}: {:?}\n{}", view.phb.condition, pe_table(&view.pes)));
    }
    let pe = PeId(args.pe.context("--pe or --phb is required")?);
    let injection = injection(args)?;
    if args.daemon.connect.is_some() {
        let target = match injection {
            Injection::Freeze => InjectTarget::PeFreeze { pe },
            Injection::Error(injection) => InjectTarget::PeError { pe, injection },
        };
        return connect::inject(&args.daemon, target, out);
    }
    let pe = args.socket.connect()?.inject(pe, injection)?;
    let view = InjectView { injection, pe };
    out.print(&view, || pe_table(std::slice::from_ref(&view.pe)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_in_decimal_and_hex() {
        assert_eq!(parse_u64("4096"), Ok(4096));
        assert_eq!(parse_u64("0x1000"), Ok(4096));
        assert!(parse_u64("0xg").is_err());
    }
}
