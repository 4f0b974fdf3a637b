use std::sync::Mutex;

use super::*;
use crate::backend::{errno, PeOpReply};
use crate::ops::{EehOp, PeState};
use crate::rtas::{status, FlatMemory, RtasArgs};

/// PE 0 holds 0000:01:00.0, PE 1 holds 0000:02:00.0 and .1; PE 0 is frozen
/// until enabled.
#[derive(Debug, Default)]
struct TwoPes {
    frozen: Mutex<bool>,
}

fn dev(text: &str) -> PciAddr {
    text.parse().unwrap()
}

impl EehBackend for TwoPes {
    fn pe_of(&self, device: PciAddr) -> Result<PeId, BackendError> {
        match device.to_string().as_str() {
            "0000:01:00.0" => Ok(PeId(0)),
            "0000:02:00.0" | "0000:02:00.1" => Ok(PeId(1)),
            _ => Err(BackendError::NoDevice(device)),
        }
    }

    fn devices_of(&self, pe: PeId) -> Result<Vec<PciAddr>, BackendError> {
        match pe.0 {
            0 => Ok(vec![dev("0000:01:00.0")]),
            1 => Ok(vec![dev("0000:02:00.0"), dev("0000:02:00.1")]),
            _ => Err(BackendError::NoPe(pe)),
        }
    }

    fn pe_op(&self, pe: PeId, op: EehOp) -> Result<PeOpReply, BackendError> {
        self.devices_of(pe)?;
        let mut frozen = self.frozen.lock().unwrap();
        match op {
            EehOp::GetState if pe.0 == 0 && *frozen => Ok(PeOpReply::State(PeState::Stopped)),
            EehOp::GetState => Ok(PeOpReply::State(PeState::Normal)),
            EehOp::Enable => {
                *frozen = false;
                Ok(PeOpReply::Done)
            }
            _ => Ok(PeOpReply::Done),
        }
    }
}

const A: VmId = VmId(1);
const B: VmId = VmId(2);
const PHB_A: Buid = Buid::SPAPR_BASE;
const PHB_B: Buid = Buid(Buid::SPAPR_BASE.0 + 1);

fn guest(buid: Buid, slot: u8) -> GuestAddr {
    GuestAddr::new(buid, 0, slot, 0).unwrap()
}

/// VM A holds PE 0 under PHB_A, VM B holds PE 1 under PHB_B.
fn two_vms() -> Vms {
    let mut vms = Vms::default();
    for (vm, buid, pe) in [(A, PHB_A, PeId(0)), (B, PHB_B, PeId(1))] {
        vms.add_vm(vm).unwrap();
        vms.add_phb(vm, buid).unwrap();
        vms.claim(vm, pe).unwrap();
    }
    vms
}

#[test]
fn every_mapping_rule_answers_its_errno_and_a_refusal_changes_nothing() {
    let host = TwoPes::default();
    let mut vms = two_vms();
    let nvme = dev("0000:01:00.0");
    vms.map_set(A, &host, nvme, guest(PHB_A, 1)).unwrap();
    let before = vms.maps().vm(A).unwrap().entries();

    let refusals: [(VmId, &str, GuestAddr, i32); 6] = [
        (A, "0000:01:00.0", guest(PHB_A, 2), errno::EBUSY), // the device is mapped already
        (B, "0000:02:00.0", guest(PHB_A, 1), errno::EINVAL), // not B's PHB
        (A, "0000:02:00.0", guest(PHB_A, 1), errno::ENODEV), // B's device: as if absent
        (A, "0000:09:00.0", guest(PHB_A, 3), errno::ENODEV), // the host lacks it
        (A, "0000:01:00.0", guest(Buid(0), 1), errno::EBUSY), // mapped already comes first
        (B, "0000:02:00.0", guest(PHB_B, 1), 0),            // accepted: B's own
    ];
    for (vm, device, at, expected) in refusals {
        let result = vms.map_set(vm, &host, dev(device), at);
        assert_eq!(result.as_ref().map_err(VmError::errno).err().unwrap_or(0), expected, "{vm} {device} {at}");
    }
    assert_eq!(vms.maps().vm(A).unwrap().entries(), before, "the refusals changed nothing");

    let nic1 = dev("0000:02:00.1");
    assert_eq!(vms.map_set(B, &host, nic1, guest(PHB_B, 1)).unwrap_err().errno(), errno::EEXIST, "address used twice");
    assert_eq!(vms.map_get(B, nic1).unwrap_err().errno(), errno::ENOENT, "the refused one is not mapped");
    vms.release_with_mappings(A, PeId(0)).unwrap();
    assert_eq!(vms.map_set(A, &host, nvme, guest(PHB_A, 1)).unwrap_err().errno(), errno::EPERM, "released");
    vms.claim(A, PeId(0)).unwrap();
    vms.map_set(A, &host, nvme, guest(PHB_A, 1)).unwrap();
    assert_eq!(vms.map_clear(A, nvme), Ok(guest(PHB_A, 1)));
    assert_eq!(vms.map_clear(A, nvme).unwrap_err().errno(), errno::ENOENT, "removing an absent mapping");
    assert_eq!(vms.map_get(A, nvme).unwrap_err().errno(), errno::ENOENT);
    assert_eq!(vms.owned_device(A, &host, nvme), Ok(PeId(0)));
    assert_eq!(vms.owned_device(A, &host, nic1), Err(BackendError::NoDevice(nic1)), "B's");
}

