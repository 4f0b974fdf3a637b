//! The op log: every emulated VFIO and EEH operation with its fd kind and
//! result, kept in a bounded ring with per-op totals, dumped as JSON for
//! tests and `eehctl`. Records are fixed-size and names are `'static`, so
//! logging an operation allocates nothing once the ring is full-sized.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Mutex, PoisonError};
use std::time::Instant;

use serde::{Deserialize, Serialize};
use vfio_eeh::uapi::FdKind;

/// Records kept; older ones are dropped (their totals remain).
const CAPACITY: usize = 1 << 16;

/// The op-log JSON schema version.
pub const OPLOG_SCHEMA_VERSION: u32 = 1;

/// One operation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpRecord {
    /// Sequence number, from 1.
    pub seq: u64,
    /// Microseconds since the library started.
    pub t_us: u64,
    /// The descriptor (-1 for a failed open).
    pub fd: i32,
    /// `container`, `group`, `device` or `path`.
    pub fd_kind: Cow<'static, str>,
    /// The operation: an ioctl name (`VFIO_EEH_PE_OP`, ...), `open`, `pread`, ...
    pub op: Cow<'static, str>,
    /// Its main argument: the `VFIO_EEH_PE_OP` op code, the extension of
    /// `CHECK_EXTENSION`, the region offset of `pread`/`pwrite`, otherwise
    /// the ioctl's argument as a number.
    pub arg: u64,
    /// The result: the value returned, or `-errno`.
    pub result: i64,
}

/// The whole log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpLogDump {
    /// [`OPLOG_SCHEMA_VERSION`].
    pub schema_version: u32,
    /// Operations logged since start.
    pub total: u64,
    /// Operations per name since start.
    pub counts: BTreeMap<String, u64>,
    /// The most recent records, oldest first.
    pub records: Vec<OpRecord>,
}

/// The name of an fd kind in records.
pub(crate) const fn kind_name(kind: FdKind) -> &'static str {
    match kind {
        FdKind::Container => "container",
        FdKind::Group => "group",
        FdKind::Device => "device",
    }
}

#[derive(Debug, Default)]
struct Inner {
    seq: u64,
    ring: VecDeque<OpRecord>,
    counts: HashMap<&'static str, u64>,
}

/// The log.
#[derive(Debug)]
pub(crate) struct OpLog {
    start: Instant,
    inner: Mutex<Inner>,
}

impl OpLog {
    /// An empty log starting now.
    pub(crate) fn new() -> Self {
        OpLog { start: Instant::now(), inner: Mutex::default() }
    }

    /// Logs one operation (and traces it: `debug`, or `trace` for the hot
    /// region and DMA paths).
    pub(crate) fn record(&self, fd: i32, kind: &'static str, op: &'static str, arg: u64, result: Result<i64, i32>) {
        let result = result.unwrap_or_else(|e| -i64::from(e));
        let t_us = u64::try_from(self.start.elapsed().as_micros()).unwrap_or(u64::MAX);
        if matches!(op, "pread" | "pwrite" | "VFIO_IOMMU_MAP_DMA" | "VFIO_IOMMU_UNMAP_DMA") {
            tracing::trace!(fd, fd_kind = kind, op, arg, result);
        } else {
            tracing::debug!(fd, fd_kind = kind, op, arg, result);
        }
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        inner.seq += 1;
        *inner.counts.entry(op).or_default() += 1;
        if inner.ring.len() == CAPACITY {
            inner.ring.pop_front();
        }
        let seq = inner.seq;
        inner.ring.push_back(OpRecord {
            seq,
            t_us,
            fd,
            fd_kind: Cow::Borrowed(kind),
            op: Cow::Borrowed(op),
            arg,
            result,
        });
    }

    /// A copy of the log.
    pub(crate) fn dump(&self) -> OpLogDump {
        let inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        OpLogDump {
            schema_version: OPLOG_SCHEMA_VERSION,
            total: inner.seq,
            counts: inner.counts.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect(),
            records: inner.ring.iter().cloned().collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_and_counts() {
        let log = OpLog::new();
        log.record(3, "container", "VFIO_GET_API_VERSION", 0, Ok(0));
        log.record(4, "group", "VFIO_GROUP_GET_STATUS", 0, Err(22));
        let dump = log.dump();
        assert_eq!(dump.total, 2);
        assert_eq!(dump.records[1].result, -22);
        assert_eq!(dump.counts["VFIO_GROUP_GET_STATUS"], 1);
        let json = serde_json::to_string(&dump).unwrap();
        assert_eq!(serde_json::from_str::<OpLogDump>(&json).unwrap(), dump);
    }
}
