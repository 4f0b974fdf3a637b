//! A host failure reaches the guest as "hardware error" (-1) with its cause
//! kept, and an address the host does not know as "parameter error" (-3),
//! for every RTAS call that asks the backend.

use vfio_eeh::addr::{Buid, GuestAddr, PciAddr, PeId};
use vfio_eeh::backend::{errno, BackendError, EehBackend, Errno, PeOpReply};
use vfio_eeh::mapping::{AddrMaps, VmId};
use vfio_eeh::ops::EehOp;
use vfio_eeh::rtas::{
    status, EehRtas, FlatMemory, GuestMemory, RtasArgs, RtasCall, RtasContext, RtasError, RtasPolicy, TokenTable,
    ERRINJCT_IOA_BUS_ERROR,
};

const VM: VmId = VmId(1);
const PE: PeId = PeId(3);
const WORK_BUFFER: u64 = 0x2000;
const LOG_BUFFER: u32 = 0x1000;

/// A host whose every operation fails with `error`.
struct FailingHost(BackendError);

impl EehBackend for FailingHost {
    fn pe_of(&self, _: PciAddr) -> Result<PeId, BackendError> {
        Err(self.0.clone())
    }
    fn devices_of(&self, _: PeId) -> Result<Vec<PciAddr>, BackendError> {
        Err(self.0.clone())
    }
    fn pe_op(&self, _: PeId, _: EehOp) -> Result<PeOpReply, BackendError> {
        Err(self.0.clone())
    }
}

fn io_failure() -> BackendError {
    BackendError::Os { what: "VFIO_EEH_PE_OP on /dev/vfio/vfio failed".into(), source: Errno(errno::EIO) }
}

fn guest() -> GuestAddr {
    GuestAddr::new(Buid::SPAPR_BASE, 0, 1, 0).unwrap()
}

fn maps() -> AddrMaps {
    let mut maps = AddrMaps::default();
    maps.add_vm(VM).unwrap();
    maps.add_phb(VM, Buid::SPAPR_BASE).unwrap();
    maps.assign_pe(VM, PE).unwrap();
    maps.insert(VM, "0000:01:00.0".parse().unwrap(), PE, guest()).unwrap();
    maps
}

/// The calls that reach the backend, with their arguments and `nret`.
fn backend_calls(errinjct_token: u32) -> Vec<(RtasCall, Vec<u32>, usize)> {
    let dev = guest();
    let at = [dev.config_addr().raw(), dev.buid().hi(), dev.buid().lo()];
    let with = |extra: &[u32]| [&at[..], extra].concat();
    let work_buffer = u32::try_from(WORK_BUFFER).unwrap();
    vec![
        (RtasCall::SetEehOption, with(&[1]), 1),
        (RtasCall::GetConfigAddrInfo2, with(&[1]), 2),
        (RtasCall::ReadSlotResetState2, at.to_vec(), 4),
        (RtasCall::ReadSlotResetState, at.to_vec(), 3),
        (RtasCall::SetSlotReset, with(&[1]), 1),
        (RtasCall::ConfigurePe, at.to_vec(), 1),
        (RtasCall::ConfigureBridge, at.to_vec(), 1),
        (RtasCall::SlotErrorDetail, with(&[0, 0, LOG_BUFFER, 2048, 1]), 1),
        (RtasCall::Errinjct, vec![ERRINJCT_IOA_BUS_ERROR, errinjct_token, work_buffer], 1),
    ]
}

