//! Heap bytes per address-mapping entry, measured with a counting global
//! allocator while the table grows from nothing to 64K entries over 256 VMs
//! (one PE per function). Target ≤ 64 B. Not timed: the figure is exact.
//!
//! `cargo bench -p vfio-eeh-bench --bench mapping_memory`

use vfio_eeh_bench::memory::{mapping_memory, CountingAlloc};
use vfio_eeh_bench::resolve::RESOLVE_VMS;

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

fn main() {
    // Under `cargo test` (no `--bench`) check that it works on a small table.
    let sizes: &[usize] = if std::env::args().any(|a| a == "--bench") { &[1024, 16384, 65536] } else { &[256] };
    for &entries in sizes {
        let figure = mapping_memory(entries, RESOLVE_VMS).expect("the counting allocator is installed");
        println!(
            "mapping_memory/{entries}_entries_over_{}_vms: {:.1} B/entry (table {} B, of which {} B for the empty VMs)",
            figure.vms, figure.bytes_per_entry, figure.table_bytes, figure.empty_bytes
        );
    }
}
