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
    assert_eq!(found, expected);
    let table = eehctl().arg("topo").assert().success();
    let table = text(&table.get_output().stdout);
    assert!(expected.iter().all(|addr| table.contains(addr.as_str())), "{table}");
}
