//! `eehctl oplog --socket PATH`: the VFIO and EEH operations a running VMM
//! issued on the emulated `/dev/vfio`, with fd kind, argument and result.
//! `VFIO_EEH_PE_OP` records carry their op's name and the groups (PEs) the
//! op acted on; group and device records their group. The data path (region
//! reads and writes, DMA map/unmap: hundreds of thousands during a guest
//! boot) is counted always but listed only with `--all`; the library keeps
//! it in a ring of its own, so it never evicts the other records.

use serde::Serialize;
use vfio_eeh::ops::EehOp;
use vfio_eeh::uapi::VfioEehPeOp;
use vfio_eeh_shim::oplog::{OpRecord, DATA_PATH_OPS};

use crate::output::{table, Output};
use crate::socket::SocketArgs;

/// `eehctl oplog` options.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    socket: SocketArgs,
    /// Also list region reads/writes and DMA map/unmap records.
    #[arg(long)]
    all: bool,
    /// Only records with a sequence number above this one.
    #[arg(long, value_name = "SEQ", default_value_t = 0)]
    after: u64,
    /// Only records of this IOMMU group (PE): its group and device files'
    /// operations, and the `VFIO_EEH_PE_OP`s applied to it.
    #[arg(long, value_name = "N")]
    group: Option<u32>,
}

/// One record as printed.
#[derive(Serialize)]
struct RecordView {
    #[serde(flatten)]
    record: OpRecord,
    /// For `VFIO_EEH_PE_OP`: the op's name (`get-state`, `reset-hot`, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    eeh_op: Option<&'static str>,
}

/// The JSON document.
#[derive(Serialize)]
struct OpLogView {
    /// Operations since the process started.
    total: u64,
    /// Operations per name since the process started.
    counts: std::collections::BTreeMap<String, u64>,
    /// The oldest sequence number still held (older records were dropped).
    first_held: Option<u64>,
    /// The selected records, oldest first.
    records: Vec<RecordView>,
}

/// The name of `VFIO_EEH_PE_OP` op `code`, decoded as the container does.
fn eeh_op_name(code: u64) -> Option<&'static str> {
    let op = VfioEehPeOp::new(u32::try_from(code).ok()?, Default::default());
    EehOp::try_from(&op).ok().map(|op| op.name())
}

fn human(view: &OpLogView) -> String {
    let mut counts = table(&["OPERATION", "COUNT"]);
    for (op, n) in &view.counts {
        counts.add_row([op.clone(), n.to_string()]);
    }
    let mut rows = table(&["SEQ", "TIME (s)", "FD", "KIND", "GROUPS", "OPERATION", "ARG", "RESULT"]);
    for r in &view.records {
        let op = match r.eeh_op {
            Some(name) => format!("{} {name}", r.record.op),
            None => r.record.op.to_string(),
        };
        let seconds = format!("{:.6}", r.record.t_us as f64 / 1e6);
        let fd = r.record.fd.to_string();
        let arg = format!("{:#x}", r.record.arg);
        let groups: Vec<String> = r.record.groups.iter().map(ToString::to_string).collect();
        rows.add_row([
            r.record.seq.to_string(),
            seconds,
            fd,
            r.record.fd_kind.to_string(),
            if groups.is_empty() { "-".to_owned() } else { groups.join(",") },
            op,
            arg,
            r.record.result.to_string(),
        ]);
    }
    let held = view.first_held.map_or_else(String::new, |seq| format!(", records from #{seq} held"));
    format!("{} operations{held}\n{counts}\n\n{rows}\n", view.total)
}

/// Prints the op log.
pub fn run(args: &Args, out: &Output) -> anyhow::Result<()> {
    let dump = args.socket.connect()?.op_log()?;
    let first_held = dump.records.first().map(|r| r.seq);
    let records = dump
        .records
        .into_iter()
        .filter(|r| r.seq > args.after && (args.all || !DATA_PATH_OPS.contains(&&*r.op)))
        .filter(|r| args.group.is_none_or(|g| r.groups.contains(&g)))
        .map(|record| {
            let eeh_op = (record.op == "VFIO_EEH_PE_OP").then(|| eeh_op_name(record.arg)).flatten();
            RecordView { record, eeh_op }
        })
        .collect();
    let view = OpLogView { total: dump.total, counts: dump.counts, first_held, records };
    out.print(&view, || human(&view))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eeh_op_codes_are_named() {
        assert_eq!(eeh_op_name(4), Some("get-state"));
        assert_eq!(eeh_op_name(6), Some("reset-hot"));
        assert_eq!(eeh_op_name(9), Some("inject-err"));
        assert_eq!(eeh_op_name(10), None);
        assert_eq!(eeh_op_name(u64::MAX), None);
    }
}
