//! `eehctl topo` on the sysfs fixtures of vfio-eeh-linux and on this
//! machine's `/sys`.

use std::path::{Path, PathBuf};

use assert_cmd::Command;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../vfio-eeh-linux/tests/fixtures").join(name)
}

/// `eehctl` with a VFIO directory that does not exist, so runs do not depend
/// on the machine's `/dev/vfio`.
fn eehctl() -> Command {
    let mut cmd = Command::cargo_bin("eehctl").unwrap();
    cmd.args(["--dev-vfio", "/nonexistent/vfio"]);
    cmd
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).unwrap()
}

#[test]
fn powernv_table() {
    let out = eehctl().args(["topo", "--sysfs"]).arg(fixture("powernv")).assert().success();
    let output = out.get_output();
    insta::assert_snapshot!(text(&output.stdout));
    let stderr = text(&output.stderr);
    assert!(stderr.contains("host: linux (topology from "), "{stderr}");
    assert!(stderr.contains("no EEH: /nonexistent/vfio/vfio does not exist"), "{stderr}");
}

#[test]
fn powernv_json() {
    let out =
        eehctl().args(["--json", "topo", "--host", "linux", "--sysfs"]).arg(fixture("powernv")).assert().success();
    let json: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    assert_eq!(json["schema_version"], 1);
    insta::assert_json_snapshot!(json);
}

#[test]
fn odd_tree_lists_the_rest_and_every_problem_with_its_path() {
    let root = fixture("odd");
    let out = eehctl().args(["topo", "--sysfs"]).arg(&root).assert().success();
    let stdout = text(&out.get_output().stdout);
    insta::assert_snapshot!(stdout.replace(&root.display().to_string(), "[ODD]"));
    let json = eehctl().args(["topo", "--json", "--sysfs"]).arg(&root).assert().success();
    let json: serde_json::Value = serde_json::from_slice(&json.get_output().stdout).unwrap();
    let problems = json["problems"].as_array().unwrap();
    assert_eq!(problems.len(), 11);
    assert!(problems
        .iter()
        .filter(|p| !p.as_str().unwrap().starts_with("IOMMU group"))
        .all(|p| p.as_str().unwrap().contains(&root.display().to_string())));
}

#[test]
fn a_tree_without_pci_fails_with_the_path() {
    let out = eehctl().args(["topo", "--sysfs", "/nonexistent/sys"]).assert().code(1);
    let stderr = text(&out.get_output().stderr);
    assert!(
        stderr.contains(
            "Cannot read the PCI topology: Cannot list /nonexistent/sys/bus/pci/devices: No such file or directory"
        ),
        "{stderr}"
    );
}

#[test]
fn usage_errors_exit_2() {
    eehctl().args(["topo", "--host", "bogus"]).assert().code(2);
    eehctl().args(["frobnicate"]).assert().code(2);
    eehctl().assert().code(2);
}

/// This machine: every device in `/sys/bus/pci/devices` is listed.
#[test]
fn real_machine_devices_are_listed() {
    let Ok(entries) = std::fs::read_dir("/sys/bus/pci/devices") else {
        eprintln!("skipped: no /sys/bus/pci/devices");
        return;
    };
    let mut expected: Vec<String> = entries.map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    expected.sort();
    let out = eehctl().args(["topo", "--host", "linux", "--json"]).assert().success();
    let json: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    assert_eq!(json_devices(&json), expected);
    let table = eehctl().arg("topo").assert().success();
    let table = text(&table.get_output().stdout);
    assert!(expected.iter().all(|addr| table.contains(addr.as_str())), "{table}");
}

