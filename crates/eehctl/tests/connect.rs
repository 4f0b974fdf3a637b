//! `eehctl --connect SOCKET` and `eehctl demo --daemon` against a real eehd
//! process.
//!
//! The eehd binary is found with `assert_cmd::cargo::cargo_bin("eehd")`
//! (the target directory eehctl was built in). `cargo nextest run
//! --workspace` and `cargo test --workspace` build it; with `-p eehctl`
//! alone run `cargo build -p eehd` first. A missing binary fails the
//! tests (cargo_bin panics); it never skips them.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command as StdCommand, Stdio};
use std::time::{Duration, Instant};

use assert_cmd::Command;
use serde_json::Value;

fn eehd_binary() -> PathBuf {
    assert_cmd::cargo::cargo_bin("eehd")
}

/// A running eehd on the simulated host (virtual clock) whose policy makes
/// this user an operator that may act as VMs `a` and `b`.
struct Eehd {
    child: Child,
    socket: PathBuf,
    _dir: tempfile::TempDir,
}

impl Eehd {
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("eehd.sock");
        let policy = dir.path().join("policy.toml");
        let uid = std::fs::metadata(dir.path()).map(|m| std::os::unix::fs::MetadataExt::uid(&m)).unwrap();
        std::fs::write(
            &policy,
            format!("[operators]\nuids = [{uid}]\n\n[[vm]]\nnames = [\"a\", \"b\"]\nuids = [{uid}]\n"),
        )
        .unwrap();
        let child = StdCommand::new(eehd_binary())
            .args(["--host", "sim", "--sim-clock", "virtual", "--socket"])
            .arg(&socket)
            .arg("--state-dir")
            .arg(dir.path().join("state"))
            .arg("--policy")
            .arg(&policy)
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let started = Instant::now();
        while !socket.exists() {
            assert!(started.elapsed() < Duration::from_secs(10), "eehd did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Eehd { child, socket, _dir: dir }
    }

    /// `eehctl COMMAND --connect SOCKET ARGS…`.
    fn eehctl(&self, command_and_args: &[&str]) -> Command {
        let (command, args) = command_and_args.split_first().unwrap();
        let mut cmd = Command::cargo_bin("eehctl").unwrap();
        cmd.arg(command).arg("--connect").arg(&self.socket).args(args);
        cmd
    }

    /// Enables EEH on `pe` as VM `vm`'s guest would (through the client
    /// library: eehctl has no command for it).
    fn enable_eeh(&self, vm: &str, pe: u32) {
        let mut client = eehd::client::Client::connect(&self.socket, Some(vm)).unwrap();
        let enable =
            eehd::protocol::Request::PeOp { group: vfio_eeh::addr::PeId(pe), action: eehd::protocol::PeAction::Enable };
        client.request(&enable).unwrap();
    }

    /// Runs `eehctl COMMAND --connect … ARGS --json` and returns its document.
    fn json(&self, args: &[&str]) -> Value {
        let out = self.eehctl(args).arg("--json").output().unwrap();
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).unwrap()
    }
}

impl Drop for Eehd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const NIC: &str = "0000:02:00.0"; // PE 1, PHB 0
const NVME: &str = "0000:01:00.0"; // PE 0, PHB 0
const PHB: &str = "0x800000020000000";

fn pe(pes: &Value, n: u64) -> &Value {
    pes.as_array().unwrap().iter().find(|p| p["pe"] == n).unwrap_or_else(|| panic!("no PE {n} in {pes}"))
}

