//! Every RTAS EEH handler's success and failure answers, on the simulator,
//! through raw big-endian buffers as a guest would pass them.

use std::sync::Arc;

use vfio_eeh::addr::{Buid, GuestAddr, PciAddr, PeId};
use vfio_eeh::backend::EehBackend;
use vfio_eeh::mapping::VmId;
use vfio_eeh::ops::PeState;
use vfio_eeh::rtas::{
    status, GuestMemory, RtasArgs, RtasCall, RtasPolicy, TokenTable, ERRINJCT_IOA_BUS_ERROR, ERRINJCT_IOA_BUS_ERROR_64,
};
use vfio_eeh_sim::clock::VirtualClock;
use vfio_eeh_sim::config::{DeactivatePolicy, SimConfig};
use vfio_eeh_sim::guest::GuestPlatform;
use vfio_eeh_sim::spec::TopologySpec;
use vfio_eeh_sim::vmm::{EehModel, SimVmm};
use vfio_eeh_sim::SimHost;

const PHB: Buid = Buid::SPAPR_BASE;
const NIC: &str = "0000:02:00.0"; // PE 1, two functions
const NVME: &str = "0000:01:00.0"; // PE 0, one function

fn addr(s: &str) -> PciAddr {
    s.parse().unwrap()
}

fn guest(slot: u8, func: u8) -> GuestAddr {
    GuestAddr::new(PHB, 0, slot, func).unwrap()
}

struct Rig {
    vmm: SimVmm,
}

impl Rig {
    fn with(policy: RtasPolicy, deactivate: DeactivatePolicy) -> Self {
        Rig::serving(EehModel::HostMapping, policy, deactivate)
    }

    fn serving(model: EehModel, policy: RtasPolicy, deactivate: DeactivatePolicy) -> Self {
        Rig::on(SimConfig { deactivate, ..SimConfig::default() }, model, policy)
    }

    fn on(config: SimConfig, model: EehModel, policy: RtasPolicy) -> Self {
        let host = Arc::new(SimHost::new(&TopologySpec::builtin(), config, Arc::new(VirtualClock::new())));
        let mut vmm = SimVmm::new(host, VmId(1), model, policy);
        vmm.add_phb(PHB).unwrap();
        vmm.pass_through(addr(NIC), guest(1, 0)).unwrap();
        vmm.pass_through(addr("0000:02:00.1"), guest(1, 1)).unwrap();
        vmm.pass_through(addr(NVME), guest(2, 0)).unwrap();
        Rig { vmm }
    }

    fn new() -> Self {
        Rig::with(RtasPolicy::default(), DeactivatePolicy::Blocking)
    }

    /// Calls with the counts the call takes; returns the return cells.
    fn call(&mut self, call: RtasCall, args: &[u32]) -> Vec<i64> {
        let nret = (1..=5).find(|&n| call.accepts_nret(n)).unwrap();
        self.raw(call, args, nret)
    }

    fn raw(&mut self, call: RtasCall, args: &[u32], nret: usize) -> Vec<i64> {
        let token = TokenTable::default().token(call).unwrap();
        let request = RtasArgs::new(token, args, nret);
        let mut buf = request.encode();
        assert!(self.vmm.rtas(&mut buf));
        request.read_rets(&buf).into_iter().map(|c| i64::from(c.cast_signed())).collect()
    }

    /// (config address, BUID hi, BUID lo) of a guest function.
    fn at(dev: GuestAddr) -> [u32; 3] {
        [dev.config_addr().raw(), dev.buid().hi(), dev.buid().lo()]
    }

    fn with_arg(dev: GuestAddr, extra: &[u32]) -> Vec<u32> {
        let mut args = Self::at(dev).to_vec();
        args.extend_from_slice(extra);
        args
    }

    fn pe(&self, host_dev: &str) -> PeId {
        self.vmm.host().pe_of(addr(host_dev)).unwrap()
    }

    fn state(&self, host_dev: &str) -> PeState {
        self.vmm.host().status(self.pe(host_dev)).unwrap().state
    }

