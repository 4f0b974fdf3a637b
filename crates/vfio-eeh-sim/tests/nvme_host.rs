//! The NVMe model on the simulated host: its DMA goes through the bus a VMM
//! attaches and through the PE's gate; an IOVA the bus does not map freezes
//! the PE (cause `dma_fault`) and reaches no memory; a frozen PE drops
//! doorbells and reads all-ones; a PE reset resets the controller.

use std::sync::{Arc, Mutex};

use vfio_eeh::addr::PciAddr;
use vfio_eeh::backend::EehBackend;
use vfio_eeh::ops::{EehOp, PeState, ResetKind};
use vfio_eeh_sim::clock::VirtualClock;
use vfio_eeh_sim::event::{FreezeCause, SimEventKind};
use vfio_eeh_sim::nvme::{DmaError, InterruptSink};
use vfio_eeh_sim::{DeviceBus, SimHost};

/// IOVAs `BASE..BASE + 64 KiB` are mapped.
const BASE: u64 = 0x1_0000;
const SIZE: usize = 64 << 10;

#[derive(Debug, Default)]
struct Vmm {
    memory: Mutex<Vec<u8>>,
    vectors: Mutex<Vec<u16>>,
}

impl Vmm {
    fn range(&self, iova: u64, len: usize) -> Result<std::ops::Range<usize>, DmaError> {
        let start = iova.checked_sub(BASE).and_then(|o| usize::try_from(o).ok()).filter(|&s| s + len <= SIZE);
        start.map(|s| s..s + len).ok_or(DmaError::Unmapped { iova })
    }
}

impl InterruptSink for Vmm {
    fn msix_enabled(&self) -> bool {
        true
    }
    fn raise_msix(&self, vector: u16) {
        self.vectors.lock().unwrap().push(vector);
    }
    fn set_intx(&self, _asserted: bool) {}
}

impl DeviceBus for Vmm {
    fn dma_read(&self, iova: u64, buf: &mut [u8]) -> Result<(), DmaError> {
        let r = self.range(iova, buf.len())?;
        buf.copy_from_slice(&self.memory.lock().unwrap()[r]);
        Ok(())
    }
    fn dma_write(&self, iova: u64, bytes: &[u8]) -> Result<(), DmaError> {
        let r = self.range(iova, bytes.len())?;
        self.memory.lock().unwrap()[r].copy_from_slice(bytes);
        Ok(())
    }
}

fn identify(cid: u16, prp1: u64) -> [u8; 64] {
    let mut e = [0u8; 64];
    e[0] = 0x06;
    e[2..4].copy_from_slice(&cid.to_le_bytes());
    e[24..32].copy_from_slice(&prp1.to_le_bytes());
    e[40] = 1; // CNS 1: controller
    e
}

fn enable(host: &SimHost, nvme: PciAddr, vmm: &Vmm) {
    vmm.memory.lock().unwrap()[0x1000..0x2000].fill(0);
    host.bar_write(nvme, 0, 0x24, 4, 0x0003_0003).unwrap();
    host.bar_write(nvme, 0, 0x28, 8, BASE).unwrap();
    host.bar_write(nvme, 0, 0x30, 8, BASE + 0x1000).unwrap();
    host.bar_write(nvme, 0, 0x14, 4, 0x0046_0001).unwrap();
    assert_eq!(host.bar_read(nvme, 0, 0x1c, 4).unwrap(), 1, "ready");
}

#[test]
fn the_model_dmas_through_the_bus_and_an_iommu_fault_freezes_the_pe() {
    let clock = Arc::new(VirtualClock::new());
    let host = SimHost::builtin(clock);
    let nvme: PciAddr = "0000:01:00.0".parse().unwrap();
    let pe = host.pe_of(nvme).unwrap();
    host.pe_op(pe, EehOp::Enable).unwrap();
    let vmm = Arc::new(Vmm { memory: Mutex::new(vec![0; SIZE]), ..Vmm::default() });
    host.attach_bus(nvme, Some(vmm.clone())).unwrap();
    enable(&host, nvme, &vmm);

    vmm.memory.lock().unwrap()[..64].copy_from_slice(&identify(1, BASE + 0x2000));
    host.bar_write(nvme, 0, 0x1000, 4, 1).unwrap();
    assert_eq!(&vmm.memory.lock().unwrap()[0x2000..0x2002], &[0x4d, 0x14], "Identify data by DMA");
    assert_eq!(vmm.memory.lock().unwrap()[0x100e] & 1, 1, "a completion with phase 1");
    assert_eq!(*vmm.vectors.lock().unwrap(), [0]);
    host.bar_write(nvme, 0, 0x1004, 4, 1).unwrap();

    // An Identify into an IOVA the bus does not map: an IOMMU fault.
    vmm.memory.lock().unwrap()[64..128].copy_from_slice(&identify(2, 0x4000_0000));
    host.bar_write(nvme, 0, 0x1000, 4, 2).unwrap();
    assert_eq!(host.status(pe).unwrap().state, PeState::Stopped);
    let frozen = host.events().into_iter().find_map(|e| match e.kind {
        SimEventKind::Frozen { cause, device, addr, .. } => Some((cause, device, addr)),
        _ => None,
    });
    assert_eq!(frozen, Some((FreezeCause::DmaFault, Some(nvme), 0x4000_0000)));
    assert_eq!(vmm.memory.lock().unwrap()[0x101e], 0, "no completion");

    // Frozen: doorbells dropped, registers all-ones, DMA refused.
    vmm.memory.lock().unwrap()[128..192].copy_from_slice(&identify(3, BASE + 0x3000));
    host.bar_write(nvme, 0, 0x1000, 4, 3).unwrap();
    assert_eq!(host.bar_read(nvme, 0, 0x1c, 4).unwrap(), 0xffff_ffff);
    assert_eq!(vmm.memory.lock().unwrap()[0x3000], 0);

    // A hot reset resets the controller: the driver brings it up again.
    host.pe_op(pe, EehOp::Reset(ResetKind::Hot)).unwrap();
    host.pe_op(pe, EehOp::ResetDeactivate).unwrap();
    assert_eq!(host.status(pe).unwrap().state, PeState::Normal);
    assert_eq!(host.bar_read(nvme, 0, 0x1c, 4).unwrap(), 0, "CSTS: not ready");
    assert_eq!(host.bar_read(nvme, 0, 0x28, 8).unwrap(), 0, "ASQ forgotten");
    enable(&host, nvme, &vmm);
    host.bar_write(nvme, 0, 0x1000, 4, 1).unwrap();
    assert_eq!(vmm.memory.lock().unwrap()[0x100e] & 1, 1, "works again");

    // Without a bus nothing is mapped.
    host.attach_bus(nvme, None).unwrap();
    host.bar_write(nvme, 0, 0x1000, 4, 2).unwrap();
    assert_eq!(host.status(pe).unwrap().state, PeState::Stopped);
}
