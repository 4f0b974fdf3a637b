//! Memory: heap bytes per address-mapping entry, counted by a global
//! allocator. Only a binary of its own installs it (the `mapping_memory`
//! benchmark, `eehctl-bench-memory`), so nothing else allocates meanwhile
//! and no production binary carries it.

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicBool, AtomicIsize, Ordering};

use serde::{Deserialize, Serialize};

use crate::resolve::build_maps;

/// A global allocator that counts heap bytes (over the system allocator)
/// while counting is switched on, which [`mapping_memory`] does around its
/// weighing; otherwise it costs one uncontended relaxed load per call, so
/// the timed figures of the same binary are not disturbed. Install it in a
/// binary to get [`mapping_memory`]:
///
/// ```ignore
/// #[global_allocator]
/// static ALLOC: vfio_eeh_bench::memory::CountingAlloc = vfio_eeh_bench::memory::CountingAlloc;
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct CountingAlloc;

static COUNTING: AtomicBool = AtomicBool::new(false);
static NET_BYTES: AtomicIsize = AtomicIsize::new(0);

fn count(bytes: usize, sign: isize) {
    if COUNTING.load(Ordering::Relaxed) {
        NET_BYTES.fetch_add(sign * isize::try_from(bytes).unwrap_or(isize::MAX), Ordering::Relaxed);
    }
}

impl CountingAlloc {
    /// Runs `f` with counting on; returns its result and the net heap bytes
    /// it allocated (0 unless installed). Not reentrant; other threads'
    /// allocations meanwhile are counted too.
    pub fn counting<T>(f: impl FnOnce() -> T) -> (T, isize) {
        let before = NET_BYTES.load(Ordering::Relaxed);
        COUNTING.store(true, Ordering::SeqCst);
        let value = f();
        COUNTING.store(false, Ordering::SeqCst);
        (value, NET_BYTES.load(Ordering::Relaxed) - before)
    }

    /// Whether this allocator is the global one.
    pub fn installed() -> bool {
        let (probe, bytes) = Self::counting(|| black_box(vec![0u8; 4096]));
        drop(probe);
        bytes >= 4096
    }
}

// SAFETY: every method forwards to `System` with the caller's arguments,
// which the caller guarantees valid; the counter is only arithmetic.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded as received; `layout` has non-zero size (the
        // caller's contract).
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            count(layout.size(), 1);
        }
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as `alloc`.
        let ptr = unsafe { System.alloc_zeroed(layout) };
        if !ptr.is_null() {
            count(layout.size(), 1);
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from this allocator (so from `System`) with
        // `layout` (the caller's contract).
        unsafe { System.dealloc(ptr, layout) };
        count(layout.size(), -1);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: `ptr` came from `System` with `layout`; `new_size` is
        // non-zero and fits (the caller's contract).
        let new = unsafe { System.realloc(ptr, layout, new_size) };
        if !new.is_null() {
            count(new_size, 1);
            count(layout.size(), -1);
        }
        new
    }
}

/// Heap bytes an address table takes.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MemoryFigure {
    /// Mapped devices.
    pub entries: usize,
    /// VMs (each with one virtual PHB).
    pub vms: u32,
    /// Heap bytes of the whole table.
    pub table_bytes: usize,
    /// Heap bytes of the same VMs with nothing mapped.
    pub empty_bytes: usize,
    /// (table − empty) / entries: one mapping with its PE's bookkeeping.
    pub bytes_per_entry: f64,
}

/// Weighs [`build_maps`]`(entries, vms)` with [`CountingAlloc`]; `None`
/// when it is not the global allocator. Other threads must not allocate
/// meanwhile.
pub fn mapping_memory(entries: usize, vms: u32) -> Option<MemoryFigure> {
    if !CountingAlloc::installed() {
        return None;
    }
    let weigh = |n| {
        let (maps, bytes) = CountingAlloc::counting(|| build_maps(n, vms));
        drop(black_box(maps));
        usize::try_from(bytes).unwrap_or(0)
    };
    let empty_bytes = weigh(0);
    let table_bytes = weigh(entries);
    #[allow(clippy::cast_precision_loss)] // Byte counts far below 2^52.
    let bytes_per_entry = table_bytes.saturating_sub(empty_bytes) as f64 / entries.max(1) as f64;
    Some(MemoryFigure { entries, vms, table_bytes, empty_bytes, bytes_per_entry })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_needs_the_counting_allocator() {
        // The test binary uses the system allocator.
        assert!(!CountingAlloc::installed());
        assert_eq!(mapping_memory(16, 4), None);
    }
}
