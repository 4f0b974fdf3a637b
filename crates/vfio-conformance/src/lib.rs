//! Differential conformance: the CHECK lines of
//! `tests/c/vfio_eeh_conformance.c` as answered by a real Linux kernel (the
//! oracle, `scripts/oracle/run-powernv.sh`) against the same program under
//! our preload library (`tests/shim/run-conformance.sh`).
//!
//! A check line is `CHECK <name> <verdict> ret=<int> errno=<NAME|0>
//! [value=<v>]`. Two answers agree when `ret`, `errno` and `value` are equal;
//! the verdict is the program's opinion and is not compared.
//!
//! What the oracle cannot answer is listed in one file,
//! `tests/c/oracle-unanswerable.txt`, one entry a line:
//! `<check> <scope> <reason>`, where the scope is
//! * `all`: the oracle cannot answer the check at all (QEMU's PHB model never
//!   freezes a PE); it is reported, never compared;
//! * `value`: `ret` and `errno` are compared, but the value is a property of
//!   the device the oracle ran on (an emulated e1000e), not of VFIO.
//!
//! An entry whose name ends in `*` covers every check that name prefixes
//! (an exact entry wins over it; of two prefixes, the longer). Several lists
//! may be merged (e.g. with `tests/c/rust-backend-unexposed.txt`, the checks
//! the Rust backend's API cannot express). An entry that covers no check of
//! the oracle's output is an error, so a list cannot outlive the checks it
//! excuses.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::{self, Write as _};

/// One answered check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// The check's name.
    pub name: String,
    /// `pass`, `fail`, `info` or `skip`: the program's verdict.
    pub verdict: String,
    /// The return value.
    pub ret: String,
    /// The errno name, `0` for none.
    pub errno: String,
    /// The value field, empty when absent.
    pub value: String,
}

impl Check {
    fn answer(&self, with_value: bool) -> String {
        let mut text = format!("ret={} errno={}", self.ret, self.errno);
        if with_value && !self.value.is_empty() {
            let _ = write!(text, " value={}", self.value);
        }
        text
    }
}

/// Which part of a check the oracle cannot answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Nothing: the check is not compared.
    All,
    /// The value (a property of the oracle's device); `ret` and `errno` are
    /// compared.
    Value,
}

/// One entry of the "oracle cannot answer" list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unanswerable {
    /// What is not answerable.
    pub scope: Scope,
    /// Why.
    pub reason: String,
}

/// A malformed input file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} line {line}: {problem}")]
pub struct ParseError {
    /// Which input.
    pub what: String,
    /// 1-based line number.
    pub line: usize,
    /// What is wrong.
    pub problem: String,
}

/// The CHECK lines of a program output, in order; other lines are ignored.
pub fn parse_checks(what: &str, text: &str) -> Result<Vec<Check>, ParseError> {
    let mut seen = BTreeSet::new();
    let mut checks = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let Some(rest) = line.strip_prefix("CHECK ") else { continue };
        let err = |problem: String| ParseError { what: what.to_owned(), line: i + 1, problem };
        let fields: Vec<&str> = rest.split(' ').collect();
        let field = |key: &str| fields.iter().skip(2).find_map(|f| f.strip_prefix(key)).map(str::to_owned);
        let (Some(name), Some(verdict)) = (fields.first(), fields.get(1)) else {
            return Err(err(format!("expected a name and a verdict in {line:?}")));
        };
        let (Some(ret), Some(errno)) = (field("ret="), field("errno=")) else {
            return Err(err(format!("no ret= or errno= in {line:?}")));
        };
        if !seen.insert((*name).to_owned()) {
            return Err(err(format!("check {name} appears twice")));
        }
        checks.push(Check {
            name: (*name).to_owned(),
            verdict: (*verdict).to_owned(),
            ret,
            errno,
            value: field("value=").unwrap_or_default(),
        });
    }
    Ok(checks)
}

