//! EEH events from the kernel log: `/dev/kmsg` records (`pri,seq,usec,flags;text`)
//! whose text starts with `EEH:`, parsed into PE, event and outcome.
//!
//! The lines are the ones `arch/powerpc/kernel/eeh*.c` prints (Linux 6.x):
//! `Frozen PHB#0-PE#fe detected`, `Recovering PHB#0-PE#fe`, `This PCI
//! device has failed 2 times in the last hour and will be permanently
//! disabled after 5 failures.`, `Recovery successful.`, `Unable to recover
//! from failure from PHB#0-PE#fe.`, `PHB#0-PE#fe has failed 6 times in the
//! last hour and has been permanently disabled.`, `PHB#0 failure detected`.
//! A line without a PE (the count, the outcome) belongs to the PE of the
//! last `Recovering` line: the kernel recovers one PE at a time.
//!
//! ```
//! use vfio_eeh_linux::kmsg::{EehLog, EventKind};
//!
//! let mut log = EehLog::default();
//! let event = log.parse_record("3,812,90210,-;EEH: Frozen PHB#0-PE#fe detected").unwrap();
//! assert_eq!((event.phb, event.pe, event.kind), (Some(0), Some(0xfe), EventKind::Frozen));
//! ```

use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde::Serialize;

/// What an `EEH:` line says happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// The kernel found the PE frozen.
    Frozen,
    /// Recovery of the PE began.
    Recovering,
    /// How often the PE has failed in the last hour.
    FreezeCount,
    /// Recovery succeeded.
    Recovered,
    /// Recovery failed.
    Failed,
    /// The PE passed `eeh_max_freezes` and is disabled for good.
    PermanentlyDisabled,
    /// A whole PHB failed (fence or dead PHB).
    PhbFailure,
    /// Any other `EEH:` line.
    Message,
}

impl EventKind {
    /// The outcome the event settles, if it settles one.
    pub const fn outcome(self) -> Option<&'static str> {
        match self {
            EventKind::Recovered => Some("recovered"),
            EventKind::Failed => Some("failed"),
            EventKind::PermanentlyDisabled => Some("permanently disabled"),
            EventKind::Recovering => Some("in progress"),
            _ => None,
        }
    }
}

/// One EEH event of the kernel log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EehEvent {
    /// The record's sequence number.
    pub seq: u64,
    /// Microseconds since boot.
    pub time_us: u64,
    /// The PHB number (`PHB#x`; the PCI domain on PowerNV).
    pub phb: Option<u32>,
    /// The PE number on that PHB (`PE#y`).
    pub pe: Option<u32>,
    /// What happened.
    pub kind: EventKind,
    /// How it ended, where the line says.
    pub outcome: Option<&'static str>,
    /// Freezes in the last hour, where the line says.
    pub freezes: Option<u32>,
    /// The text after `EEH: `.
    pub text: String,
}

/// The parser's memory: the PE under recovery.
#[derive(Debug, Default)]
pub struct EehLog {
    recovering: Option<(u32, u32)>,
}

/// `PHB#x-PE#y` or `PHB#x` (hex) at the start of `text`.
fn phb_pe(text: &str) -> Option<(u32, Option<u32>)> {
    let rest = text.strip_prefix("PHB#")?;
    let end = rest.find(|c: char| !c.is_ascii_hexdigit()).unwrap_or(rest.len());
    let phb = u32::from_str_radix(&rest[..end], 16).ok()?;
    let pe = rest[end..].strip_prefix("-PE#").and_then(|pe| {
        let end = pe.find(|c: char| !c.is_ascii_hexdigit()).unwrap_or(pe.len());
        u32::from_str_radix(&pe[..end], 16).ok()
    });
    Some((phb, pe))
}

/// The first `PHB#...` in `text`.
fn find_phb_pe(text: &str) -> Option<(u32, Option<u32>)> {
    text.find("PHB#").and_then(|at| phb_pe(&text[at..]))
}

/// The number after `word` in `text` (`failed 2 times`).
fn number_after(text: &str, word: &str) -> Option<u32> {
    let at = text.find(word)? + word.len();
    text[at..].split_whitespace().next()?.parse().ok()
}

impl EehLog {
    /// Parses one `/dev/kmsg` record; `None` unless its text is an `EEH:` line.
    pub fn parse_record(&mut self, record: &str) -> Option<EehEvent> {
        let (prefix, text) = record.split_once(';')?;
        let mut fields = prefix.split(',');
        let _priority = fields.next()?;
        let seq = fields.next()?.parse().ok()?;
        let time_us = fields.next()?.parse().ok()?;
        let text = text.lines().next()?.strip_prefix("EEH: ")?.trim_end().to_owned();
        let mut located = find_phb_pe(&text);
        let (kind, freezes) = if text.starts_with("Frozen PHB#") {
            (EventKind::Frozen, None)
        } else if text.starts_with("Recovering PHB#") {
            (EventKind::Recovering, None)
        } else if text.contains("has been permanently disabled") {
            (EventKind::PermanentlyDisabled, number_after(&text, "has failed "))
        } else if text.contains("will be permanently disabled after") {
            (EventKind::FreezeCount, number_after(&text, "has failed "))
        } else if text.starts_with("Recovery successful") {
            (EventKind::Recovered, None)
        } else if text.starts_with("Unable to recover") {
            (EventKind::Failed, None)
        } else if text.starts_with("PHB#") && text.contains("failure detected") {
            (EventKind::PhbFailure, None)
        } else {
            (EventKind::Message, None)
        };
        match kind {
            EventKind::Recovering => self.recovering = located.and_then(|(phb, pe)| Some((phb, pe?))),
            EventKind::FreezeCount | EventKind::Recovered | EventKind::Failed if located.is_none() => {
                located = self.recovering.map(|(phb, pe)| (phb, Some(pe)));
            }
            _ => {}
        }
        if matches!(kind, EventKind::Recovered | EventKind::Failed | EventKind::PermanentlyDisabled) {
            self.recovering = None;
        }
        Some(EehEvent {
            seq,
            time_us,
            phb: located.map(|(phb, _)| phb),
            pe: located.and_then(|(_, pe)| pe),
            kind,
            outcome: kind.outcome(),
            freezes,
            text,
        })
    }
}

