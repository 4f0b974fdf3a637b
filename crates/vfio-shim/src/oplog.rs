//! The op log: every emulated VFIO and EEH operation with its fd kind,
//! group and result, with per-op totals, dumped as JSON for tests and
//! `eehctl`. Records are kept in two bounded rings: the data path (region
//! reads and writes, DMA map and unmap: a guest's boot makes hundreds of
//! thousands) in one, everything else (opens, control and EEH ioctls) in
//! another, so that DMA traffic cannot evict the EEH and control records.
//! Names are `'static` and data-path records carry no group list, so
//! logging a data-path operation allocates nothing once its ring is
//! full-sized.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Mutex, PoisonError};
use std::time::Instant;

use serde::{Deserialize, Serialize};
use vfio_eeh::uapi::FdKind;

/// Records kept per ring; older ones are dropped (their totals remain).
const CAPACITY: usize = 1 << 16;

/// The op-log JSON schema version (2: records carry `groups`; two rings).
pub const OPLOG_SCHEMA_VERSION: u32 = 2;

/// The data-path operations, kept in a ring of their own.
pub const DATA_PATH_OPS: &[&str] = &["pread", "pwrite", "VFIO_IOMMU_MAP_DMA", "VFIO_IOMMU_UNMAP_DMA"];

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
    /// `CHECK_EXTENSION`, the container fd of `VFIO_GROUP_SET_CONTAINER`,
    /// the group number of a group's `open`, the region offset of
    /// `pread`/`pwrite`, otherwise the ioctl's argument as a number.
    pub arg: u64,
    /// The IOMMU groups the record belongs to (the emulated host numbers
    /// each group like its PE, so these are the PEs too): the group of a
    /// group file or device file, and for `VFIO_EEH_PE_OP` the groups the op
    /// was applied to, in order. Empty for containers' other ioctls, failed
    /// opens and the data path.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<u32>,
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
    /// The most recent records of both rings, merged, oldest first.
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
    /// Opens, control and EEH ioctls.
    control: VecDeque<OpRecord>,
    /// [`DATA_PATH_OPS`].
    data: VecDeque<OpRecord>,
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

    /// Logs one operation of `groups` (and traces it: `debug`, or `trace`
    /// for the hot region and DMA paths).
    pub(crate) fn record(
        &self,
        fd: i32,
        kind: &'static str,
        op: &'static str,
        arg: u64,
        groups: Vec<u32>,
        result: Result<i64, i32>,
    ) {
        let result = result.unwrap_or_else(|e| -i64::from(e));
        let t_us = u64::try_from(self.start.elapsed().as_micros()).unwrap_or(u64::MAX);
        let data_path = DATA_PATH_OPS.contains(&op);
        if data_path {
            tracing::trace!(fd, fd_kind = kind, op, arg, result);
        } else {
            tracing::debug!(fd, fd_kind = kind, op, arg, ?groups, result);
        }
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        inner.seq += 1;
        *inner.counts.entry(op).or_default() += 1;
        let seq = inner.seq;
        let ring = if data_path { &mut inner.data } else { &mut inner.control };
        if ring.len() == CAPACITY {
            ring.pop_front();
        }
        ring.push_back(OpRecord {
            seq,
            t_us,
            fd,
            fd_kind: Cow::Borrowed(kind),
            op: Cow::Borrowed(op),
            arg,
            groups,
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
            records: merged(&inner.control, &inner.data),
        }
    }
}

/// The records of both rings in sequence order.
fn merged(a: &VecDeque<OpRecord>, b: &VecDeque<OpRecord>) -> Vec<OpRecord> {
    let mut records = Vec::with_capacity(a.len() + b.len());
    let (mut a, mut b) = (a.iter().peekable(), b.iter().peekable());
    loop {
        let next = match (a.peek(), b.peek()) {
            (Some(x), Some(y)) if x.seq < y.seq => a.next(),
            (Some(_), Some(_)) | (None, Some(_)) => b.next(),
            (Some(_), None) => a.next(),
            (None, None) => return records,
        };
        records.extend(next.cloned());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_and_counts() {
        let log = OpLog::new();
        log.record(3, "container", "VFIO_GET_API_VERSION", 0, Vec::new(), Ok(0));
        log.record(4, "group", "VFIO_GROUP_GET_STATUS", 0, vec![2], Err(22));
        let dump = log.dump();
        assert_eq!(dump.total, 2);
        assert_eq!(dump.records[1].result, -22);
        assert_eq!(dump.records[1].groups, [2]);
        assert_eq!(dump.counts["VFIO_GROUP_GET_STATUS"], 1);
        let json = serde_json::to_string(&dump).unwrap();
        assert_eq!(serde_json::from_str::<OpLogDump>(&json).unwrap(), dump);
    }

    /// Issue 13 item 4: a guest's boot unmaps 524,288 times (two
    /// containers); the EEH and control records logged before must survive.
    #[test]
    fn dma_traffic_cannot_evict_control_and_eeh_records() {
        let log = OpLog::new();
        log.record(3, "group", "open", 0, vec![0], Ok(3));
        log.record(4, "container", "VFIO_EEH_PE_OP", 5, vec![0], Ok(0));
        let unmaps = 2 * CAPACITY as u64 + 7;
        for _ in 0..unmaps {
            log.record(4, "container", "VFIO_IOMMU_UNMAP_DMA", 0, Vec::new(), Ok(0));
        }
        log.record(4, "container", "VFIO_EEH_PE_OP", 4, vec![0], Ok(2));
        let dump = log.dump();
        assert_eq!(dump.total, unmaps + 3);
        assert_eq!(dump.counts["VFIO_IOMMU_UNMAP_DMA"], unmaps);
        let control: Vec<_> = dump.records.iter().filter(|r| r.op != "VFIO_IOMMU_UNMAP_DMA").map(|r| r.seq).collect();
        assert_eq!(control, [1, 2, unmaps + 3], "every control record is held");
        assert_eq!(dump.records.len(), CAPACITY + 3, "the data ring holds its capacity");
        assert!(dump.records.windows(2).all(|w| w[0].seq < w[1].seq), "merged in order");
    }
}
