//! What a VMM lends the device models of its functions in eehd: DMA into
//! its memory through a mirror of its IOMMU mappings, and interrupts that
//! go back with the answers to its device requests (docs/shared-host.md).
//!
//! The VMM keeps its VFIO containers; each change to a container's
//! mappings is mirrored here ([`Request::Dma`](crate::protocol::Request::Dma))
//! before the device request that could make the model use it. A DMA
//! translates through the mirror, exactly as the VMM's own IOMMU would, and
//! copies with `process_vm_readv`/`process_vm_writev` into the process that
//! opened the connection (by pidfd), which the kernel checks address by
//! address: a VMM can only lend its own memory, and an address it does not
//! have is an IOMMU fault that freezes the PE.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use eehd_protocol::process::Process;
use vfio_eeh::backend::errno::EFAULT;
use vfio_eeh_sim::iova::{IovaChange, IovaMap, Target};
use vfio_eeh_sim::nvme::{DmaError, InterruptSink};
use vfio_eeh_sim::DeviceBus;

use crate::protocol::{DmaChange, Interrupts};

/// The most mapped ranges one address space may hold (a 2 GiB guest mapped
/// page by page by sPAPR TCEs is half of it).
pub const MAX_RANGES: usize = 1 << 20;

/// A VMM's DMA address space as eehd mirrors it.
pub type Space = Arc<Mutex<IovaMap>>;

/// Locks a mirror (a panic elsewhere leaves it usable: each change is
/// applied whole).
pub fn locked(space: &Space) -> MutexGuard<'_, IovaMap> {
    space.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A wire change as the mirror applies it.
pub fn iova_change(change: &DmaChange) -> IovaChange {
    match *change {
        DmaChange::Clear => IovaChange::Clear,
        DmaChange::Map { iova, size, vaddr, device_reads, device_writes } => {
            IovaChange::Map { iova, size, target: Target { vaddr, device_reads, device_writes } }
        }
        DmaChange::Unmap { iova, size } => IovaChange::Unmap { iova, size },
    }
}

/// One function's bus, lent by one session.
#[derive(Debug)]
pub struct VmmBus {
    process: Arc<Process>,
    space: Space,
    msix: AtomicBool,
    raised: Mutex<Interrupts>,
}

impl VmmBus {
    /// DMA into `process` through `space`; MSI-X as `msix` says.
    pub fn new(process: Arc<Process>, space: Space, msix: bool) -> Self {
        VmmBus { process, space, msix: AtomicBool::new(msix), raised: Mutex::default() }
    }

    /// Whether this bus reaches `space`.
    pub fn uses(&self, space: &Space) -> bool {
        Arc::ptr_eq(&self.space, space)
    }

    /// The VMM enabled or disabled MSI-X.
    pub fn set_msix(&self, enabled: bool) {
        self.msix.store(enabled, Ordering::Release);
    }

    /// The interrupts raised since the last call.
    pub fn take_interrupts(&self) -> Interrupts {
        std::mem::take(&mut *self.raised.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// A DMA fault is the VMM's mistake (or its guest's): logged, with the
    /// VMM's pid, as the kernel logs an IOMMU fault.
    fn logged(&self, result: Result<(), DmaError>) -> Result<(), DmaError> {
        if let Err(error) = &result {
            tracing::warn!(pid = self.process.pid(), %error, "device model DMA fault: the PE freezes");
        }
        result
    }

    /// A DMA of `len` bytes at `iova`: `copy(vaddr, range)` moves each piece
    /// between the VMM's memory at `vaddr` and `range` of the model's buffer.
    /// The mirror stays locked meanwhile.
    fn dma(
        &self,
        iova: u64,
        len: usize,
        device_writes: bool,
        mut copy: impl FnMut(u64, std::ops::Range<usize>) -> std::io::Result<()>,
    ) -> Result<(), DmaError> {
        let space = locked(&self.space);
        let mut done = 0usize;
        for (vaddr, n) in space.translate(iova, len as u64, device_writes)? {
            let fault = DmaError::Fault { iova: iova + done as u64 };
            let n = usize::try_from(n).map_err(|_| fault)?;
            copy(vaddr, done..done + n).map_err(|_| fault)?;
            done += n;
        }
        Ok(())
    }
}

impl InterruptSink for VmmBus {
    fn msix_enabled(&self) -> bool {
        self.msix.load(Ordering::Acquire)
    }

    fn raise_msix(&self, vector: u16) {
        let mut raised = self.raised.lock().unwrap_or_else(PoisonError::into_inner);
        if !raised.msix.contains(&vector) {
            raised.msix.push(vector);
        }
    }

    fn set_intx(&self, asserted: bool) {
        self.raised.lock().unwrap_or_else(PoisonError::into_inner).intx = Some(asserted);
    }
}

impl DeviceBus for VmmBus {
    fn dma_read(&self, iova: u64, buf: &mut [u8]) -> Result<(), DmaError> {
        let len = buf.len();
        self.logged(self.dma(iova, len, false, |vaddr, range| {
            let piece = buf.get_mut(range).ok_or_else(|| std::io::Error::from_raw_os_error(EFAULT))?;
            self.process.read(vaddr, piece)
        }))
    }

    fn dma_write(&self, iova: u64, bytes: &[u8]) -> Result<(), DmaError> {
        self.logged(self.dma(iova, bytes.len(), true, |vaddr, range| {
            let piece = bytes.get(range).ok_or_else(|| std::io::Error::from_raw_os_error(EFAULT))?;
            self.process.write(vaddr, piece)
        }))
    }
}