    fn enable_and_freeze(&mut self) {
        assert_eq!(self.call(RtasCall::SetEehOption, &Self::with_arg(guest(1, 0), &[1])), [0]);
        self.vmm.host().freeze(self.pe(NIC), vfio_eeh::pe::FreezeScope::All).unwrap();
    }
}

const PARAM: i64 = status::PARAMETER_ERROR as i64;

#[test]
fn wrong_counts_and_unknown_tokens_are_parameter_errors_and_change_nothing() {
    let mut rig = Rig::new();
    for call in RtasCall::ALL {
        let args = vec![0; call.nargs() + 1];
        let nret = (1..=5).find(|&n| call.accepts_nret(n)).unwrap();
        // ibm,open-errinjct puts its status second.
        let status_of = |rets: Vec<i64>| if call == RtasCall::OpenErrinjct { rets[1] } else { rets[0] };
        assert_eq!(status_of(rig.raw(call, &args, nret)), PARAM, "{} with too many args", call.name());
        let rets = rig.raw(call, &vec![0; call.nargs()], nret + 2);
        assert_eq!(status_of(rets), PARAM, "{} with a wrong nret", call.name());
    }
    // An unknown token.
    let mut buf = RtasArgs::new(0x1234, &[1, 2, 3], 1).encode();
    assert!(rig.vmm.rtas(&mut buf));
    assert_eq!(&buf[24..28], &(-3i32).to_be_bytes());
    assert_eq!(rig.state(NIC), PeState::Normal);
}

#[test]
fn undecodable_buffers_are_refused_with_nothing_written() {
    let mut rig = Rig::new();
    let mut buf = RtasArgs::new(TokenTable::DEFAULT_BASE, &[1, 2, 3, 4], 1).encode();
    let truncated = buf.len() - 1;
    let before = buf[..truncated].to_vec();
    assert!(!rig.vmm.rtas(&mut buf[..truncated]));
    assert_eq!(&buf[..truncated], &before[..]);
    buf[4..8].copy_from_slice(&100u32.to_be_bytes());
    assert!(!rig.vmm.rtas(&mut buf));
}

#[test]
fn addresses_are_resolved_within_the_calling_vm_only() {
    let mut rig = Rig::new();
    for bad in [
        vec![guest(9, 0).config_addr().raw(), PHB.hi(), PHB.lo(), 1], // unmapped slot
        vec![guest(1, 0).config_addr().raw(), 0x1234, 0, 1],          // not this VM's PHB
        vec![0x0f00_0800, PHB.hi(), PHB.lo(), 1],                     // reserved bits
    ] {
        assert_eq!(rig.call(RtasCall::SetEehOption, &bad), [PARAM]);
    }
    // A second VM on the same host with the same BUID cannot reach VM 1's devices.
    let mut other = SimVmm::new(rig.vmm.host().clone(), VmId(2), EehModel::HostMapping, RtasPolicy::default());
    other.add_phb(PHB).unwrap();
    other.pass_through(addr("0000:03:00.0"), guest(5, 0)).unwrap();
    let token = TokenTable::default().token(RtasCall::SetSlotReset).unwrap();
    let request = RtasArgs::new(token, &Rig::with_arg(guest(1, 0), &[1]), 1);
    let mut buf = request.encode();
    assert!(other.rtas(&mut buf));
    assert_eq!(request.read_rets(&buf), [(-3i32).cast_unsigned()]);
    assert_eq!(rig.state(NIC), PeState::Normal);
}

#[test]
fn set_eeh_option_functions() {
    let mut rig = Rig::new();
    let dev = guest(1, 0);
    assert_eq!(rig.call(RtasCall::SetEehOption, &Rig::with_arg(dev, &[1])), [0]);
    assert_eq!(rig.call(RtasCall::SetEehOption, &Rig::with_arg(dev, &[0])), [0]);
    for unsupported in [4, 5, 6, u32::MAX] {
        assert_eq!(rig.call(RtasCall::SetEehOption, &Rig::with_arg(dev, &[unsupported])), [PARAM]);
    }
    rig.enable_and_freeze();
    assert_eq!(rig.call(RtasCall::SetEehOption, &Rig::with_arg(dev, &[2])), [0]);
    assert_eq!(rig.state(NIC), PeState::StoppedDma);
    assert_eq!(rig.call(RtasCall::SetEehOption, &Rig::with_arg(dev, &[3])), [0]);
    assert_eq!(rig.state(NIC), PeState::Normal);
}

