//! The `--socket` option of the commands that act on a VMM running under the
//! preload library (`inject`, `state`, `events`, `oplog`): they talk to the
//! simulated host inside that process through its control socket.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use vfio_eeh_shim::config::ENV_SOCKET;
use vfio_shim_launch::client::Client;

/// Where the VMM's control socket is. Commands that also reach eehd
/// (`--connect`) make it optional with [`OR_CONNECT`].
#[derive(Debug, clap::Args)]
pub struct SocketArgs {
    /// The control socket of a process running under the preload library
    /// (`eehctl shim` prints it; it exists once the process opened /dev/vfio).
    #[arg(long, value_name = "PATH", env = ENV_SOCKET)]
    pub socket: Option<PathBuf>,
    /// Seconds to wait for the process to take and answer each request
    /// (fractions allowed).
    #[arg(long, value_name = "SECONDS", default_value_t = Client::DEFAULT_TIMEOUT.as_secs_f64(), value_parser = parse_timeout)]
    pub timeout: f64,
}

fn parse_timeout(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(seconds) if seconds.is_finite() && seconds > 0.0 && seconds <= 86_400.0 => Ok(seconds),
        _ => Err(format!("{text:?} is not a number of seconds in (0, 86400]")),
    }
}

/// `#[command(mut_arg("socket", OR_CONNECT))]`: `--socket` or `--connect`,
/// not both (neither is needed with the global `--host linux`, which clap
/// cannot see from a subcommand, so a missing one is reported when used).
pub const OR_CONNECT: fn(clap::Arg) -> clap::Arg = |arg| arg.conflicts_with("connect");

impl SocketArgs {
    /// A connection to the socket.
    pub fn connect(&self) -> anyhow::Result<Client> {
        let socket = self.socket.as_deref().context(
            "Give --socket PATH (a VMM under the preload library), --connect SOCKET (eehd) or --host linux (this host)",
        )?;
        Client::connect(socket, Duration::from_secs_f64(self.timeout))
            .context("Is a process running under `eehctl shim` that opened /dev/vfio?")
    }
}
