//! A real `eehd` process on a simulated host with virtual time, in a
//! temporary directory.

// Each test binary uses part of this module.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use eehd::client::Client;
use vfio_eeh::addr::{GuestAddr, PciAddr, PeId};

/// PHBs of the test topology.
pub const PHBS: u32 = 4;
/// PEs per PHB (one NVMe function each).
pub const PES_PER_PHB: u32 = 24;

/// A topology of `PHBS × PES_PER_PHB` single-function PEs; PE `g` holds
/// [`device_of`]`(g)`.
pub fn topology() -> String {
    let mut toml = String::new();
    for domain in 0..PHBS {
        toml.push_str(&format!("[[phb]]\ndomain = {domain}\n\n"));
        for n in 0..PES_PER_PHB {
            let group = domain * PES_PER_PHB + n;
            toml.push_str(&format!(
                "[[phb.pe]]\ngroup = {group}\ndevice = [{{ addr = \"{}\", kind = \"nvme\" }}]\n\n",
                device_of(PeId(group))
            ));
        }
    }
    toml
}

/// The one function of PE `pe`.
pub fn device_of(pe: PeId) -> PciAddr {
    let (domain, n) = (pe.0 / PES_PER_PHB, pe.0 % PES_PER_PHB);
    PciAddr::new(domain, u8::try_from(n + 1).unwrap(), 0, 0).unwrap()
}

/// A guest address under `buid`.
pub fn guest(buid: u64, slot: u8) -> GuestAddr {
    GuestAddr::new(vfio_eeh::addr::Buid(buid), 0, slot, 0).unwrap()
}

/// A running daemon.
pub struct Daemon {
    child: Child,
    pub socket: PathBuf,
}

impl Daemon {
    /// Starts eehd with state in `dir` and waits until it answers.
    pub fn start(dir: &Path, extra: &[&str]) -> Daemon {
        let topology = dir.join("topology.toml");
        if !topology.exists() {
            std::fs::write(&topology, self::topology()).unwrap();
        }
        let socket = dir.join("eehd.sock");
        let child = Command::new(env!("CARGO_BIN_EXE_eehd"))
            .args(["--host", "sim", "--sim-clock", "virtual", "--hello-timeout", "2"])
            .arg("--topology")
            .arg(&topology)
            .arg("--socket")
            .arg(&socket)
            .arg("--state-dir")
            .arg(dir.join("state"))
            .args(extra)
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let daemon = Daemon { child, socket };
        let deadline = Instant::now() + Duration::from_secs(20);
        while Client::connect(&daemon.socket, None).is_err() {
            assert!(Instant::now() < deadline, "eehd did not come up");
            std::thread::sleep(Duration::from_millis(20));
        }
        daemon
    }

    /// A session for `vm` (`None`: operator).
    pub fn client(&self, vm: Option<&str>) -> Client {
        Client::connect(&self.socket, vm).unwrap()
    }

    /// Sends a signal.
    pub fn signal(&self, signal: rustix::process::Signal) {
        let pid = rustix::process::Pid::from_raw(i32::try_from(self.child.id()).unwrap()).unwrap();
        rustix::process::kill_process(pid, signal).unwrap();
    }

    /// Waits for the daemon to exit (at most 20 s).
    pub fn wait(mut self) -> ExitStatus {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "eehd did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
