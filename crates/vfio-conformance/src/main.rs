//! `vfio-conformance-compare ORACLE OURS UNANSWERABLE...`: prints one line per
//! check (agree, DIFFER, unanswerable, MISSING) and the summary
//! `N of M checks agree with Linux 6.12; K not answerable by the oracle`.
//! Exit status: 0 when every answerable check agrees, 1 when one differs or
//! is missing from either side (or the unanswerable list names a check the
//! oracle did not run), 2 on usage or input errors.

use std::process::ExitCode;

use vfio_conformance::{compare, merge_unanswerable, oracle_name, parse_checks, parse_unanswerable};

const USAGE: &str = "usage: vfio-conformance-compare ORACLE OURS UNANSWERABLE...\n  \
    ORACLE        CHECK lines from the real kernel (scripts/oracle/run-powernv.sh)\n  \
    OURS          CHECK lines from our emulation (tests/shim/run-conformance.sh)\n  \
    UNANSWERABLE  what the oracle cannot answer (tests/c/oracle-unanswerable.txt); more lists\n                \
    are merged (tests/c/rust-backend-unexposed.txt)";

fn read(path: &str) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("cannot read {path}: {e}"))
}

fn run(args: &[String]) -> Result<bool, String> {
    let [oracle_path, ours_path, list_paths @ ..] = args else {
        return Err(USAGE.to_owned());
    };
    if list_paths.is_empty() {
        return Err(USAGE.to_owned());
    }
    let oracle_text = read(oracle_path)?;
    let oracle = parse_checks(oracle_path, &oracle_text).map_err(|e| e.to_string())?;
    let ours = parse_checks(ours_path, &read(ours_path)?).map_err(|e| e.to_string())?;
    let mut list = std::collections::BTreeMap::new();
    for list_path in list_paths {
        let more = parse_unanswerable(list_path, &read(list_path)?).map_err(|e| e.to_string())?;
        merge_unanswerable(&mut list, more).map_err(|e| format!("{list_path}: {e}"))?;
    }
    if oracle.is_empty() {
        return Err(format!("{oracle_path} holds no CHECK lines"));
    }
    let report = compare(&oracle_name(&oracle_text), &oracle, &ours, &list);
    print!("{report}");
    Ok(report.passes())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if matches!(args.first().map(String::as_str), Some("-h" | "--help")) {
        println!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    match run(&args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(message) => {
            eprintln!("vfio-conformance-compare: {message}");
            ExitCode::from(2)
        }
    }
}