/// The "oracle cannot answer" list; `#` starts a comment.
pub fn parse_unanswerable(what: &str, text: &str) -> Result<BTreeMap<String, Unanswerable>, ParseError> {
    let mut list = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or_default().trim();
        if line.is_empty() {
            continue;
        }
        let err = |problem: String| ParseError { what: what.to_owned(), line: i + 1, problem };
        let mut words = line.split_whitespace();
        let (Some(name), Some(scope)) = (words.next(), words.next()) else {
            return Err(err("expected <check> <all|value> <reason>".to_owned()));
        };
        let reason = words.collect::<Vec<_>>().join(" ");
        if reason.is_empty() {
            return Err(err(format!("{name} has no reason")));
        }
        let scope = match scope {
            "all" => Scope::All,
            "value" => Scope::Value,
            other => return Err(err(format!("unknown scope {other:?}, expected all or value"))),
        };
        let entry = Unanswerable { scope, reason };
        if list.insert(name.to_owned(), entry).is_some() {
            return Err(err(format!("{name} is listed twice")));
        }
    }
    Ok(list)
}

/// How one check came out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Same answer (the value too, unless it is the device's).
    Agree,
    /// Different answers.
    Differ {
        /// The oracle's answer.
        oracle: String,
        /// Ours.
        ours: String,
    },
    /// Listed as not answerable by the oracle.
    Unanswerable {
        /// Why.
        reason: String,
        /// The oracle's answer, for the record.
        oracle: String,
        /// Ours.
        ours: String,
    },
    /// The oracle answered it and we did not run it.
    MissingFromOurs,
    /// We ran it and the oracle did not.
    MissingFromOracle,
}

/// The whole comparison, one row per check (the oracle's order, then checks
/// only we ran).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// Who the oracle is, e.g. `Linux 6.12`.
    pub oracle_name: String,
    /// Per check.
    pub rows: Vec<(String, Outcome)>,
    /// List entries that name no check of the oracle's.
    pub stale: Vec<String>,
}

impl Report {
    fn count(&self, f: impl Fn(&Outcome) -> bool) -> usize {
        self.rows.iter().filter(|(_, o)| f(o)).count()
    }

    /// Checks that agree.
    pub fn agreeing(&self) -> usize {
        self.count(|o| *o == Outcome::Agree)
    }

    /// Checks the oracle answered (agreeing, differing or missing on either side).
    pub fn answerable(&self) -> usize {
        self.count(|o| !matches!(o, Outcome::Unanswerable { .. }))
    }

    /// Checks listed as not answerable.
    pub fn unanswerable(&self) -> usize {
        self.rows.len() - self.answerable()
    }

    /// True when every answerable check agrees and the list is not stale.
    pub fn passes(&self) -> bool {
        self.agreeing() == self.answerable() && self.stale.is_empty()
    }

    /// `N of M checks agree with <oracle>; K not answerable by the oracle`.
    pub fn summary(&self) -> String {
        format!(
            "{} of {} checks agree with {}; {} not answerable by the oracle",
            self.agreeing(),
            self.answerable(),
            self.oracle_name,
            self.unanswerable()
        )
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (name, outcome) in &self.rows {
            match outcome {
                Outcome::Agree => writeln!(f, "agree        {name}")?,
                Outcome::Differ { oracle, ours } => {
                    writeln!(f, "DIFFER       {name}: oracle {oracle}; ours {ours}")?;
                }
                Outcome::Unanswerable { reason, oracle, ours } => {
                    writeln!(f, "unanswerable {name}: {reason} (oracle {oracle}; ours {ours})")?;
                }
                Outcome::MissingFromOurs => {
                    writeln!(f, "MISSING      {name}: the oracle answered it, our run has no such check")?
                }
                Outcome::MissingFromOracle => {
                    writeln!(f, "MISSING      {name}: our run has it, the oracle's output does not")?
                }
            }
        }
        for name in &self.stale {
            writeln!(f, "STALE        {name}: listed as unanswerable, but the oracle ran no such check")?;
        }
        writeln!(f, "{}", self.summary())
    }
}

/// The oracle's name from its provenance line `# kernel: 6.12.95+deb12-...`:
/// `Linux 6.12`; `the oracle` when there is none.
pub fn oracle_name(oracle_text: &str) -> String {
    oracle_text
        .lines()
        .find_map(|l| l.strip_prefix("# kernel: "))
        .and_then(|v| {
            let mut parts = v.split(['.', ' ']);
            Some(format!("Linux {}.{}", parts.next()?, parts.next()?))
        })
        .unwrap_or_else(|| "the oracle".to_owned())
}