/// Runs eehctl as an unprivileged user (root reads files whatever their
/// mode): through `setpriv` (util-linux) as `nobody` when this is root, so
/// the check runs in CI too.
fn unprivileged() -> Command {
    let bin = assert_cmd::cargo::cargo_bin("eehctl");
    let root = std::fs::metadata("/proc/self").map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0).unwrap_or(false);
    let mut cmd = if root {
        let mut cmd = Command::new("setpriv");
        cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups"]).arg(bin);
        cmd
    } else {
        Command::new(bin)
    };
    cmd.args(["--dev-vfio", "/nonexistent/vfio"]);
    cmd
}

#[test]
fn unreadable_entries_are_named_and_the_rest_is_listed() {
    use std::fs::{set_permissions, Permissions};
    use std::os::unix::fs::PermissionsExt;
    let mut cmd = unprivileged();
    let dir = std::env::temp_dir().join(format!("eehctl-perm-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir(&dir).unwrap();
    let status = std::process::Command::new("cp").arg("-a").arg(fixture("powernv")).arg(&dir).status().unwrap();
    assert!(status.success());
    let root = dir.join("powernv");
    let vendor = root.join("devices/pci0002:00/0002:01:00.0/vendor");
    set_permissions(&vendor, Permissions::from_mode(0o000)).unwrap();
    let out = cmd.args(["topo", "--json", "--sysfs"]).arg(&root).output().unwrap();
    let devices = root.join("bus/pci/devices");
    set_permissions(&devices, Permissions::from_mode(0o000)).unwrap();
    let unlisted = unprivileged().args(["topo", "--sysfs"]).arg(&root).output().unwrap();
    set_permissions(&devices, Permissions::from_mode(0o755)).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();

    assert!(out.status.success(), "{}", text(&out.stderr));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let via_link = root.join("bus/pci/devices/0002:01:00.0/vendor");
    assert_eq!(
        json["problems"],
        serde_json::json!([format!("Cannot read {}: Permission denied (os error 13)", via_link.display())])
    );
    assert_eq!(json["phbs"].as_array().unwrap().len(), 4);
    assert_eq!(json["phbs"][2]["groups"][0]["devices"][0]["vendor"], "0xffff");
    assert_eq!(unlisted.status.code(), Some(1));
    let stderr = text(&unlisted.stderr);
    assert!(stderr.contains(&format!("Cannot list {}: Permission denied", devices.display())), "{stderr}");
}

/// Every device address in a `topo --json` document.
fn json_devices(json: &serde_json::Value) -> Vec<String> {
    let mut found: Vec<String> = json["phbs"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|phb| phb["groups"].as_array().unwrap().iter())
        .flat_map(|g| g["devices"].as_array().unwrap().iter())
        .chain(json["ungrouped"].as_array().unwrap())
        .map(|d| d["addr"].as_str().unwrap().to_owned())
        .collect();
    found.sort();
    found
}

/// The simulator's built-in topology belongs to the simulator: checked for
/// shape, not pinned.
#[test]
fn sim_host_shows_the_builtin_topology() {
    let out = Command::cargo_bin("eehctl").unwrap().args(["topo", "--host", "sim"]).assert().success();
    let output = out.get_output();
    assert!(text(&output.stderr).contains("host: sim (--host sim)"));
    let table = text(&output.stdout);
    let json = Command::cargo_bin("eehctl").unwrap().args(["--host", "sim", "--json", "topo"]).assert().success();
    let json: serde_json::Value = serde_json::from_slice(&json.get_output().stdout).unwrap();
    assert_eq!((json["schema_version"].as_u64(), json["host"].as_str()), (Some(1), Some("sim")));
    let devices = json_devices(&json);
    assert!(!devices.is_empty());
    assert!(devices.iter().all(|addr| table.contains(addr.as_str())), "{table}");
}

#[test]
fn linux_options_with_the_sim_host_are_a_usage_error() {
    let out = eehctl().args(["topo", "--host", "sim"]).assert().code(2);
    let stderr = text(&out.get_output().stderr);
    assert!(stderr.contains("--sysfs and --dev-vfio apply to the Linux host, not to --host sim"), "{stderr}");
}
