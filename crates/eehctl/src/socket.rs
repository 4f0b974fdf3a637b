//! The `--socket` option of the commands that act on a VMM running under the
//! preload library (`inject`, `state`, `events`, `oplog`): they talk to the
//! simulated host inside that process through its control socket.

use std::path::PathBuf;

use anyhow::Context;
use vfio_eeh_shim::client::Client;
use vfio_eeh_shim::config::ENV_SOCKET;

/// Where the VMM's control socket is.
#[derive(Debug, clap::Args)]
pub struct SocketArgs {
    /// The control socket of a process running under the preload library
    /// (`eehctl shim` prints it; it exists once the process opened /dev/vfio).
    #[arg(long, value_name = "PATH", env = ENV_SOCKET)]
    pub socket: Option<PathBuf>,
}

impl SocketArgs {
    /// A connection to the socket.
    pub fn connect(&self) -> anyhow::Result<Client> {
        let socket = self.socket.as_deref().context(
            "--socket (or $VFIO_EEH_SHIM_SOCKET) names the VMM to act on; --host linux acts on this host instead",
        )?;
        Client::connect(socket).context("Is a process running under `eehctl shim` that opened /dev/vfio?")
    }
}