/// The list's entry for `check`: its own or the longest `prefix*` entry that
/// covers it, whichever excuses more (`all` over `value`; the exact entry
/// when they are alike).
fn entry_for<'a>(list: &'a BTreeMap<String, Unanswerable>, check: &str) -> Option<&'a Unanswerable> {
    let exact = list.get(check);
    let prefix = list
        .iter()
        .filter_map(|(name, entry)| Some((name.strip_suffix('*')?, entry)))
        .filter(|(prefix, _)| check.starts_with(prefix))
        .max_by_key(|(prefix, _)| prefix.len())
        .map(|(_, entry)| entry);
    match (exact, prefix) {
        (Some(exact), Some(prefix)) if exact.scope == Scope::Value && prefix.scope == Scope::All => Some(prefix),
        (exact, prefix) => exact.or(prefix),
    }
}

/// Merges `more` into `list`: a check in both keeps the entry that excuses
/// more (`all` over `value`); the same scope twice is an error naming the
/// check.
pub fn merge_unanswerable(
    list: &mut BTreeMap<String, Unanswerable>,
    more: BTreeMap<String, Unanswerable>,
) -> Result<(), String> {
    for (name, entry) in more {
        match list.get(&name) {
            Some(old) if old.scope == entry.scope => return Err(format!("{name} is listed twice")),
            Some(old) if old.scope == Scope::All => {}
            _ => {
                list.insert(name, entry);
            }
        }
    }
    Ok(())
}

/// Whether a list entry `name` (exact or `prefix*`) covers `check`.
fn covers(name: &str, check: &str) -> bool {
    name.strip_suffix('*').map_or(name == check, |prefix| check.starts_with(prefix))
}

