//! `eehctl-bench-memory`: weighs the address table for `eehctl bench` and
//! prints the [`MemoryFigure`](vfio_eeh_bench::memory::MemoryFigure) (heap
//! bytes per mapping entry) as JSON on stdout.
//!
//! Weighing needs a counting global allocator. It is installed here only,
//! so `eehctl` itself runs on the system allocator, and in a process of its
//! own nothing else allocates while it counts: the figure is exact.

use anyhow::Context;
use vfio_eeh_bench::memory::{mapping_memory, CountingAlloc};
use vfio_eeh_bench::resolve::{RESOLVE_SIZES, RESOLVE_VMS};

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

fn main() -> anyhow::Result<()> {
    let figure = mapping_memory(RESOLVE_SIZES[2], RESOLVE_VMS).context("The counting allocator is not installed")?;
    serde_json::to_writer(std::io::stdout().lock(), &figure).context("Cannot write to stdout")
}
