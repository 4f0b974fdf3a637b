//! `eehctl shim` runs a program under the preload library; `eehctl state`,
//! `inject`, `events` and `oplog` act on the simulated host inside it
//! through its control socket.

#[path = "../../vfio-shim/tests/common/mod.rs"]
mod common;

use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use assert_cmd::cargo::CommandCargoExt;
use assert_cmd::Command;

fn eehctl() -> Command {
    Command::cargo_bin("eehctl").unwrap()
}

fn json(out: &std::process::Output) -> serde_json::Value {
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// A shell under `eehctl shim` that opens the container and group 0 (which
/// starts the emulation and its control socket), then waits for `release`.
struct Vmm {
    child: Child,
    socket: std::path::PathBuf,
    release: std::path::PathBuf,
}

impl Vmm {
    fn start(dir: &Path) -> Vmm {
        let release = dir.join("release");
        let script = format!(
            "exec 3<>/dev/vfio/vfio 4<>/dev/vfio/0; while [ ! -e {} ]; do sleep 0.05; done; exit 7",
            release.display()
        );
        let child = std::process::Command::cargo_bin("eehctl")
            .unwrap()
            .args(["shim", "0000:01:00.0", "--dir"])
            .arg(dir)
            .arg("--library")
            .arg(common::preload_library())
            .args(["--", "sh", "-c", &script])
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let socket = dir.join("control.sock");
        let deadline = Instant::now() + Duration::from_secs(20);
        while !socket.exists() {
            assert!(Instant::now() < deadline, "no control socket at {}", socket.display());
            std::thread::sleep(Duration::from_millis(20));
        }
        Vmm { child, socket, release }
    }

    fn cmd(&self, args: &[&str]) -> std::process::Output {
        eehctl().args(args).arg("--socket").arg(&self.socket).output().unwrap()
    }
}

impl Drop for Vmm {
    /// A failed test leaves no process behind: the shell ends on release.
    fn drop(&mut self) {
        let _ = std::fs::write(&self.release, b"");
        let _ = self.child.wait();
    }
}

#[test]
fn control_commands_act_inside_the_running_process() {
    let dir = tempfile::tempdir().unwrap();
    let mut vmm = Vmm::start(dir.path());

    let state = json(&vmm.cmd(&["--json", "state"]));
    assert_eq!(state["schema_version"], 1);
    let pes = state["pes"].as_array().unwrap();
    assert_eq!(pes.len(), 5, "the built-in host's PEs");
    assert!(pes.iter().all(|p| p["state"] == "normal"));
    assert_eq!(pes[0]["devices"][0], "0000:01:00.0");

    let injected = json(&vmm.cmd(&["--json", "inject", "--pe", "0"]));
    assert_eq!(injected["injection"]["how"], "freeze");
    assert_eq!(injected["pe"]["state"], "stopped");
    let table = vmm.cmd(&["state"]);
    let text = String::from_utf8(table.stdout).unwrap();
    assert!(text.lines().any(|l| l.split_whitespace().take(2).eq(["0", "stopped"])), "{text}");

    // An error with VFIO_EEH_PE_INJECT_ERR semantics (immediate mode).
    let injected = json(&vmm.cmd(&["--json", "inject", "--pe", "1", "--func", "4", "--addr", "0x10"]));
    assert_eq!(injected["injection"]["how"], "error");
    assert_eq!(injected["pe"]["state"], "stopped");
    let refused = vmm.cmd(&["inject", "--pe", "1", "--func", "20"]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("No error function 20"));
    let refused = vmm.cmd(&["inject", "--pe", "42"]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("refused"));

    let events = json(&vmm.cmd(&["--json", "events"]));
    let kinds: Vec<_> = events["events"].as_array().unwrap().iter().map(|e| e["event"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["frozen", "injection_armed", "injection_fired", "frozen"]);
    let only_pe0 = json(&vmm.cmd(&["--json", "events", "--pe", "0"]));
    assert_eq!(only_pe0["events"].as_array().unwrap().len(), 1);
    let text = String::from_utf8(vmm.cmd(&["events", "--after", "3"]).stdout).unwrap();
    assert!(text.contains("frozen") && !text.contains("injection_armed"), "{text}");

    let oplog = json(&vmm.cmd(&["--json", "oplog"]));
    assert_eq!(oplog["counts"]["open"], 2);
    let records = oplog["records"].as_array().unwrap();
    let kinds: Vec<_> = records.iter().map(|r| (r["fd_kind"].as_str().unwrap(), r["op"].as_str().unwrap())).collect();
    assert_eq!(kinds, [("container", "open"), ("group", "open")]);
    assert!(records.iter().all(|r| r["result"].as_i64().unwrap() >= 0), "{records:?}");
    assert_eq!(records[1]["groups"], serde_json::json!([0]), "the group's open names it");
    let group0 = json(&vmm.cmd(&["--json", "oplog", "--group", "0"]));
    let ops: Vec<_> = group0["records"].as_array().unwrap().iter().map(|r| r["fd_kind"].as_str().unwrap()).collect();
    assert_eq!(ops, ["group"], "--group keeps group 0's records only");

    // Issue 13 item 1: PHB-wide errors through the control socket. A fence
    // reaches every PE under PHB 0 (PEs 0, 1, 2), which the host is now
    // recovering (unavailable, with the time left); a dead PHB 1 takes PEs
    // 3 and 4 down for good (unavailable, no time left).
    let fenced = json(&vmm.cmd(&["--json", "inject", "--phb", "0"]));
    assert_eq!(fenced["error"], "fence");
    assert_eq!(fenced["phb"]["condition"], "recovering", "{fenced}");
    let pes: Vec<_> = fenced["pes"].as_array().unwrap().iter().map(|p| (p["pe"].clone(), p["state"].clone())).collect();
    assert_eq!(pes.len(), 3);
    assert!(pes.iter().all(|(_, state)| state == "unavailable"), "{fenced}");
    let again = vmm.cmd(&["inject", "--phb", "0"]);
    assert_eq!(again.status.code(), Some(1), "a fenced PHB cannot fence again before it recovers");
    let dead = json(&vmm.cmd(&["--json", "inject", "--phb", "0x1", "--dead"]));
    assert_eq!(dead["phb"]["condition"], "dead");
    assert!(dead["pes"]
        .as_array()
        .unwrap()
        .iter()
        .all(|p| p["state"] == "unavailable" && p["unavailable_for_ms"] == 0));
    let usage = eehctl().args(["inject", "--dead", "--pe", "0", "--socket"]).arg(&vmm.socket).output().unwrap();
    assert_eq!(usage.status.code(), Some(2), "--dead needs --phb");

    std::fs::write(&vmm.release, b"").unwrap();
    let status = vmm.child.wait().unwrap();
    assert_eq!(status.code(), Some(7), "eehctl shim exits with the command's status");
    let gone = vmm.cmd(&["state"]);
    assert_eq!(gone.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&gone.stderr).contains("Cannot connect to the control socket"));
}

#[test]
fn shim_prepares_sysfs_and_prints_for_scripts() {
    let dir = tempfile::tempdir().unwrap();
    let library = common::preload_library();
    let run = |args: &[&str]| {
        eehctl().arg("shim").arg("--dir").arg(dir.path()).arg("--library").arg(&library).args(args).output().unwrap()
    };
    let view = json(&run(&["--json", "--iommu", "type1v2", "0000:02:00.1"]));
    assert_eq!(view["devices"][0]["addr"], "0000:02:00.1");
    assert_eq!(view["devices"][0]["group"], 1);
    let sysfsdev = Path::new(view["devices"][0]["sysfsdev"].as_str().unwrap());
    assert_eq!(std::fs::read_link(sysfsdev.join("iommu_group")).unwrap().file_name().unwrap(), "1");
    let env = view["env"].as_array().unwrap();
    assert!(env.iter().any(|kv| kv[0] == "VFIO_EEH_SHIM_IOMMU" && kv[1] == "type1v2"));
    assert_eq!(view["qemu_args"][0], "-device");

    let lines = run(&["--print", "env"]);
    let text = String::from_utf8(lines.stdout).unwrap();
    assert!(text.lines().next().unwrap().starts_with("LD_PRELOAD=/"), "{text}");
    assert!(!text.contains("VFIO_EEH_SHIM_PHBS"), "the default PHBs need no variable: {text}");
    let phbs = run(&["--print", "env", "--phb", "0x800000020000001", "--phb", "0x800000020000002"]);
    let text = String::from_utf8(phbs.stdout).unwrap();
    assert!(text.contains("VFIO_EEH_SHIM_PHBS=0x800000020000001,0x800000020000002\n"), "{text}");
    assert!(text.contains(&format!("VFIO_EEH_SHIM_SOCKET={}", dir.path().join("control.sock").display())));
    let args = String::from_utf8(run(&["--print", "qemu-args", "0000:01:00.0"]).stdout).unwrap();
    assert_eq!(args.lines().count(), 2);
    assert!(args.ends_with("/sys/bus/pci/devices/0000:01:00.0\n"), "{args}");

    // The command gets the environment, and --qemu-args the device arguments.
    let out = run(&["--qemu-args", "0000:01:00.0", "--", "sh", "-c", "echo \"$LD_PRELOAD $*\"", "sh"]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.starts_with(&format!("{} -device vfio-pci,sysfsdev=", library.display())), "{text}");

    let missing = run(&["0000:7f:00.0"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("No device 0000:7f:00.0 on the simulated host"));
    let no_lib = eehctl().args(["shim", "--library", "/nonexistent/lib.so"]).output().unwrap();
    assert!(String::from_utf8_lossy(&no_lib.stderr).contains("does not exist"));
}

/// Issue 13 item 6: the guest model's op sequence, as tests/qemu/e2e.sh
/// reads it to compare with the real guest's op log.
#[test]
fn model_ops_prints_the_no_driver_sequence() {
    let out = eehctl().arg("model-ops").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let ops: Vec<&str> = text.lines().collect();
    assert_eq!(ops.first(), Some(&"get-state=2"));
    assert!(ops.contains(&"reset-hot=0") && ops.contains(&"reset-deactivate=0"), "{text}");
    assert_eq!(ops.last(), Some(&"enable=0"));
    let view = json(&eehctl().args(["--json", "model-ops"]).output().unwrap());
    assert_eq!(view["ops"].as_array().unwrap().len(), ops.len());
}

#[test]
fn a_process_that_never_answers_times_the_command_out() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("silent.sock");
    let _listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    let mut child = std::process::Command::cargo_bin("eehctl")
        .unwrap()
        .args(["state", "--timeout", "0.5", "--socket"])
        .arg(&socket)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            child.kill().unwrap();
            panic!("eehctl state hangs on a silent socket");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("did not answer within 500ms"), "{stderr}");
    let bad = eehctl().args(["state", "--timeout", "-1", "--socket"]).arg(&socket).output().unwrap();
    assert_eq!(bad.status.code(), Some(2));
}

