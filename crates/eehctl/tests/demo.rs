//! `eehctl demo`: the main job runs, recovers from every error it injects,
//! and says so in both output forms.

use assert_cmd::Command;

fn eehctl() -> Command {
    Command::cargo_bin("eehctl").unwrap()
}

#[test]
fn demo_recovers_from_every_error_and_reports_as_json() {
    let out = eehctl().args(["demo", "--json", "--seed", "7", "--errors", "6"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["schema_version"], 1);
    assert_eq!(report["config"]["seed"], 7);
    let pes = report["pes"].as_array().unwrap();
    assert_eq!(pes.len(), 3, "three PEs passed through");
    let sum = |key: &str| pes.iter().map(|p| p[key].as_u64().unwrap()).sum::<u64>();
    assert_eq!(sum("injected"), 6);
    assert_eq!(sum("recoveries"), 6);
    assert!(pes.iter().all(|p| p["host_state"] == "normal" && p["failed"] == false));
    let timeline = report["timeline"].as_array().unwrap();
    let recovered = timeline.iter().filter(|e| e["event"].as_str().unwrap().contains("Recovery successful")).count();
    assert_eq!(recovered, 6);
}

#[test]
fn demo_is_deterministic_and_prints_tables() {
    let run = || eehctl().args(["demo", "--seed", "3", "--errors", "4", "--model", "container"]).output().unwrap();
    let (a, b) = (run(), run());
    assert!(a.status.success());
    assert_eq!(a.stdout, b.stdout);
    let text = String::from_utf8(a.stdout).unwrap();
    for heading in ["Timeline", "Per PE", "EEH: Recovery successful", "0000:02:00.1 -> 0x800000020000000:00:02.1"] {
        assert!(text.contains(heading), "{heading:?} missing from:\n{text}");
    }
}

#[test]
fn exceeding_the_freeze_limit_fails_the_pe_as_expected() {
    let out = eehctl().args(["demo", "--json", "--errors", "30", "--max-freezes", "1"]).output().unwrap();
    assert!(out.status.success(), "an expected failure is not an error");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(report["pes"].as_array().unwrap().iter().any(|p| p["failed"] == true));
}

#[test]
fn demo_refuses_the_linux_host() {
    let out = eehctl().args(["--host", "linux", "demo"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("simulated host only"));
}