#[test]
fn map_claims_state_inject_and_reset_through_eehd() {
    let eehd = Eehd::start();
    eehd.json(&["map", "--vm", "a", "claim", "1"]);
    eehd.json(&["map", "--vm", "a", "phb-add", PHB]);
    let table = eehd.json(&["map", "--vm", "a", "set", NIC, &format!("{PHB}:00:01.0")]);
    assert_eq!(table["vm"], "a");
    assert_eq!(table["claims"], serde_json::json!([1]));
    assert_eq!(table["mappings"][0]["host"], NIC);
    assert_eq!(table["mappings"][0]["pe"], 1);
    // `map` with nothing to change lists.
    assert_eq!(eehd.json(&["map", "--vm", "a"]), table);

    let claims = eehd.json(&["claims"]);
    assert_eq!(claims["vms"].as_array().unwrap().len(), 1, "{claims}");
    let mut vm_table = table.clone();
    vm_table.as_object_mut().unwrap().remove("schema_version");
    assert_eq!(claims["vms"][0], vm_table);

    let host = eehd.json(&["state"]);
    assert_eq!(host["host"], "sim");
    assert_eq!(pe(&host["pes"], 1)["owner"], "a");
    assert_eq!(pe(&host["pes"], 1)["phb"], 0);
    let text = eehd.eehctl(&["state"]).output().unwrap();
    let text = String::from_utf8(text.stdout).unwrap();
    assert!(text.contains("OWNER") && text.contains(NIC), "{text}");
    let mine = eehd.json(&["state", "--vm", "a"]);
    assert_eq!(mine["pes"].as_array().unwrap().len(), 1);

    let injected = eehd.json(&["inject", "--pe", "1"]);
    assert_eq!(injected["target"], serde_json::json!({"kind": "pe_freeze", "pe": 1}));
    assert_eq!(pe(&injected["pes"], 1)["state"], "stopped");

    // Only the VM that claimed the PE may reset it, once its guest enabled EEH.
    eehd.enable_eeh("a", 1);
    eehd.eehctl(&["reset", "--vm", "b", "--pe", "1", "--hold-ms", "0"]).assert().failure();
    let reset = eehd.json(&["reset", "--vm", "a", "--pe", "1", "--hold-ms", "0"]);
    assert_eq!(pe(&reset["pes"], 1)["state"], "normal", "the reset thawed the PE: {reset}");

    // A PHB fence: the host at once recovers the PHB with a complete reset,
    // and meanwhile every PE on it reads temporarily unavailable
    // (eeh_pe_get_state's parent check; see the simulator's phb module).
    let phb = eehd.json(&["inject", "--phb", "0"]);
    assert_eq!(phb["target"], serde_json::json!({"kind": "phb", "domain": 0, "dead": false}));
    assert!(phb["pes"].as_array().unwrap().iter().all(|p| p["phb"] == 0));
    assert_eq!(pe(&phb["pes"], 0)["state"], "unavailable");

    // Another VM's device is refused as one the host lacks.
    let refused = eehd.eehctl(&["map", "--vm", "b", "set", NVME, &format!("{PHB}:00:02.0")]).output().unwrap();
    assert!(!refused.status.success());
    let cleared = eehd.json(&["map", "--vm", "a", "clear", NIC]);
    assert_eq!(cleared["mappings"], serde_json::json!([]));
}

#[test]
fn commands_that_need_a_vm_or_the_daemon_say_so() {
    let eehd = Eehd::start();
    // Usage errors: map and reset act for a VM; claims, --phb and --follow are eehd's.
    eehd.eehctl(&["map"]).assert().code(2);
    eehd.eehctl(&["reset", "--pe", "1"]).assert().code(2);
    let eehctl = || Command::cargo_bin("eehctl").unwrap();
    eehctl().args(["claims"]).assert().code(2);
    // --phb reaches a VMM's simulated host too: here, no VMM answers.
    let out = eehctl().args(["inject", "--socket", "/nonexistent", "--phb", "0"]).output().unwrap();
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("eehctl shim"));
    let out = eehctl().args(["events", "--socket", "/nonexistent", "--follow"]).output().unwrap();
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("--follow follows"));
    // Neither --socket nor --connect: said when run (clap cannot see the
    // global --host linux, which needs neither).
    let out = eehctl().env_remove("VFIO_EEH_SHIM_SOCKET").args(["state"]).output().unwrap();
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("Give --socket PATH"));
    eehd.eehctl(&["state", "--socket", "/nonexistent"]).assert().code(2);
    // eehd keeps no history: events need --follow, and a VM.
    let out = eehd.eehctl(&["events"]).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("--follow"));
    let out = eehd.eehctl(&["events", "--follow"]).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("--vm NAME"));
}