#[test]
fn get_config_addr_info_answers_pe_addresses_and_sharing() {
    let mut rig = Rig::new();
    let pe_addr = |slot: u32| i64::from(slot << 11 | 1);
    for dev in [guest(1, 0), guest(1, 1)] {
        assert_eq!(rig.call(RtasCall::GetConfigAddrInfo2, &Rig::with_arg(dev, &[0])), [0, pe_addr(1)]);
        assert_eq!(rig.call(RtasCall::GetConfigAddrInfo, &Rig::with_arg(dev, &[0])), [0, pe_addr(1)]);
        assert_eq!(rig.call(RtasCall::GetConfigAddrInfo2, &Rig::with_arg(dev, &[1])), [0, 2], "shared");
    }
    assert_eq!(rig.call(RtasCall::GetConfigAddrInfo2, &Rig::with_arg(guest(2, 0), &[0])), [0, pe_addr(2)]);
    assert_eq!(rig.call(RtasCall::GetConfigAddrInfo2, &Rig::with_arg(guest(2, 0), &[1])), [0, 1], "not shared");
    assert_eq!(rig.call(RtasCall::GetConfigAddrInfo2, &Rig::with_arg(guest(2, 0), &[2]))[0], PARAM);
    assert_eq!(rig.call(RtasCall::GetConfigAddrInfo2, &Rig::with_arg(guest(3, 0), &[0]))[0], PARAM);

    // QEMU answers "shared" for everything.
    let mut qemu = Rig::with(RtasPolicy::QEMU, DeactivatePolicy::Blocking);
    assert_eq!(qemu.call(RtasCall::GetConfigAddrInfo2, &Rig::with_arg(guest(2, 0), &[1])), [0, 2]);
}

#[test]
fn read_slot_reset_state_reports_states_and_delays() {
    let mut rig = Rig::with(RtasPolicy::default(), DeactivatePolicy::Reporting);
    let at = Rig::at(guest(1, 0));
    assert_eq!(rig.call(RtasCall::ReadSlotResetState2, &at), [0, 0, 1, 0]);
    assert_eq!(rig.raw(RtasCall::ReadSlotResetState2, &at, 5), [0, 0, 1, 0, 0]);
    assert_eq!(rig.call(RtasCall::ReadSlotResetState, &at), [0, 0, 1]);
    rig.enable_and_freeze();
    assert_eq!(rig.call(RtasCall::ReadSlotResetState2, &at), [0, 2, 1, 0]);
    assert_eq!(rig.call(RtasCall::SetSlotReset, &Rig::with_arg(guest(1, 0), &[1])), [0]);
    assert_eq!(rig.call(RtasCall::ReadSlotResetState2, &at), [0, 1, 1, 0]);
    assert_eq!(rig.call(RtasCall::SetSlotReset, &Rig::with_arg(guest(1, 0), &[0])), [0]);
    // Settling: state 5 with the true remaining delay, not QEMU's 1000 ms.
    let rets = rig.call(RtasCall::ReadSlotResetState2, &at);
    assert_eq!(rets[..3], [0, 5, 1]);
    assert!(rets[3] > 0 && rets[3] != 1000, "delay hint {}", rets[3]);
    rig.vmm.host().clock().sleep(std::time::Duration::from_millis(u64::try_from(rets[3]).unwrap()));
    assert_eq!(rig.call(RtasCall::ReadSlotResetState2, &at), [0, 0, 1, 0]);

    let mut qemu = Rig::with(RtasPolicy::QEMU, DeactivatePolicy::Reporting);
    qemu.enable_and_freeze();
    assert_eq!(qemu.call(RtasCall::SetSlotReset, &Rig::with_arg(guest(1, 0), &[1])), [0]);
    assert_eq!(qemu.call(RtasCall::SetSlotReset, &Rig::with_arg(guest(1, 0), &[0])), [0]);
    assert_eq!(qemu.call(RtasCall::ReadSlotResetState2, &at), [0, 5, 1, 1000]);
}

