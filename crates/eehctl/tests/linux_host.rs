//! `eehctl --host linux state|inject|events|max-freezes` on a fixture host:
//! the powernv sysfs fixture with EEH attributes added, a debugfs tree, a
//! kernel log file and a procfs in which a process holds a VFIO group.

use std::fs;
use std::path::{Path, PathBuf};

use assert_cmd::Command;
use serde_json::Value;

const KMSG: &str = "\
4,100,5000000,-;EEH: Frozen PHB#2-PE#fe detected
4,101,5000100,-;EEH: Recovering PHB#2-PE#fe
3,102,5000200,-;EEH: This PCI device has failed 2 times in the last hour and will be permanently disabled after 5 failures.
6,103,5000300,-;nvme nvme0: something else
6,104,5100000,-;EEH: Recovery successful.
3,105,6000000,-;EEH: PHB#0-PE#1 has failed 6 times in the last hour and has been permanently disabled.
";

/// A fixture host in a temporary directory.
struct FixtureHost {
    dir: tempfile::TempDir,
}

impl FixtureHost {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("../vfio-eeh-linux/tests/fixtures/powernv");
        let status = std::process::Command::new("cp").arg("-a").arg(&fixture).arg(dir.path().join("sys")).status();
        assert!(status.unwrap().success());
        let devices = dir.path().join("sys/devices");
        // Normal everywhere but the nvme's PE, which is frozen and recovering.
        for (device, state) in
            [("pci0000:00/0000:01:00.0", "0x00000078 0x00000000"), ("pci0002:00/0002:01:00.0", "0x00000060 0x00000003")]
        {
            fs::write(devices.join(device).join("eeh_pe_state"), format!("{state}\n")).unwrap();
            fs::write(devices.join(device).join("eeh_mode"), "0x1\n").unwrap();
        }
        let powerpc = dir.path().join("debug/powerpc");
        fs::create_dir_all(powerpc.join("PCI0002")).unwrap();
        fs::write(powerpc.join("PCI0002/err_injct"), "").unwrap();
        fs::write(powerpc.join("eeh_max_freezes"), "5\n").unwrap();
        fs::write(dir.path().join("kmsg"), KMSG).unwrap();
        // Process 4242 (qemu) holds group 5.
        let fd_dir = dir.path().join("proc/4242/fd");
        fs::create_dir_all(&fd_dir).unwrap();
        std::os::unix::fs::symlink(dir.path().join("vfio/5"), fd_dir.join("7")).unwrap();
        fs::write(dir.path().join("proc/4242/comm"), "qemu-system-ppc\n").unwrap();
        FixtureHost { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn eehctl(&self) -> Command {
        let mut cmd = Command::cargo_bin("eehctl").unwrap();
        cmd.arg("--host=linux");
        for (option, name) in
            [("--sysfs", "sys"), ("--dev-vfio", "vfio"), ("--debugfs", "debug"), ("--kmsg", "kmsg"), ("--proc", "proc")]
        {
            cmd.arg(option).arg(self.path(name));
        }
        cmd
    }

    fn json(&self, args: &[&str]) -> Value {
        let out = self.eehctl().arg("--json").args(args).assert().success();
        serde_json::from_slice(&out.get_output().stdout).unwrap()
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn state_lists_every_pe_with_eeh_state_freezes_and_owner() {
    let host = FixtureHost::new();
    let doc = host.json(&["state"]);
    let pes = doc["pes"].as_array().unwrap();
    let group = |n: u64| pes.iter().find(|pe| pe["group"] == n).unwrap();
    assert_eq!(group(1)["eeh_state"], "normal");
    assert_eq!(group(1)["freezes"], 6);
    assert_eq!(group(3)["eeh_state"], "frozen (isolated, recovering)");
    assert_eq!(group(3)["eeh_pe_state"], serde_json::json!([0x60, 3]));
    assert_eq!(group(3)["freezes"], 2);
    assert_eq!(group(3)["owner"], "nvme");
    assert_eq!(group(5)["owner"], "vfio-pci");
    assert_eq!(group(5)["held_by"], serde_json::json!(["4242 (qemu-system-ppc)"]));
    assert_eq!(group(2)["eeh_state"], Value::Null);

    let out = host.eehctl().arg("state").assert().success();
    let table = text(&out.get_output().stdout);
    assert!(table.contains("frozen (isolated, recovering)"), "{table}");
    assert!(table.contains("vfio-pci (held by 4242 (qemu-system-ppc))"), "{table}");
}

#[test]
fn inject_writes_err_injct_for_a_host_pe_and_refuses_a_held_one() {
    let host = FixtureHost::new();
    let doc = host.json(&["inject", "--device", "0002:01:00.0", "--func", "4"]);
    assert_eq!(doc["via"], "debugfs");
    assert_eq!(doc["err_injct"], "fe:0:4:0:0");
    assert_eq!(fs::read_to_string(host.path("debug/powerpc/PCI0002/err_injct")).unwrap(), "fe:0:4:0:0");

    let out = host.eehctl().args(["inject", "--pe", "5", "--func", "0"]).assert().failure();
    let stderr = text(&out.get_output().stderr);
    assert!(stderr.contains("PE 5 is held by 4242 (qemu-system-ppc): a running VM owns it"), "{stderr}");

    // Forced, it goes through debugfs, whose PHB file this host lacks.
    let out = host.eehctl().args(["inject", "--pe", "5", "--func", "0", "--force"]).assert().failure();
    let stderr = text(&out.get_output().stderr);
    assert!(stderr.contains("PCI0030/err_injct does not exist: no PowerNV PHB"), "{stderr}");

    let out = host.eehctl().args(["inject", "--pe", "3"]).assert().failure();
    assert!(text(&out.get_output().stderr).contains("--host linux needs --func"));
}

#[test]
fn events_parse_the_kernel_log() {
    let host = FixtureHost::new();
    let doc = host.json(&["events"]);
    let events = doc["events"].as_array().unwrap();
    let kinds: Vec<&str> = events.iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["frozen", "recovering", "freeze_count", "recovered", "permanently_disabled"]);
    assert_eq!(events[3]["group"], 3);
    assert_eq!(events[3]["outcome"], "recovered");
    assert_eq!(events[4]["group"], 1);

    let doc = host.json(&["events", "--pe", "1"]);
    assert_eq!(doc["events"].as_array().unwrap().len(), 1);

    // --follow on a file prints one JSON object a line as events come.
    let out = host.eehctl().args(["--json", "events", "--follow"]).timeout(std::time::Duration::from_secs(2)).assert();
    let stdout = text(&out.get_output().stdout);
    let first: Value = serde_json::from_str(stdout.lines().next().unwrap()).unwrap();
    assert_eq!(first["kind"], "frozen");
}

#[test]
fn max_freezes_reads_and_sets_and_says_what_is_missing() {
    let host = FixtureHost::new();
    assert_eq!(host.json(&["max-freezes"])["max_freezes"], 5);
    let doc = host.json(&["max-freezes", "2"]);
    assert_eq!((doc["max_freezes"].as_u64(), doc["previous"].as_u64()), (Some(2), Some(5)));

    let mut cmd = Command::cargo_bin("eehctl").unwrap();
    let out =
        cmd.args(["--host", "linux", "--debugfs"]).arg(host.path("nothing")).arg("max-freezes").assert().failure();
    assert!(text(&out.get_output().stderr).contains("debugfs is not mounted there"));
    let out = Command::cargo_bin("eehctl").unwrap().args(["--host", "sim", "max-freezes"]).assert().failure();
    assert!(text(&out.get_output().stderr).contains("not --host sim"));
}

#[test]
fn the_socket_commands_still_need_a_socket_without_host_linux() {
    let out =
        Command::cargo_bin("eehctl").unwrap().env_remove("VFIO_EEH_SHIM_SOCKET").args(["state"]).assert().failure();
    assert!(text(&out.get_output().stderr).contains("or --host linux (this host)"));
    let out = Command::cargo_bin("eehctl").unwrap().args(["events", "--follow"]).assert().failure();
    assert!(text(&out.get_output().stderr).contains("the kernel log (--host linux)"));
}

#[test]
fn host_linux_and_connect_are_one_or_the_other() {
    for command in [&["state"][..], &["inject", "--pe", "1", "--func", "4"], &["events"]] {
        let out = Command::cargo_bin("eehctl")
            .unwrap()
            .args(["--host", "linux"])
            .args(command)
            .args(["--connect", "/nonexistent"])
            .assert()
            .code(2);
        assert!(text(&out.get_output().stderr).contains("give one"), "{command:?}");
    }
}
