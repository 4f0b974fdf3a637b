//! The C conformance program (tests/c/vfio_eeh_conformance.c) under the
//! preload library agrees with what a real Linux 6.12 PowerNV host answered
//! (tests/c/oracle-linux-6.12.txt) on every check the oracle could answer,
//! compared by the same code as CI (crates/vfio-conformance), and shows real
//! EEH behaviour on the checks it could not (QEMU's PHB never freezes;
//! tests/c/oracle-unanswerable.txt, docs/oracle.md).

mod common;

use std::collections::BTreeMap;
use std::process::Command;

use vfio_conformance::{compare, oracle_name, parse_checks, parse_unanswerable, Check};

fn read(relative: &str) -> String {
    let path = common::repo().join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn conformance_agrees_with_the_powernv_oracle() {
    let library = common::preload_library();
    let output = Command::new(common::repo().join("tests/shim/run-conformance.sh"))
        .env("SHIM_LIBRARY", &library)
        .output()
        .expect("the script runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);

    let golden_text = read("tests/c/oracle-linux-6.12.txt");
    let golden = parse_checks("oracle", &golden_text).expect("the golden file parses");
    let ours = parse_checks("ours", &stdout).expect("our output parses");
    let list = parse_unanswerable("unanswerable", &read("tests/c/oracle-unanswerable.txt")).expect("the list parses");
    let report = compare(&oracle_name(&golden_text), &golden, &ours, &list);
    assert!(report.passes(), "{report}\n{stderr}");

    // Where the oracle could not freeze, real EEH behaviour.
    let ours: BTreeMap<&str, &Check> = ours.iter().map(|c| (c.name.as_str(), c)).collect();
    let get = |name: &str| ours[name];
    assert_eq!(get("eeh_ld_cfg_inject").ret, "0");
    assert_eq!(get("eeh_ld_cfg_state_frozen").ret, "2", "frozen: MMIO and DMA stopped");
    assert_eq!(get("eeh_ld_cfg_frozen_config_read").value, "0xffffffff");
    assert_eq!(get("eeh_ld_cfg_frozen_bar_read").value, "0xffffffff");
    assert_eq!(get("eeh_ld_cfg_state_recovered").ret, "0");
    // The only failing check is the oracle's own: PHB4 firmware refuses
    // MMIO injection, so the frozen-state checks after it are skipped.
    let with = |verdict: &str| -> Vec<&str> {
        ours.values().filter(|c| c.verdict == verdict).map(|c| c.name.as_str()).collect()
    };
    assert_eq!(with("fail"), ["eeh_ld_mem_inject"], "{stdout}");
    assert_eq!(
        with("skip"),
        ["eeh_ld_mem_frozen_bar_read", "eeh_ld_mem_frozen_config_read", "eeh_ld_mem_state_frozen"]
    );
}