#[test]
fn set_slot_reset_and_configure() {
    let mut rig = Rig::new();
    let dev = guest(1, 0);
    assert_eq!(rig.call(RtasCall::SetEehOption, &Rig::with_arg(dev, &[1])), [0]);
    for bad in [2, 4, u32::MAX] {
        assert_eq!(rig.call(RtasCall::SetSlotReset, &Rig::with_arg(dev, &[bad])), [PARAM]);
    }
    assert_eq!(rig.state(NIC), PeState::Normal);
    for kind in [1, 3] {
        assert_eq!(rig.call(RtasCall::SetSlotReset, &Rig::with_arg(dev, &[kind])), [0]);
        assert_eq!(rig.state(NIC), PeState::Reset);
        assert_eq!(rig.call(RtasCall::SetSlotReset, &Rig::with_arg(dev, &[0])), [0]);
        assert_eq!(rig.state(NIC), PeState::Normal);
    }
    assert_eq!(rig.call(RtasCall::ConfigurePe, &Rig::at(dev)), [0]);
    assert_eq!(rig.call(RtasCall::ConfigureBridge, &Rig::at(dev)), [0]);
    assert_eq!(rig.call(RtasCall::ConfigurePe, &Rig::at(guest(4, 0))), [PARAM]);
    // A reset on a PE whose EEH is not enabled is a hardware error.
    assert_eq!(rig.call(RtasCall::SetSlotReset, &Rig::with_arg(guest(2, 0), &[1])), [-1]);
    assert_eq!(rig.state(NVME), PeState::Normal);
}

#[test]
fn slot_error_detail_returns_the_log_once_and_marks_permanent_failures() {
    let mut rig = Rig::new();
    let detail = |function: u32| Rig::with_arg(guest(1, 0), &[0, 0, 0x1000, 2048, function]);
    assert_eq!(rig.call(RtasCall::SlotErrorDetail, &detail(3)), [PARAM]);
    assert_eq!(rig.call(RtasCall::SlotErrorDetail, &detail(1)), [1], "no error yet");
    rig.enable_and_freeze();
    assert_eq!(rig.call(RtasCall::SlotErrorDetail, &detail(1)), [0]);
    let mut log = [0u8; 16];
    rig.vmm.memory_mut().read(0x1000, &mut log).unwrap();
    assert_ne!(log, [0; 16], "the log was written to the returned buffer");
    assert_eq!(rig.call(RtasCall::SlotErrorDetail, &detail(1)), [1], "a log is returned once");
    // A return buffer outside guest memory.
    let outside = Rig::with_arg(guest(1, 0), &[0, 0, 0xffff_f000, 2048, 1]);
    assert_eq!(rig.call(RtasCall::SlotErrorDetail, &outside), [PARAM]);
    // Function 2: permanently unavailable from then on.
    assert_eq!(rig.call(RtasCall::SlotErrorDetail, &detail(2))[0], 1);
    assert_eq!(rig.call(RtasCall::ReadSlotResetState2, &Rig::at(guest(1, 0))), [0, 5, 1, 0]);

    let mut qemu = Rig::with(RtasPolicy::QEMU, DeactivatePolicy::Blocking);
    qemu.enable_and_freeze();
    assert_eq!(qemu.call(RtasCall::SlotErrorDetail, &detail(1)), [1], "QEMU returns no log");
}