#[test]
fn shim_without_dir_prepares_a_new_private_directory() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let run = || {
        let out = eehctl()
            .env("TMPDIR", tmp.path())
            .args(["--json", "shim", "--library"])
            .arg(common::preload_library())
            .output()
            .unwrap();
        Path::new(json(&out)["dir"].as_str().unwrap()).to_owned()
    };
    let (first, second) = (run(), run());
    assert_ne!(first, second, "a new directory each time");
    assert!(first.starts_with(tmp.path()), "{}", first.display());
    assert_eq!(std::fs::metadata(&first).unwrap().permissions().mode() & 0o7777, 0o700);
    // Another user's directory (or one others can write) is refused.
    std::fs::set_permissions(&first, std::fs::Permissions::from_mode(0o757)).unwrap();
    let refused =
        eehctl().arg("shim").arg("--dir").arg(&first).arg("--library").arg(common::preload_library()).output().unwrap();
    assert_eq!(refused.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("writable by its group or others"));
}

#[test]
fn shim_gives_the_vmm_paths_it_can_use() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("host.toml"), vfio_eeh_sim::spec::BUILTIN_TOML).unwrap();
    let run = |args: &[&str]| {
        eehctl()
            .current_dir(dir.path())
            .args(["--json", "shim", "--dir", "vm", "--library"])
            .arg(common::preload_library())
            .args(args)
            .output()
            .unwrap()
    };
    let view = json(&run(&["--topology", "host.toml", "--socket", "c.sock", "--oplog", "o.json"]));
    let env: std::collections::HashMap<String, String> = view["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|kv| (kv[0].as_str().unwrap().to_owned(), kv[1].as_str().unwrap().to_owned()))
        .collect();
    assert_eq!(Path::new(&env["VFIO_EEH_SHIM_TOPOLOGY"]), dir.path().join("host.toml"));
    assert_eq!(Path::new(&env["VFIO_EEH_SHIM_SOCKET"]), dir.path().join("c.sock"));
    assert_eq!(Path::new(&env["VFIO_EEH_SHIM_OPLOG"]), dir.path().join("o.json"));

    let long = format!("/tmp/{}.sock", "s".repeat(100));
    let refused = run(&["--socket", &long]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("a Unix socket path holds at most 107"));
}