#[test]
fn events_follow_prints_one_json_object_per_event() {
    let eehd = Eehd::start();
    eehd.json(&["map", "--vm", "a", "claim", "1"]);
    let mut follower = StdCommand::new(assert_cmd::cargo::cargo_bin("eehctl"))
        .args(["events", "--connect"])
        .arg(&eehd.socket)
        .args(["--vm", "a", "--follow", "--json", "--count", "2"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Injections count once the follower has subscribed.
    let mut stderr = BufReader::new(follower.stderr.take().unwrap());
    let mut line = String::new();
    while !line.contains("following the events of VM a") {
        line.clear();
        assert_ne!(stderr.read_line(&mut line).unwrap(), 0, "the follower ended before subscribing");
    }
    eehd.enable_eeh("a", 1);
    eehd.json(&["inject", "--pe", "1"]);
    eehd.json(&["reset", "--vm", "a", "--pe", "1", "--kind", "fundamental", "--hold-ms", "0"]);
    let out = wait_with_timeout(follower, Duration::from_secs(20));
    let events: Vec<Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(events.len(), 2, "{out}");
    assert!(events.iter().all(|e| e["schema_version"] == 1 && e["pe"] == 1));
    assert_eq!(events[0]["event"], "frozen");
    assert_eq!(events[1]["event"], "reset");
    assert_eq!(events[1]["reset"], "fundamental");
}

/// The child's stdout once it exits; kills it after `limit`.
fn wait_with_timeout(mut child: Child, limit: Duration) -> String {
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > limit {
            let _ = child.kill();
            panic!("the follower did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap()
}

fn demo(args: &[&str], eehd: Option<&Path>) -> Value {
    let mut cmd = Command::cargo_bin("eehctl").unwrap();
    cmd.args(["demo", "--json"]).args(args);
    if let Some(path) = eehd {
        cmd.arg("--daemon").arg("--eehd").arg(path);
    }
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn demo_through_eehd_agrees_with_the_demo_in_process() {
    let eehd = eehd_binary();
    for args in [&["--seed", "4"][..], &["--seed", "9", "--errors", "24", "--max-freezes", "2", "--rounds", "200"]] {
        let in_process = demo(args, None);
        let daemon = demo(args, Some(&eehd));
        assert_eq!(daemon["pes"], in_process["pes"], "{args:?}");
        assert_eq!(daemon["elapsed_ms"], in_process["elapsed_ms"], "{args:?}");
        assert_eq!(daemon["config"], in_process["config"]);
        let guest_lines = |report: &Value| -> Vec<Value> {
            report["timeline"].as_array().unwrap().iter().filter(|e| e["side"] == "guest").cloned().collect()
        };
        assert_eq!(guest_lines(&daemon), guest_lines(&in_process), "{args:?}");
        let host_frozen = daemon["timeline"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["side"] == "host" && e["event"].as_str().unwrap().starts_with("PE frozen"))
            .count();
        let freezes: u64 = daemon["pes"].as_array().unwrap().iter().map(|p| p["freezes"].as_u64().unwrap()).sum();
        assert!(host_frozen as u64 >= freezes, "every freeze the guest saw was pushed by eehd");
    }
    // The tables, and the eehd found next to eehctl.
    let out = Command::cargo_bin("eehctl").unwrap().args(["demo", "--daemon", "--errors", "2"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("Timeline") && text.contains("Per PE") && text.contains("Recovery successful"), "{text}");
}