#[test]
fn upstream_model_serves_the_same_calls_through_vfio_eeh_pe_op() {
    let mut rig = Rig::serving(EehModel::Container, RtasPolicy::default(), DeactivatePolicy::Reporting);
    let dev = guest(1, 0);
    let at = Rig::at(dev);
    assert_eq!(rig.call(RtasCall::GetConfigAddrInfo2, &Rig::with_arg(dev, &[1])), [0, 2]);
    rig.enable_and_freeze();
    assert_eq!(rig.call(RtasCall::ReadSlotResetState2, &at), [0, 2, 1, 0]);
    // The ioctl cannot carry the error log.
    let detail = Rig::with_arg(dev, &[0, 0, 0x1000, 2048, 1]);
    assert_eq!(rig.call(RtasCall::SlotErrorDetail, &detail), [1]);
    assert_eq!(rig.call(RtasCall::SetSlotReset, &Rig::with_arg(dev, &[1])), [0]);
    assert_eq!(rig.call(RtasCall::SetSlotReset, &Rig::with_arg(dev, &[0])), [0]);
    // Nor the remaining delay: QEMU's 1000 ms stands in for it.
    assert_eq!(rig.call(RtasCall::ReadSlotResetState2, &at), [0, 5, 1, 1000]);
    // Hold (250 ms) and settle (1800 ms) from the reset.
    rig.vmm.host().clock().sleep(std::time::Duration::from_millis(2050));
    assert_eq!(rig.call(RtasCall::ConfigurePe, &at), [0]);
    assert_eq!(rig.call(RtasCall::ReadSlotResetState2, &at), [0, 0, 1, 0]);
    // A reset refused by the host (EEH not enabled on the NVMe PE) is a hardware error.
    assert_eq!(rig.call(RtasCall::SetSlotReset, &Rig::with_arg(guest(2, 0), &[1])), [-1]);
}

fn work_buffer_32(addr: u32, mask: u32, dev: GuestAddr, func: u32) -> Vec<u8> {
    let [config, hi, lo] = Rig::at(dev);
    [addr, mask, config, hi, lo, func].iter().flat_map(|w| w.to_be_bytes()).collect()
}

#[test]
fn errinjct_open_inject_close() {
    let mut rig = Rig::new();
    assert_eq!(rig.call(RtasCall::SetEehOption, &Rig::with_arg(guest(1, 0), &[1])), [0]);
    let opened = rig.call(RtasCall::OpenErrinjct, &[]);
    assert_eq!(opened[1], 0, "status is the second output");
    let token = u32::try_from(opened[0]).unwrap();
    assert_eq!(rig.call(RtasCall::OpenErrinjct, &[])[1], -4, "already open");

    const BUF: u32 = 0x8000;
    rig.vmm.memory_mut().write(u64::from(BUF), &work_buffer_32(0, 0, guest(1, 0), 4)).unwrap();
    assert_eq!(rig.call(RtasCall::Errinjct, &[ERRINJCT_IOA_BUS_ERROR, token + 1, BUF]), [-4], "not the owner");
    assert_eq!(rig.call(RtasCall::Errinjct, &[0x01, token, BUF]), [PARAM], "class not offered");
    assert_eq!(rig.call(RtasCall::Errinjct, &[ERRINJCT_IOA_BUS_ERROR, token, BUF + 4]), [PARAM], "misaligned");
    assert_eq!(rig.call(RtasCall::Errinjct, &[ERRINJCT_IOA_BUS_ERROR, token, 0xffff_fc00]), [PARAM], "outside");
    rig.vmm.memory_mut().write(0x9000, &work_buffer_32(0, 0, guest(1, 0), 20)).unwrap();
    assert_eq!(rig.call(RtasCall::Errinjct, &[ERRINJCT_IOA_BUS_ERROR, token, 0x9000]), [PARAM], "function 20");
    rig.vmm.memory_mut().write(0x9400, &work_buffer_32(0, 0, guest(6, 0), 4)).unwrap();
    assert_eq!(rig.call(RtasCall::Errinjct, &[ERRINJCT_IOA_BUS_ERROR, token, 0x9400]), [PARAM], "unmapped");
    assert_eq!(rig.state(NIC), PeState::Normal);

    // A config-load injection freezes the PE on the next config read.
    assert_eq!(rig.call(RtasCall::Errinjct, &[ERRINJCT_IOA_BUS_ERROR, token, BUF]), [0]);
    assert_eq!(rig.vmm.config_read32(guest(1, 0), 0), u32::MAX);
    assert_eq!(rig.state(NIC), PeState::Stopped);

    // The 64-bit form.
    let [config, hi, lo] = Rig::at(guest(2, 0));
    let words = [0, 0, 0, 0, config, hi, lo, 4];
    let bytes: Vec<u8> = words.iter().flat_map(|w: &u32| w.to_be_bytes()).collect();
    rig.vmm.memory_mut().write(0xa000, &bytes).unwrap();
    assert_eq!(rig.call(RtasCall::SetEehOption, &Rig::with_arg(guest(2, 0), &[1])), [0]);
    assert_eq!(rig.call(RtasCall::Errinjct, &[ERRINJCT_IOA_BUS_ERROR_64, token, 0xa000]), [0]);
    assert_eq!(rig.vmm.config_read32(guest(2, 0), 0), u32::MAX);

    assert_eq!(rig.call(RtasCall::CloseErrinjct, &[token + 1]), [-4]);
    assert_eq!(rig.call(RtasCall::CloseErrinjct, &[token]), [0]);
    assert_eq!(rig.call(RtasCall::Errinjct, &[ERRINJCT_IOA_BUS_ERROR, token, BUF]), [-4], "closed");
    assert_eq!(rig.call(RtasCall::CloseErrinjct, &[token]), [-4], "closed");

    let mut qemu = Rig::with(RtasPolicy::QEMU, DeactivatePolicy::Blocking);
    assert_eq!(qemu.call(RtasCall::OpenErrinjct, &[]), [0, PARAM]);
}