/// Why the kernel log could not be read.
#[derive(Debug, thiserror::Error)]
pub enum KmsgError {
    /// Opening or reading failed.
    #[error("Cannot read the kernel log {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error (`EACCES`: reading /dev/kmsg needs root or
        /// kernel.dmesg_restrict=0).
        #[source]
        source: io::Error,
    },
}

/// A reader of `/dev/kmsg` (or a file of its records, one a line).
#[derive(Debug)]
pub struct Kmsg {
    file: File,
    path: PathBuf,
    pending: String,
    follow: bool,
}

/// The most one `/dev/kmsg` record takes.
const RECORD_MAX: usize = 8192;

impl Kmsg {
    /// Opens `path`. Without `follow`, reading stops at the end of what the
    /// log holds now; with it, reading waits for new records.
    pub fn open(path: &Path, follow: bool) -> Result<Self, KmsgError> {
        let flags = if follow { 0 } else { libc::O_NONBLOCK };
        let file = OpenOptions::new()
            .read(true)
            .custom_flags(flags)
            .open(path)
            .map_err(|source| KmsgError::Read { path: path.to_owned(), source })?;
        Ok(Kmsg { file, path: path.to_owned(), pending: String::new(), follow })
    }

    /// The next record, `None` at the end (never, when following a device).
    pub fn next_record(&mut self) -> Result<Option<String>, KmsgError> {
        let mut buf = vec![0; RECORD_MAX];
        loop {
            if let Some(at) = self.pending.find('\n') {
                let line: String = self.pending.drain(..=at).collect();
                // Continuation lines (` KEY=value`) carry no record.
                if line.starts_with(' ') {
                    continue;
                }
                return Ok(Some(line.trim_end().to_owned()));
            }
            match self.file.read(&mut buf) {
                Ok(0) if self.follow => std::thread::sleep(std::time::Duration::from_millis(200)),
                Ok(0) => return Ok((!self.pending.is_empty()).then(|| std::mem::take(&mut self.pending))),
                Ok(n) => {
                    self.pending.push_str(&String::from_utf8_lossy(&buf[..n]));
                    // /dev/kmsg hands out one record per read, without a
                    // newline split: make it a line.
                    if !self.pending.ends_with('\n') && n < RECORD_MAX && self.is_device() {
                        self.pending.push('\n');
                    }
                }
                // Records overwritten before they were read: go on.
                Err(e) if e.raw_os_error() == Some(libc::EPIPE) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(source) => return Err(KmsgError::Read { path: self.path.clone(), source }),
            }
        }
    }

    fn is_device(&self) -> bool {
        self.file.metadata().is_ok_and(|m| !m.is_file())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOG: &str = "\
4,100,5000,-;EEH: Frozen PHB#0-PE#fe detected
4,101,5001,-;EEH: PE location: N/A, PHB location: N/A
4,102,5002,-;EEH: Recovering PHB#0-PE#fe
3,103,5003,-;EEH: This PCI device has failed 2 times in the last hour and will be permanently disabled after 5 failures.
6,104,5004,-;vfio-pci 0000:00:00.0: something else
6,105,5005,-;EEH: Recovery successful.
3,106,6000,-;EEH: PHB#1-PE#3 has failed 6 times in the last hour and has been permanently disabled.
3,107,6001,-;EEH: PHB#2 failure detected, location: N/A
";

    fn events() -> Vec<EehEvent> {
        let mut log = EehLog::default();
        LOG.lines().filter_map(|l| log.parse_record(l)).collect()
    }

    #[test]
    fn eeh_lines_become_events_with_their_pe() {
        let events = events();
        let kinds: Vec<_> = events.iter().map(|e| (e.kind, e.phb, e.pe)).collect();
        assert_eq!(
            kinds,
            [
                (EventKind::Frozen, Some(0), Some(0xfe)),
                (EventKind::Message, None, None),
                (EventKind::Recovering, Some(0), Some(0xfe)),
                (EventKind::FreezeCount, Some(0), Some(0xfe)),
                (EventKind::Recovered, Some(0), Some(0xfe)),
                (EventKind::PermanentlyDisabled, Some(1), Some(3)),
                (EventKind::PhbFailure, Some(2), None),
            ]
        );
        assert_eq!(events[3].freezes, Some(2));
        assert_eq!(events[4].outcome, Some("recovered"));
        assert_eq!((events[5].freezes, events[5].outcome), (Some(6), Some("permanently disabled")));
        assert_eq!((events[0].seq, events[0].time_us), (100, 5000));
    }

    #[test]
    fn a_file_of_records_reads_to_its_end() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kmsg");
        std::fs::write(&path, format!("{LOG} continuation=1\n4,108,7000,-;EEH: last")).unwrap();
        let mut kmsg = Kmsg::open(&path, false).unwrap();
        let mut records = Vec::new();
        while let Some(r) = kmsg.next_record().unwrap() {
            records.push(r);
        }
        assert_eq!(records.len(), 9);
        assert_eq!(records[8], "4,108,7000,-;EEH: last");
        let err = Kmsg::open(&dir.path().join("none"), false).unwrap_err();
        assert!(err.to_string().starts_with("Cannot read the kernel log"));
    }
}
