//! The C conformance program (tests/c/vfio_eeh_conformance.c) under the
//! preload library agrees with what a real Linux 6.12 PowerNV host answered
//! (tests/c/oracle-linux-6.12.txt) on every check the oracle could answer,
//! and shows real EEH behaviour on the checks it could not (QEMU's PHB never
//! freezes; docs/oracle.md).

mod common;

use std::collections::BTreeMap;
use std::process::Command;

/// Checks whose oracle answers come from a PE that never froze.
const UNANSWERABLE: &[&str] = &[
    "eeh_ld_mem_state_frozen",
    "eeh_ld_mem_frozen_config_read",
    "eeh_ld_mem_frozen_bar_read",
    "eeh_ld_cfg_state_frozen",
    "eeh_ld_cfg_frozen_config_read",
    "eeh_ld_cfg_frozen_bar_read",
    "eeh_ld_mem_unfreeze_io",
    "eeh_ld_cfg_unfreeze_io",
    "eeh_ld_mem_reset_hot",
    "eeh_ld_cfg_reset_hot",
    "eeh_ld_mem_state_poll",
    "eeh_ld_cfg_state_poll",
    "eeh_ld_mem_reset_deactivate",
    "eeh_ld_cfg_reset_deactivate",
    "eeh_ld_mem_configure",
    "eeh_ld_cfg_configure",
    "eeh_ld_mem_state_recovered",
    "eeh_ld_cfg_state_recovered",
    "eeh_ld_mem_recovered_config_read",
    "eeh_ld_mem_recovered_bar_read",
    "eeh_ld_cfg_recovered_config_read",
    "eeh_ld_cfg_recovered_bar_read",
    "eeh_unfreeze_dma",
];

#[derive(Debug, Clone, PartialEq, Eq)]
struct Check {
    verdict: String,
    ret: String,
    errno: String,
    value: String,
}

fn parse(text: &str) -> BTreeMap<String, Check> {
    text.lines()
        .filter_map(|line| line.strip_prefix("CHECK "))
        .map(|rest| {
            let fields: Vec<&str> = rest.split(' ').collect();
            let field = |key: &str| fields.iter().find_map(|f| f.strip_prefix(key)).unwrap_or_default().to_owned();
            let check = Check {
                verdict: fields[1].to_owned(),
                ret: field("ret="),
                errno: field("errno="),
                value: field("value="),
            };
            (fields[0].to_owned(), check)
        })
        .collect()
}

#[test]
fn conformance_agrees_with_the_powernv_oracle() {
    let library = common::preload_library();
    let output = Command::new(common::repo().join("tests/shim/run-conformance.sh"))
        .env("SHIM_LIBRARY", &library)
        .output()
        .expect("the script runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("SUMMARY checks=114"), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    let ours = parse(&stdout);
    let golden = parse(&std::fs::read_to_string(common::repo().join("tests/c/oracle-linux-6.12.txt")).unwrap());
    assert_eq!(ours.keys().collect::<Vec<_>>(), golden.keys().collect::<Vec<_>>());

    let mut disagree = Vec::new();
    let answerable: Vec<_> = golden.iter().filter(|(name, _)| !UNANSWERABLE.contains(&name.as_str())).collect();
    for (name, want) in &answerable {
        let got = &ours[*name];
        if (&got.ret, &got.errno) != (&want.ret, &want.errno) {
            disagree.push(format!(
                "{name}: oracle ret={} errno={}, ours ret={} errno={}",
                want.ret, want.errno, got.ret, got.errno
            ));
        }
    }
    assert!(
        disagree.is_empty(),
        "{} of {} answerable checks disagree:\n{}",
        disagree.len(),
        answerable.len(),
        disagree.join("\n")
    );

    // Where the oracle could not freeze, real EEH behaviour.
    let get = |name: &str| &ours[name];
    assert_eq!(get("eeh_ld_cfg_inject").ret, "0");
    assert_eq!(get("eeh_ld_cfg_state_frozen").ret, "2", "frozen: MMIO and DMA stopped");
    assert_eq!(get("eeh_ld_cfg_frozen_config_read").value, "0xffffffff");
    assert_eq!(get("eeh_ld_cfg_frozen_bar_read").value, "0xffffffff");
    for name in UNANSWERABLE.iter().filter(|n| !n.starts_with("eeh_ld_mem_") || !n.contains("frozen")) {
        assert_eq!(get(name).verdict, "pass", "{name}: {:?}", get(name));
    }
    assert_eq!(get("eeh_ld_cfg_state_recovered").ret, "0");
    // The only failing check is the oracle's own: PHB4 firmware refuses
    // MMIO injection.
    assert!(stdout.contains("SUMMARY checks=114 pass=104 fail=1 info=6 skip=3"), "{stdout}");
}