fn rtas(vms: &Vms, vm: VmId, host: &TwoPes, call: RtasCall, args: &[u32], nret: usize) -> Vec<u32> {
    let token = vms.token(vm, call).unwrap();
    let request = RtasArgs::new(token, args, nret);
    let mut buf = request.encode();
    vms.serve_rtas(vm, &mut buf, host, &mut FlatMemory::new(0, 0)).unwrap();
    request.read_rets(&buf)
}

fn cells(at: GuestAddr) -> [u32; 3] {
    let buid = at.buid().0;
    [at.config_addr().raw(), u32::try_from(buid >> 32).unwrap(), u32::try_from(buid & 0xffff_ffff).unwrap()]
}

#[test]
fn rtas_resolves_only_through_the_callers_own_mappings() {
    let host = TwoPes { frozen: Mutex::new(true) };
    let mut vms = two_vms();
    vms.map_set(A, &host, dev("0000:01:00.0"), guest(PHB_A, 1)).unwrap();
    vms.map_set(B, &host, dev("0000:02:00.0"), guest(PHB_B, 1)).unwrap();

    let read = |vms: &Vms, vm, at| rtas(vms, vm, &host, RtasCall::ReadSlotResetState2, &cells(at), 4);
    assert_eq!(read(&vms, A, guest(PHB_A, 1))[..2], [0, PeState::Stopped.raw()]);
    assert_eq!(read(&vms, B, guest(PHB_B, 1))[..2], [0, PeState::Normal.raw()]);
    let parameter_error = status::PARAMETER_ERROR.cast_unsigned();
    assert_eq!(read(&vms, B, guest(PHB_A, 1))[0], parameter_error, "A's address is nothing to B");
    assert_eq!(read(&vms, A, guest(PHB_B, 1))[0], parameter_error, "B's address is nothing to A");

    let [config, hi, lo] = cells(guest(PHB_A, 1));
    assert_eq!(rtas(&vms, A, &host, RtasCall::SetEehOption, &[config, hi, lo, 1], 1), [0]);
    assert_eq!(read(&vms, A, guest(PHB_A, 1))[..2], [0, PeState::Normal.raw()]);

    let mut garbage = [0u8; 8];
    let refused = vms.serve_rtas(A, &mut garbage, &host, &mut FlatMemory::new(0, 0));
    assert_eq!(refused, Err(RtasRefused::Buffer(DecodeError::NoHeader(8))));
    let unknown = vms.serve_rtas(VmId(9), &mut garbage, &host, &mut FlatMemory::new(0, 0));
    assert_eq!(unknown, Err(RtasRefused::UnknownVm(VmId(9))));
}

#[test]
fn a_clone_carries_the_tables_and_the_firmware_state() {
    let host = TwoPes::default();
    let mut vms = two_vms();
    let open = rtas(&vms, A, &host, RtasCall::OpenErrinjct, &[], 2);
    assert_eq!(open[1], 0, "opened");
    vms.map_set(A, &host, dev("0000:01:00.0"), guest(PHB_A, 1)).unwrap();
    let copy = vms.clone();
    assert_eq!(copy.maps().vm(A).unwrap().entries(), vms.maps().vm(A).unwrap().entries());
    let again = rtas(&copy, A, &host, RtasCall::OpenErrinjct, &[], 2);
    assert_eq!(again[1], status::ERRINJCT_OWNERSHIP.cast_unsigned(), "still open in the copy");
}
