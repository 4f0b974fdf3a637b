//! `eehctl bench`: every figure, with the memory figure weighed exactly by
//! its helper in a process of its own; without the helper, every figure but
//! that one; and `eehctl` itself never carries the counting allocator.

use assert_cmd::Command;
use object::{Object, ObjectSymbol};
use serde_json::Value;

/// The helper `eehctl bench` finds next to `eehctl`.
const HELPER: &str = env!("CARGO_BIN_EXE_eehctl-bench-memory");
/// A quick `eehctl bench`.
const QUICK_BENCH: [&str; 5] = ["bench", "--budget-ms", "2", "--threads", "2"];

fn eehctl() -> Command {
    let mut cmd = Command::cargo_bin("eehctl").unwrap();
    cmd.env_remove("EEHCTL_BENCH_MEMORY");
    cmd
}

fn json(out: &std::process::Output) -> Value {
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn renders_every_figure_and_weighs_the_table() {
    let out = eehctl().args(QUICK_BENCH).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    for needle in [
        "resolve, 65536 devices",
        "getppid",
        "read-slot-reset-state2",
        "2 threads",
        "memory per mapping, 65536 entries",
        "downtime, ours",
    ] {
        assert!(text.contains(needle), "{needle:?} missing from\n{text}");
    }
    assert!(!text.contains("not measured"), "{text}");
}

#[test]
fn the_memory_figure_is_exact_and_comes_from_the_helper() {
    let weigh = || json(&std::process::Command::new(HELPER).output().unwrap());
    let memory = weigh();
    assert_eq!(memory, weigh(), "nothing else allocates in the helper's process");
    assert_eq!(memory["entries"], 65536);
    assert!(memory["bytes_per_entry"].as_f64().unwrap() > 0.0, "{memory}");
    let report = json(&eehctl().args(QUICK_BENCH).arg("--json").output().unwrap());
    assert_eq!(report["mapping_memory"], memory);
    assert_eq!(report.get("mapping_memory_unavailable"), None);
}

#[test]
fn without_the_helper_every_other_figure_is_measured() {
    let missing = "/nonexistent/eehctl-bench-memory";
    let out = eehctl().args(QUICK_BENCH).args(["--json", "--memory-bin", missing]).output().unwrap();
    let report = json(&out);
    assert_eq!(report["mapping_memory"], Value::Null);
    let reason = report["mapping_memory_unavailable"].as_str().unwrap();
    assert!(reason.contains(missing), "{reason}");
    assert_eq!(report["resolve"].as_array().unwrap().len(), 3);
    assert_eq!(report["downtime"].as_array().unwrap().len(), 4);
    let text = eehctl().args(QUICK_BENCH).env("EEHCTL_BENCH_MEMORY", missing).output().unwrap();
    assert!(text.status.success());
    let text = String::from_utf8(text.stdout).unwrap();
    assert!(text.contains(&format!("memory per mapping not measured: No {missing}")), "{text}");
}

/// Whether `binary`'s symbol table names the counting allocator's code
/// (test builds are not stripped). Its debug information may still name the
/// type, which links no code.
fn links_the_counting_allocator(binary: &str) -> bool {
    let bytes = std::fs::read(binary).unwrap();
    let file = object::File::parse(&*bytes).unwrap();
    assert!(file.symbols().next().is_some(), "{binary} has a symbol table");
    file.symbols().any(|symbol| symbol.name().is_ok_and(|name| name.contains("CountingAlloc")))
}

#[test]
fn only_the_helper_carries_the_counting_allocator() {
    assert!(links_the_counting_allocator(HELPER), "the check finds it where it is");
    assert!(!links_the_counting_allocator(env!("CARGO_BIN_EXE_eehctl")));
}