/// Compares our checks with the oracle's under the "cannot answer" list.
pub fn compare(
    oracle_name: &str,
    oracle: &[Check],
    ours: &[Check],
    unanswerable: &BTreeMap<String, Unanswerable>,
) -> Report {
    let ours_by_name: BTreeMap<&str, &Check> = ours.iter().map(|c| (c.name.as_str(), c)).collect();
    let oracle_names: BTreeSet<&str> = oracle.iter().map(|c| c.name.as_str()).collect();
    let mut rows: Vec<(String, Outcome)> = oracle
        .iter()
        .map(|want| {
            let entry = entry_for(unanswerable, &want.name);
            let outcome = match (ours_by_name.get(want.name.as_str()), entry) {
                (got, Some(Unanswerable { scope: Scope::All, reason })) => Outcome::Unanswerable {
                    reason: reason.clone(),
                    oracle: want.answer(true),
                    ours: got.map_or_else(|| "(not run)".to_owned(), |g| g.answer(true)),
                },
                (None, _) => Outcome::MissingFromOurs,
                (Some(got), entry) => {
                    let with_value = entry.is_none();
                    if want.answer(with_value) == got.answer(with_value) {
                        Outcome::Agree
                    } else {
                        Outcome::Differ { oracle: want.answer(with_value), ours: got.answer(with_value) }
                    }
                }
            };
            (want.name.clone(), outcome)
        })
        .collect();
    rows.extend(
        ours.iter()
            .filter(|c| !oracle_names.contains(c.name.as_str()))
            .map(|c| (c.name.clone(), Outcome::MissingFromOracle)),
    );
    let stale = unanswerable.keys().filter(|n| !oracle_names.iter().any(|check| covers(n, check))).cloned().collect();
    Report { oracle_name: oracle_name.to_owned(), rows, stale }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ORACLE: &str = "# kernel: 6.12.95+deb12-powerpc64le (Debian)\n\
        CHECK a pass ret=0 errno=0 value=flags=0x1\n\
        CHECK b pass ret=-1 errno=EINVAL\n\
        CHECK c fail ret=0 errno=0 value=argsz=40\n\
        CHECK d pass ret=4 errno=0 value=0x10d38086\n\
        SUMMARY checks=4\n";

    fn list(text: &str) -> BTreeMap<String, Unanswerable> {
        parse_unanswerable("list", text).unwrap()
    }

    #[test]
    fn agreement_ignores_verdicts_and_listed_parts() {
        let oracle = parse_checks("oracle", ORACLE).unwrap();
        let ours = parse_checks(
            "ours",
            "CHECK a pass ret=0 errno=0 value=flags=0x1\nCHECK b fail ret=-1 errno=EINVAL\n\
             CHECK c pass ret=2 errno=0 value=argsz=40\nCHECK d pass ret=4 errno=0 value=0xa824144d\n",
        )
        .unwrap();
        let report = compare(
            &oracle_name(ORACLE),
            &oracle,
            &ours,
            &list("# comment\nc   all   QEMU never freezes\nd value the e1000e's id  # why\n"),
        );
        assert!(report.passes(), "{report}");
        assert_eq!(report.summary(), "3 of 3 checks agree with Linux 6.12; 1 not answerable by the oracle");
        assert!(report
            .to_string()
            .contains("unanswerable c: QEMU never freezes (oracle ret=0 errno=0 value=argsz=40; ours ret=2"));
    }

    #[test]
    fn a_difference_or_a_missing_check_fails() {
        let oracle = parse_checks("oracle", ORACLE).unwrap();
        let ours = parse_checks(
            "ours",
            "CHECK a pass ret=0 errno=0 value=flags=0x3\nCHECK b pass ret=-1 errno=ENOTTY\nCHECK e pass ret=0 errno=0\n",
        )
        .unwrap();
        let report = compare("Linux 6.12", &oracle, &ours, &list("c all x\n"));
        assert!(!report.passes());
        assert_eq!(report.summary(), "0 of 4 checks agree with Linux 6.12; 1 not answerable by the oracle");
        let text = report.to_string();
        assert!(
            text.contains("DIFFER       a: oracle ret=0 errno=0 value=flags=0x1; ours ret=0 errno=0 value=flags=0x3")
        );
        assert!(text.contains("DIFFER       b: oracle ret=-1 errno=EINVAL; ours ret=-1 errno=ENOTTY"));
        assert!(text.contains("MISSING      d: the oracle answered it"));
        assert!(text.contains("MISSING      e: our run has it"));
    }

    #[test]
    fn prefix_entries_cover_what_they_prefix() {
        let oracle = parse_checks("oracle", ORACLE).unwrap();
        let ours = parse_checks("ours", "CHECK a pass ret=0 errno=0 value=flags=0x9\n").unwrap();
        let report =
            compare("Linux 6.12", &oracle, &ours, &list("a value device\nb* all not exposed\nc all x\nd* all y\n"));
        assert!(report.passes(), "{report}");
        assert_eq!(report.summary(), "1 of 1 checks agree with Linux 6.12; 3 not answerable by the oracle");
        let report = compare("Linux 6.12", &oracle, &oracle, &list("zz* all nothing\n"));
        assert_eq!(report.stale, ["zz*"]);

        // Merged lists: `all` excuses more than `value`, exact or prefix.
        let mut merged = list("a value device\nb value device\n");
        merge_unanswerable(&mut merged, list("a all unused\nb* all unused\n")).unwrap();
        let report = compare("Linux 6.12", &oracle, &[], &merged);
        assert_eq!(report.unanswerable(), 2, "{report}");
        assert_eq!(merge_unanswerable(&mut merged, list("a all again\n")), Err("a is listed twice".to_owned()));
    }

    #[test]
    fn stale_entries_and_bad_lines_are_errors() {
        let oracle = parse_checks("oracle", ORACLE).unwrap();
        let report = compare("Linux 6.12", &oracle, &oracle, &list("gone all removed check\n"));
        assert!(!report.passes());
        assert!(report.to_string().contains("STALE        gone"));

        assert_eq!(
            parse_unanswerable("list", "a sometimes why\n").unwrap_err().to_string(),
            "list line 1: unknown scope \"sometimes\", expected all or value"
        );
        assert!(parse_unanswerable("list", "a all\n").is_err());
        assert!(parse_checks("ours", "CHECK a pass ret=0 errno=0\nCHECK a pass ret=0 errno=0\n").is_err());
        assert!(parse_checks("ours", "CHECK a pass\n").is_err());
        assert_eq!(oracle_name("no header"), "the oracle");
    }
}