/// Serves every backend-reaching call on a host failing with `error`:
/// (call, status in the buffer, the outcome's error).
fn serve_all(policy: RtasPolicy, error: BackendError) -> Vec<(RtasCall, i32, Option<RtasError>)> {
    let maps = maps();
    let host = FailingHost(error);
    let mut memory = FlatMemory::new(0, 0x4000);
    let dev = guest();
    let work: Vec<u8> = [0, 0, dev.config_addr().raw(), dev.buid().hi(), dev.buid().lo(), 4]
        .iter()
        .flat_map(|cell: &u32| cell.to_be_bytes())
        .collect();
    memory.write(WORK_BUFFER, &work).unwrap();
    let tokens = TokenTable::default();
    let mut rtas = EehRtas::new(VM, tokens.clone(), policy);
    let mut ctx = RtasContext { maps: &maps, backend: &host, memory: &mut memory };
    let mut serve = |call: RtasCall, args: &[u32], nret: usize| {
        let request = RtasArgs::new(tokens.token(call).unwrap(), args, nret);
        let mut buf = request.encode();
        let outcome = rtas.serve(&mut buf, &mut ctx).unwrap();
        let rets = request.read_rets(&buf);
        let status = if call == RtasCall::OpenErrinjct { rets[1] } else { rets[0] };
        assert_eq!(status.cast_signed(), outcome.status, "{}", call.name());
        (outcome.status, outcome.error, rets)
    };
    let errinjct_token = if policy.errinjct { serve(RtasCall::OpenErrinjct, &[], 2).2[0] } else { 0 };
    backend_calls(errinjct_token)
        .into_iter()
        .map(|(call, args, nret)| {
            let (status, error, _) = serve(call, &args, nret);
            (call, status, error)
        })
        .collect()
}

#[test]
fn a_host_io_failure_is_a_hardware_error_for_every_call_that_reaches_the_host() {
    for (call, status, error) in serve_all(RtasPolicy::default(), io_failure()) {
        assert_eq!(status, status::HARDWARE_ERROR, "{}", call.name());
        let error = error.unwrap_or_else(|| panic!("{} kept no error", call.name()));
        assert_eq!(error, RtasError::Backend { status: status::HARDWARE_ERROR, source: io_failure() });
        assert_eq!(
            vfio_eeh::error_chain(&error),
            "The host failed the call (RTAS status -1): VFIO_EEH_PE_OP on /dev/vfio/vfio failed: \
             Input/output error (os error 5)",
            "{}",
            call.name()
        );
    }
}

#[test]
fn an_address_the_host_does_not_know_is_a_parameter_error() {
    for error in [BackendError::NoPe(PE), BackendError::NoDevice("0000:01:00.0".parse().unwrap())] {
        for (call, status, kept) in serve_all(RtasPolicy::default(), error.clone()) {
            assert_eq!(status, status::PARAMETER_ERROR, "{} on {error}", call.name());
            assert_eq!(kept, Some(RtasError::Backend { status: status::PARAMETER_ERROR, source: error.clone() }));
        }
    }
}

#[test]
fn qemu_policy_answers_get_state_and_configure_failures_with_a_parameter_error() {
    let statuses: Vec<(RtasCall, i32)> =
        serve_all(RtasPolicy::QEMU, io_failure()).into_iter().map(|(call, status, _)| (call, status)).collect();
    assert_eq!(
        statuses,
        [
            (RtasCall::SetEehOption, status::HARDWARE_ERROR),
            (RtasCall::GetConfigAddrInfo2, status::SUCCESS), // QEMU answers "shared" without asking
            (RtasCall::ReadSlotResetState2, status::PARAMETER_ERROR),
            (RtasCall::ReadSlotResetState, status::PARAMETER_ERROR),
            (RtasCall::SetSlotReset, status::HARDWARE_ERROR),
            (RtasCall::ConfigurePe, status::PARAMETER_ERROR),
            (RtasCall::ConfigureBridge, status::PARAMETER_ERROR),
            (RtasCall::SlotErrorDetail, status::NO_ERRORS_FOUND), // QEMU never asks for a log
            (RtasCall::Errinjct, status::PARAMETER_ERROR),        // not offered
        ]
    );
}

#[test]
fn backend_os_errors_keep_their_errno_as_the_source() {
    let error = io_failure();
    assert_eq!(error.errno(), errno::EIO);
    let source = std::error::Error::source(&error).expect("a source");
    assert_eq!(source.to_string(), "Input/output error (os error 5)");
    assert_eq!(std::io::Error::from(Errno(errno::EIO)).raw_os_error(), Some(errno::EIO));
    let wire = serde_json::to_value(&error).unwrap();
    assert_eq!(wire, serde_json::json!({"error": "os", "what": "VFIO_EEH_PE_OP on /dev/vfio/vfio failed", "errno": 5}));
    assert_eq!(serde_json::from_value::<BackendError>(wire).unwrap(), error);
}
