//! RTAS: one whole EEH call against the floor of every real host path, a
//! null system call.

use std::sync::Arc;

use vfio_eeh::addr::{Buid, GuestAddr};
use vfio_eeh::backend::EehBackend;
use vfio_eeh::mapping::{AddrMaps, VmId};
use vfio_eeh::rtas::{EehRtas, FlatMemory, RtasArgs, RtasCall, RtasContext, RtasPolicy, TokenTable};
use vfio_eeh_sim::clock::VirtualClock;
use vfio_eeh_sim::SimHost;

use crate::{pci, NVME};

/// One VM's RTAS firmware on the built-in simulated host, with the NVMe
/// mapped, and the two call buffers ready.
pub struct RtasBench {
    host: Arc<SimHost>,
    maps: AddrMaps,
    rtas: EehRtas,
    memory: FlatMemory,
    read_state: Vec<u8>,
    set_option: Vec<u8>,
}

impl RtasBench {
    /// The firmware with [`RtasPolicy::default`] (exact hints).
    pub fn new() -> Self {
        let host = Arc::new(SimHost::builtin(Arc::new(VirtualClock::new())));
        let vm = VmId(1);
        let nvme = pci(NVME);
        let pe = host.pe_of(nvme).expect("the built-in NVMe");
        let guest = GuestAddr::new(Buid::SPAPR_BASE, 0, 1, 0).expect("valid");
        let mut maps = AddrMaps::default();
        maps.add_vm(vm).expect("new VM");
        maps.add_phb(vm, Buid::SPAPR_BASE).expect("new PHB");
        maps.assign_pe(vm, pe).expect("free PE");
        maps.insert(vm, nvme, pe, guest).expect("free address");
        let tokens = TokenTable::default();
        let cells = [guest.config_addr().raw(), guest.buid().hi(), guest.buid().lo()];
        let token = |call| tokens.token(call).expect("every EEH call has a token");
        let read_state = RtasArgs::new(token(RtasCall::ReadSlotResetState2), &cells, 4).encode();
        let set_option = RtasArgs::new(token(RtasCall::SetEehOption), &[cells[0], cells[1], cells[2], 1], 1).encode();
        let rtas = EehRtas::new(vm, tokens, RtasPolicy::default());
        RtasBench { host, maps, rtas, memory: FlatMemory::new(0, 4096), read_state, set_option }
    }

    fn serve(&mut self, read_state: bool) -> i32 {
        let buf = if read_state { &mut self.read_state } else { &mut self.set_option };
        let mut ctx = RtasContext { maps: &self.maps, backend: &*self.host, memory: &mut self.memory };
        self.rtas.serve(buf, &mut ctx).map_or(i32::MIN, |outcome| outcome.status)
    }

    /// Serves `ibm,read-slot-reset-state2`; returns the PAPR status.
    pub fn read_slot_reset_state2(&mut self) -> i32 {
        self.serve(true)
    }

    /// Serves `ibm,set-eeh-option` (enable); returns the PAPR status.
    pub fn set_eeh_option(&mut self) -> i32 {
        self.serve(false)
    }
}

impl Default for RtasBench {
    fn default() -> Self {
        RtasBench::new()
    }
}

/// One trivial system call (`getppid`, never cached by libc): the floor of
/// every real path from a VMM to the host kernel.
#[inline]
pub fn null_syscall() -> u32 {
    std::os::unix::process::parent_id()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rtas_calls_succeed() {
        let mut bench = RtasBench::new();
        assert_eq!(bench.set_eeh_option(), 0);
        assert_eq!(bench.read_slot_reset_state2(), 0);
        assert_eq!(bench.set_eeh_option(), 0);
    }
}