proptest::proptest! {
    /// Random buffers and random cells for real tokens: a status or a refusal,
    /// never a panic.
    #[test]
    fn random_calls_never_panic(
        bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..80),
        call in 0usize..RtasCall::ALL.len(),
        cells in proptest::collection::vec(proptest::prelude::any::<u32>(), 0..10),
        nret in 0usize..6,
    ) {
        let mut rig = Rig::new();
        let mut raw = bytes;
        let _ = rig.vmm.rtas(&mut raw);
        let token = TokenTable::default().token(RtasCall::ALL[call]).unwrap();
        let nret = nret.min(vfio_eeh::rtas::MAX_CELLS - cells.len());
        let mut buf = RtasArgs::new(token, &cells, nret).encode();
        proptest::prop_assert!(rig.vmm.rtas(&mut buf));
    }
}

/// The call-specific PAPR statuses (project reference §2.3–2.5, research
/// Q7): -7 where the "PE State Control" table forbids a thaw or reset, -8
/// for a fundamental reset the host lacks, 990x (at most 9902) from
/// configure-pe while the PE settles. QEMU (`spapr_phb_vfio_eeh_set_option`,
/// `_eeh_reset`, `_eeh_configure`) answers -1, -1 and 0 instead.
#[test]
fn papr_call_statuses_per_call() {
    for model in [EehModel::HostMapping, EehModel::Container] {
        let config =
            SimConfig { deactivate: DeactivatePolicy::Reporting, fundamental_reset: false, ..SimConfig::default() };
        let mut rig = Rig::on(config, model, RtasPolicy::default());
        let mut qemu = Rig::on(config, model, RtasPolicy::QEMU);
        let dev = guest(1, 0);
        let at = Rig::at(dev);
        let both = |rig: &mut Rig, qemu: &mut Rig, call, args: &[u32]| (rig.call(call, args), qemu.call(call, args));

        // set-slot-reset: 0, -3 (function 2), -1 (EEH not enabled: state 0
        // has no -7 entry), -8 (no fundamental reset; QEMU -1).
        let reset = |f| Rig::with_arg(dev, &[f]);
        assert_eq!(both(&mut rig, &mut qemu, RtasCall::SetSlotReset, &reset(1)), (vec![-1], vec![-1]), "{model:?}");
        assert_eq!(rig.call(RtasCall::SetSlotReset, &reset(2)), [PARAM]);
        rig.enable_and_freeze();
        qemu.enable_and_freeze();
        // set-eeh-option: thaw DMA in state 2 is -7 (QEMU -1); 0 and -3 as before.
        let option = |f| Rig::with_arg(dev, &[f]);
        assert_eq!(both(&mut rig, &mut qemu, RtasCall::SetEehOption, &option(3)), (vec![-7], vec![-1]), "{model:?}");
        assert_eq!(rig.call(RtasCall::SetEehOption, &option(5)), [PARAM]);
        assert_eq!(both(&mut rig, &mut qemu, RtasCall::SetSlotReset, &reset(3)), (vec![-8], vec![-1]), "{model:?}");
        assert_eq!(rig.state(NIC), PeState::Stopped);
        assert_eq!(both(&mut rig, &mut qemu, RtasCall::SetSlotReset, &reset(1)), (vec![0], vec![0]));
        // Thaw MMIO while the reset is asserted: -7 in state 1.
        assert_eq!(both(&mut rig, &mut qemu, RtasCall::SetEehOption, &option(2)), (vec![-7], vec![-1]), "{model:?}");
        assert_eq!(both(&mut rig, &mut qemu, RtasCall::SetSlotReset, &reset(0)), (vec![0], vec![0]));
        assert_eq!(rig.call(RtasCall::SetEehOption, &option(2)), [-7], "thaw MMIO in state 5");
        assert_eq!(qemu.call(RtasCall::SetEehOption, &option(2)), [-1]);
        // Settling (state 5): deassert and assert are -7.
        assert_eq!(both(&mut rig, &mut qemu, RtasCall::SetSlotReset, &reset(0)), (vec![-7], vec![-1]), "{model:?}");
        assert_eq!(both(&mut rig, &mut qemu, RtasCall::SetSlotReset, &reset(1)), (vec![-7], vec![-1]), "{model:?}");

        // configure-pe while settling: 9902 (100 ms) while more than 10 ms
        // remain (the container path cannot tell the delay: 9902 too), then
        // 9901, 9900, then 0; QEMU always 0.
        let clock = rig.vmm.host().clock().clone();
        assert_eq!(both(&mut rig, &mut qemu, RtasCall::ConfigurePe, &at), (vec![9902], vec![0]), "{model:?}");
        assert_eq!(rig.call(RtasCall::ConfigureBridge, &at), [9902]);
        // The PE is usable 250 ms (hold) + 1800 ms (settle) after the assert.
        clock.sleep(std::time::Duration::from_millis(2050 - 10));
        let expected = if model == EehModel::HostMapping { [9901, 9900] } else { [9902, 9902] };
        assert_eq!(rig.call(RtasCall::ConfigurePe, &at), [expected[0]], "{model:?}");
        clock.sleep(std::time::Duration::from_millis(9));
        assert_eq!(rig.call(RtasCall::ConfigurePe, &at), [expected[1]], "{model:?}");
        clock.sleep(std::time::Duration::from_millis(1));
        assert_eq!(rig.call(RtasCall::ConfigurePe, &at), [0]);
        assert_eq!(rig.call(RtasCall::ConfigurePe, &Rig::at(guest(4, 0))), [PARAM]);

        // read-slot-reset-state2 and get-config-addr-info2: 0 and -3 only.
        assert_eq!(rig.call(RtasCall::ReadSlotResetState2, &at)[0], 0);
        assert_eq!(rig.call(RtasCall::ReadSlotResetState2, &Rig::at(guest(4, 0))), [PARAM, 0, 0, 0]);
        assert_eq!(rig.call(RtasCall::GetConfigAddrInfo2, &Rig::with_arg(dev, &[1]))[0], 0);
        assert_eq!(rig.call(RtasCall::GetConfigAddrInfo2, &Rig::with_arg(guest(4, 0), &[1]))[0], PARAM);
    }
}
