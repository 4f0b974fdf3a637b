//! One VM's RTAS EEH firmware: argument checks, address resolution and the
//! handler of each call.

use std::collections::HashSet;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::calls::{status, RtasCall, TokenTable, ERRINJCT_IOA_BUS_ERROR, ERRINJCT_IOA_BUS_ERROR_64};
use super::codec::{DecodeError, IoaBusError, IoaBusError64, RtasArgs};
use super::memory::GuestMemory;
use crate::addr::{Buid, ConfigAddr, PeId};
use crate::backend::{errno, BackendError, EehBackend};
use crate::mapping::{AddrMaps, Mapped, VmId};
use crate::ops::{EehOp, ErrFunc, ErrInjection, ErrType, PeState, ResetKind};
use zerocopy::{FromBytes, IntoBytes};

/// The fixed "unavailable" hint QEMU gives, and ours when the host cannot tell.
pub const DEFAULT_UNAVAILABLE_MS: u32 = 1000;
/// The largest error log returned (`rtas-error-log-max`, QEMU's value).
pub const RTAS_ERROR_LOG_MAX: usize = 2048;
/// `ibm,errinjct` work buffers sit in a block of their own, 1 KiB ...
pub(super) const ERRINJCT_BLOCK_BYTES: usize = 1024;
/// ... on a 1 KiB boundary.
const ERRINJCT_BUFFER_ALIGN: u64 = ERRINJCT_BLOCK_BYTES as u64;

/// How the firmware answers where QEMU and PAPR-as-written differ (see the
/// module docs of [`crate::rtas`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RtasPolicy {
    /// read-slot-reset-state2 reports the host's remaining delay (else 1000 ms).
    pub exact_unavailable_delay: bool,
    /// get-config-addr-info2 function 1 says whether the PE is shared (else
    /// always "shared").
    pub truthful_shared_pe: bool,
    /// slot-error-detail returns the host's log and function 2 marks the PE
    /// permanently unavailable (else always "no log").
    pub papr_slot_error_detail: bool,
    /// The errinjct calls are offered.
    pub errinjct: bool,
    /// read-slot-reset-state(2), configure-pe/-bridge and
    /// get-config-addr-info2 answer a host failure with "hardware error"
    /// (else "parameter error", as QEMU).
    pub host_failure_is_hardware_error: bool,
    /// The call-specific PAPR statuses: -7 when the PE's state forbids a
    /// thaw or reset (the PE State Control table), -8 when the host has no
    /// fundamental reset, and 990x from configure-pe while the PE settles
    /// (else -1, -1 and 0, as QEMU).
    pub papr_call_statuses: bool,
}

impl RtasPolicy {
    /// QEMU's answers.
    pub const QEMU: RtasPolicy = RtasPolicy {
        exact_unavailable_delay: false,
        truthful_shared_pe: false,
        papr_slot_error_detail: false,
        errinjct: false,
        host_failure_is_hardware_error: false,
        papr_call_statuses: false,
    };
}

impl Default for RtasPolicy {
    /// Ours: every answer truthful, every call offered.
    fn default() -> Self {
        RtasPolicy {
            exact_unavailable_delay: true,
            truthful_shared_pe: true,
            papr_slot_error_detail: true,
            errinjct: true,
            host_failure_is_hardware_error: true,
            papr_call_statuses: true,
        }
    }
}

/// What a call needs besides the firmware's own state: the VM's address
/// map, the host, and the VM's memory.
pub struct RtasContext<'a> {
    /// Address maps; only the serving VM's table is used.
    pub maps: &'a AddrMaps,
    /// The host (or the VMM's container path to it).
    pub backend: &'a dyn EehBackend,
    /// Guest real memory, for calls that take buffer addresses.
    pub memory: &'a mut dyn GuestMemory,
}

/// The status and output cells of a call, in buffer order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reply {
    status: i32,
    cells: [u32; 5],
    len: usize,
}

impl Reply {
    /// Status first, then `outputs`.
    fn new(status: i32, outputs: &[u32]) -> Self {
        let mut cells = [status.cast_unsigned(), 0, 0, 0, 0];
        for (cell, &output) in cells.iter_mut().skip(1).zip(outputs) {
            *cell = output;
        }
        Reply { status, cells, len: 1 + outputs.len().min(4) }
    }

    /// A bare status.
    fn status_only(status: i32) -> Self {
        Reply::new(status, &[])
    }

    /// `ibm,open-errinjct` puts the status second.
    fn open_errinjct(status: i32, token: u32) -> Self {
        let mut reply = Reply::new(status, &[token]);
        reply.cells.swap(0, 1);
        reply
    }

    /// The PAPR status.
    pub fn status(&self) -> i32 {
        self.status
    }

    /// The return cells.
    pub fn cells(&self) -> &[u32] {
        self.cells.split_at_checked(self.len).map_or(self.cells.as_slice(), |(cells, _)| cells)
    }
}

/// Why a call failed: the PAPR status it answers and, when the host refused
/// or failed it, the host's error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RtasError {
    /// The call failed its checks (arguments, address, ownership) with this
    /// status; the host was not asked, or said the address names nothing.
    #[error("RTAS status {0}")]
    Status(i32),
    /// The host refused or failed the operation.
    #[error("The host failed the call (RTAS status {status})")]
    Backend {
        /// The PAPR status answered.
        status: i32,
        /// The host's error.
        #[source]
        source: BackendError,
    },
}

impl RtasError {
    /// A backend failure: "no such device or PE" means the guest's address
    /// names nothing on the host, a parameter error; anything else is a host
    /// failure, answered `host_failure`.
    fn backend(source: BackendError, host_failure: i32) -> Self {
        let status = match source {
            BackendError::NoDevice(_) | BackendError::NoPe(_) => status::PARAMETER_ERROR,
            _ => host_failure,
        };
        RtasError::Backend { status, source }
    }

    /// The PAPR status the call answers.
    pub fn status(&self) -> i32 {
        match self {
            RtasError::Status(status) | RtasError::Backend { status, .. } => *status,
        }
    }
}

/// What one served call was, for logs and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtasOutcome {
    /// The call, if the token named one.
    pub call: Option<RtasCall>,
    /// The PAPR status returned.
    pub status: i32,
    /// Why it failed, with the host's error where there was one.
    pub error: Option<RtasError>,
}

type CallResult = Result<Reply, RtasError>;

/// A failure with `status` and no host cause.
const fn fail(status: i32) -> RtasError {
    RtasError::Status(status)
}

/// One VM's RTAS EEH firmware.
#[derive(Debug, Clone)]
pub struct EehRtas {
    vm: VmId,
    tokens: TokenTable,
    policy: RtasPolicy,
    errinjct_open: Option<u32>,
    next_errinjct_token: u32,
    permanently_unavailable: HashSet<PeId>,
}

impl EehRtas {
    /// The firmware of `vm`, with its token table and answer policy.
    pub fn new(vm: VmId, tokens: TokenTable, policy: RtasPolicy) -> Self {
        EehRtas {
            vm,
            tokens,
            policy,
            errinjct_open: None,
            next_errinjct_token: 1,
            permanently_unavailable: HashSet::new(),
        }
    }

    /// The VM served.
    pub fn vm(&self) -> VmId {
        self.vm
    }

    /// The token table (what `/rtas` advertises).
    pub fn tokens(&self) -> &TokenTable {
        &self.tokens
    }

    /// Serves the RTAS call in `buf` and writes its return cells in place.
    ///
    /// A buffer that cannot be decoded is refused with nothing written (the
    /// hypercall fails); every other failure is a PAPR status in the buffer.
    pub fn serve(&mut self, buf: &mut [u8], ctx: &mut RtasContext<'_>) -> Result<RtasOutcome, DecodeError> {
        let args = RtasArgs::decode(buf)?;
        let call = self.tokens.call(args.token);
        let result = match call {
            Some(call) => self.handle(call, &args, ctx),
            None => Err(fail(status::PARAMETER_ERROR)),
        };
        let reply = match &result {
            Ok(reply) => *reply,
            Err(error) if call == Some(RtasCall::OpenErrinjct) => Reply::open_errinjct(error.status(), 0),
            Err(error) => Reply::status_only(error.status()),
        };
        args.write_rets(buf, reply.cells());
        Ok(RtasOutcome { call, status: reply.status(), error: result.err() })
    }

    /// Serves one decoded call: its reply, or why it failed.
    pub fn handle(&mut self, call: RtasCall, args: &RtasArgs, ctx: &mut RtasContext<'_>) -> CallResult {
        if args.args().len() != call.nargs() || !call.accepts_nret(args.nret()) {
            return Err(fail(status::PARAMETER_ERROR));
        }
        let a = args.args();
        match call {
            RtasCall::SetEehOption => self.set_eeh_option(ctx, cells(a)?),
            RtasCall::GetConfigAddrInfo2 => self.get_config_addr_info2(ctx, cells(a)?),
            RtasCall::GetConfigAddrInfo => self.pe_config_addr(ctx, cells(a)?),
            RtasCall::ReadSlotResetState2 | RtasCall::ReadSlotResetState => {
                self.read_slot_reset_state(ctx, cells(a)?, args.nret())
            }
            RtasCall::SetSlotReset => self.set_slot_reset(ctx, cells(a)?),
            RtasCall::ConfigurePe | RtasCall::ConfigureBridge => self.configure(ctx, cells(a)?),
            RtasCall::SlotErrorDetail => self.slot_error_detail(ctx, cells(a)?),
            RtasCall::OpenErrinjct => self.open_errinjct(),
            RtasCall::Errinjct => self.errinjct(ctx, cells(a)?),
            RtasCall::CloseErrinjct => self.close_errinjct(cells(a)?),
        }
    }

    /// The status for a host failure in a call whose PAPR statuses do not
    /// include "hardware error" but whose failure the policy reports as one.
    fn host_failure(&self) -> i32 {
        if self.policy.host_failure_is_hardware_error {
            status::HARDWARE_ERROR
        } else {
            status::PARAMETER_ERROR
        }
    }

    /// Resolves the (config address, BUID hi, BUID lo) cells that start every
    /// address-taking call, within this VM only.
    fn target(&self, maps: &AddrMaps, config: u32, buid_hi: u32, buid_lo: u32) -> Result<Mapped, RtasError> {
        let config = ConfigAddr::from_raw(config).map_err(|_| fail(status::PARAMETER_ERROR))?;
        maps.resolve(self.vm, Buid::from_cells(buid_hi, buid_lo), config).map_err(|_| fail(status::PARAMETER_ERROR))
    }

    /// Carries out `op`, answering a host failure with `host_failure`.
    fn op(ctx: &RtasContext<'_>, pe: PeId, op: EehOp, host_failure: i32) -> CallResult {
        ctx.backend
            .pe_op(pe, op)
            .map(|_| Reply::status_only(status::SUCCESS))
            .map_err(|e| RtasError::backend(e, host_failure))
    }

    fn set_eeh_option(&self, ctx: &mut RtasContext<'_>, [config, buid_hi, buid_lo, option]: [u32; 4]) -> CallResult {
        let target = self.target(ctx.maps, config, buid_hi, buid_lo)?;
        let op = match option {
            0 => EehOp::Disable,
            1 => EehOp::Enable,
            2 => EehOp::UnfreezeIo,
            3 => EehOp::UnfreezeDma,
            // 4 and 5 (io-event interrupts) need "ibm,io-events-capable".
            _ => return Err(fail(status::PARAMETER_ERROR)),
        };
        self.state_changing_op(ctx, target.pe, op)
    }

    /// A thaw or reset: a host refusal is -7 when the PE's state, read
    /// again, is one where the PAPR "PE State Control" table answers -7
    /// (the refusal's errno, `EIO`, cannot tell), -8 for a fundamental reset
    /// the host does not offer, and otherwise -1, hardware error.
    fn state_changing_op(&self, ctx: &RtasContext<'_>, pe: PeId, op: EehOp) -> CallResult {
        Self::op(ctx, pe, op, status::HARDWARE_ERROR).map_err(|error| {
            let RtasError::Backend { status: status::HARDWARE_ERROR, source } = error else { return error };
            if !self.policy.papr_call_statuses {
                return RtasError::Backend { status: status::HARDWARE_ERROR, source };
            }
            let unsupported = matches!(source.errno(), errno::ENOTTY | errno::EOPNOTSUPP);
            let status = if op == EehOp::Reset(ResetKind::Fundamental) && unsupported {
                status::FUNDAMENTAL_RESET_UNSUPPORTED
            } else if ctx.backend.status(pe).is_ok_and(|now| papr_forbids(op, now.state)) {
                status::UNEXPECTED_STATE
            } else {
                status::HARDWARE_ERROR
            };
            RtasError::Backend { status, source }
        })
    }

    fn pe_config_addr(&self, ctx: &mut RtasContext<'_>, [config, buid_hi, buid_lo, _]: [u32; 4]) -> CallResult {
        let target = self.target(ctx.maps, config, buid_hi, buid_lo)?;
        let vm = ctx.maps.vm(self.vm).map_err(|_| fail(status::PARAMETER_ERROR))?;
        let (_, pe_addr) = vm.pe_config_addr(target.pe).ok_or(fail(status::PARAMETER_ERROR))?;
        Ok(Reply::new(status::SUCCESS, &[pe_addr.raw()]))
    }

    fn get_config_addr_info2(&self, ctx: &mut RtasContext<'_>, a: [u32; 4]) -> CallResult {
        let [config, buid_hi, buid_lo, function] = a;
        match function {
            0 => self.pe_config_addr(ctx, a),
            1 => {
                let target = self.target(ctx.maps, config, buid_hi, buid_lo)?;
                let shared = if self.policy.truthful_shared_pe {
                    let functions =
                        ctx.backend.devices_of(target.pe).map_err(|e| RtasError::backend(e, self.host_failure()))?;
                    functions.len() > 1
                } else {
                    true
                };
                Ok(Reply::new(status::SUCCESS, &[if shared { 2 } else { 1 }]))
            }
            _ => Err(fail(status::PARAMETER_ERROR)),
        }
    }

    fn read_slot_reset_state(
        &self,
        ctx: &mut RtasContext<'_>,
        [config, buid_hi, buid_lo]: [u32; 3],
        nret: usize,
    ) -> CallResult {
        let target = self.target(ctx.maps, config, buid_hi, buid_lo)?;
        let (state, unavailable_ms) = if self.permanently_unavailable.contains(&target.pe) {
            (PeState::Unavailable, 0)
        } else {
            let pe_status = ctx.backend.status(target.pe).map_err(|e| RtasError::backend(e, self.host_failure()))?;
            let delay = match pe_status.unavailable_for {
                Some(delay) if self.policy.exact_unavailable_delay => delay_hint_ms(delay),
                _ => DEFAULT_UNAVAILABLE_MS,
            };
            (pe_status.state, if pe_status.state == PeState::Unavailable { delay } else { 0 })
        };
        const EEH_CAPABLE: u32 = 1;
        let reply = match nret {
            3 => Reply::new(status::SUCCESS, &[state.raw(), EEH_CAPABLE]),
            4 => Reply::new(status::SUCCESS, &[state.raw(), EEH_CAPABLE, unavailable_ms]),
            _ => Reply::new(status::SUCCESS, &[state.raw(), EEH_CAPABLE, unavailable_ms, 0]),
        };
        Ok(reply)
    }

    fn set_slot_reset(&self, ctx: &mut RtasContext<'_>, [config, buid_hi, buid_lo, function]: [u32; 4]) -> CallResult {
        let target = self.target(ctx.maps, config, buid_hi, buid_lo)?;
        let op = match function {
            0 => EehOp::ResetDeactivate,
            1 => EehOp::Reset(ResetKind::Hot),
            3 => EehOp::Reset(ResetKind::Fundamental),
            _ => return Err(fail(status::PARAMETER_ERROR)),
        };
        self.state_changing_op(ctx, target.pe, op)
    }

    /// configure-pe / configure-bridge. While the PE settles after a reset
    /// there is nothing to configure yet: the call answers an extended
    /// delay (990x, the only EEH call whose delay Linux's pseries guest
    /// honours, `pseries_eeh_phb_configure_bridge`), at most 9902 (100 ms)
    /// as PAPR asks; a host that cannot tell the delay gets 9902.
    fn configure(&self, ctx: &mut RtasContext<'_>, [config, buid_hi, buid_lo]: [u32; 3]) -> CallResult {
        let target = self.target(ctx.maps, config, buid_hi, buid_lo)?;
        if self.policy.papr_call_statuses {
            let settling = ctx.backend.status(target.pe).ok().filter(|s| s.state == PeState::Unavailable);
            match settling.map(|s| s.unavailable_for) {
                Some(Some(delay)) if delay.is_zero() => {}
                Some(delay) => return Ok(Reply::status_only(extended_delay(delay))),
                None => {}
            }
        }
        Self::op(ctx, target.pe, EehOp::Configure, self.host_failure())
    }

    fn slot_error_detail(&mut self, ctx: &mut RtasContext<'_>, a: [u32; 8]) -> CallResult {
        // The device-specific error buffer (cells 3 and 4) is not used.
        let [config, buid_hi, buid_lo, _, _, return_buffer, return_len, function] = a;
        let target = self.target(ctx.maps, config, buid_hi, buid_lo)?;
        const TEMPORARY: u32 = 1;
        const PERMANENT: u32 = 2;
        if function != TEMPORARY && function != PERMANENT {
            return Err(fail(status::PARAMETER_ERROR));
        }
        if !self.policy.papr_slot_error_detail {
            return Ok(Reply::status_only(status::NO_ERRORS_FOUND));
        }
        // Check the whole return buffer before the log is taken (it is
        // handed out once), so a bad buffer loses nothing.
        let return_len = usize::try_from(return_len).map_or(RTAS_ERROR_LOG_MAX, |n| n.min(RTAS_ERROR_LOG_MAX));
        let mut scratch = vec![0u8; return_len];
        ctx.memory.read(u64::from(return_buffer), &mut scratch).map_err(|_| fail(status::PARAMETER_ERROR))?;
        let log = ctx.backend.error_log(target.pe).map_err(|e| RtasError::backend(e, status::HARDWARE_ERROR))?;
        if function == PERMANENT {
            self.permanently_unavailable.insert(target.pe);
        }
        let Some(mut log) = log else {
            return Ok(Reply::status_only(status::NO_ERRORS_FOUND));
        };
        log.truncate(return_len);
        ctx.memory.write(u64::from(return_buffer), &log).map_err(|_| fail(status::HARDWARE_ERROR))?;
        Ok(Reply::status_only(status::SUCCESS))
    }

    fn open_errinjct(&mut self) -> CallResult {
        if !self.policy.errinjct {
            return Err(fail(status::PARAMETER_ERROR));
        }
        if self.errinjct_open.is_some() {
            return Err(fail(status::ERRINJCT_OWNERSHIP));
        }
        let token = self.next_errinjct_token;
        self.next_errinjct_token = self.next_errinjct_token.wrapping_add(1).max(1);
        self.errinjct_open = Some(token);
        Ok(Reply::open_errinjct(status::SUCCESS, token))
    }

    fn check_errinjct_owner(&self, token: u32) -> Result<(), RtasError> {
        if !self.policy.errinjct {
            return Err(fail(status::PARAMETER_ERROR));
        }
        if self.errinjct_open != Some(token) {
            return Err(fail(status::ERRINJCT_OWNERSHIP));
        }
        Ok(())
    }

    fn errinjct(&self, ctx: &mut RtasContext<'_>, [class, token, buffer]: [u32; 3]) -> CallResult {
        let buffer = u64::from(buffer);
        self.check_errinjct_owner(token)?;
        if buffer % ERRINJCT_BUFFER_ALIGN != 0 {
            return Err(fail(status::PARAMETER_ERROR));
        }
        let (kind, addr, mask, target) = match class {
            ERRINJCT_IOA_BUS_ERROR => {
                let work = read_work_buffer::<IoaBusError>(ctx.memory, buffer)?;
                (ErrType::Bus32, u64::from(work.addr.get()), u64::from(work.mask.get()), work.target)
            }
            ERRINJCT_IOA_BUS_ERROR_64 => {
                let work = read_work_buffer::<IoaBusError64>(ctx.memory, buffer)?;
                (ErrType::Bus64, work.addr.get(), work.mask.get(), work.target)
            }
            _ => return Err(fail(status::PARAMETER_ERROR)),
        };
        let pe = self.target(ctx.maps, target.config.get(), target.buid_hi.get(), target.buid_lo.get())?.pe;
        let func = ErrFunc::from_raw(target.func.get()).ok_or(fail(status::PARAMETER_ERROR))?;
        let injection = ErrInjection { kind, func, addr, mask };
        ctx.backend.pe_op(pe, EehOp::InjectErr(injection)).map_err(|e| {
            let host_failure = injection_status(&e);
            RtasError::backend(e, host_failure)
        })?;
        Ok(Reply::status_only(status::SUCCESS))
    }

    fn close_errinjct(&mut self, [token]: [u32; 1]) -> CallResult {
        self.check_errinjct_owner(token)?;
        self.errinjct_open = None;
        Ok(Reply::status_only(status::SUCCESS))
    }
}

/// The argument cells of a call as an array; [`EehRtas::handle`] has
/// checked their count, so the conversion cannot fail there.
fn cells<const N: usize>(a: &[u32]) -> Result<[u32; N], RtasError> {
    a.try_into().map_err(|_| fail(status::PARAMETER_ERROR))
}

/// Reads an `ibm,errinjct` work buffer of layout `T` from guest memory.
fn read_work_buffer<T: FromBytes + IntoBytes>(memory: &dyn GuestMemory, addr: u64) -> Result<T, RtasError> {
    let mut work = T::new_zeroed();
    memory.read(addr, work.as_mut_bytes()).map_err(|_| fail(status::PARAMETER_ERROR))?;
    Ok(work)
}

/// Whether PAPR's "PE State Control" table answers -7 to `op` in `state`
/// (project reference §2.5): thaw MMIO in 1 and 5, thaw DMA in 1, 2 and 5,
/// deassert in 2 and 5, assert in 5.
fn papr_forbids(op: EehOp, state: PeState) -> bool {
    use PeState::{Reset, Stopped, Unavailable};
    match op {
        EehOp::UnfreezeIo => matches!(state, Reset | Unavailable),
        EehOp::UnfreezeDma => matches!(state, Reset | Stopped | Unavailable),
        EehOp::ResetDeactivate => matches!(state, Stopped | Unavailable),
        EehOp::Reset(_) => state == Unavailable,
        _ => false,
    }
}

/// The extended-delay status for a wait of `delay` (unknown: the longest):
/// 9900 + x asks for 10^x ms; PAPR keeps EEH calls within 9900..=9902.
fn extended_delay(delay: Option<Duration>) -> i32 {
    match delay {
        Some(d) if d <= Duration::from_millis(1) => status::EXTENDED_DELAY_MIN,
        Some(d) if d <= Duration::from_millis(10) => status::EXTENDED_DELAY_MIN + 1,
        _ => status::EXTENDED_DELAY_MIN + 2,
    }
}

/// The "PE Unavailable Info" for a known delay: milliseconds, rounded up, at
/// least 1 while the wait is finite (0 means "permanently unavailable").
fn delay_hint_ms(delay: Duration) -> u32 {
    if delay.is_zero() {
        return 0;
    }
    u32::try_from(delay.as_nanos().div_ceil(1_000_000)).unwrap_or(u32::MAX).max(1)
}

/// The status for a failed injection: argument errors are "parameter error",
/// the rest "hardware error" (the 2025 RFC's errno mapping).
fn injection_status(error: &BackendError) -> i32 {
    match error.errno() {
        errno::EINVAL | errno::ERANGE | errno::ENOTTY | errno::EOPNOTSUPP => status::PARAMETER_ERROR,
        _ => status::HARDWARE_ERROR,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delay_hints_round_up_and_keep_zero_for_permanent() {
        assert_eq!(delay_hint_ms(Duration::ZERO), 0);
        assert_eq!(delay_hint_ms(Duration::from_nanos(1)), 1);
        assert_eq!(delay_hint_ms(Duration::from_micros(1_500_001)), 1501);
        assert_eq!(delay_hint_ms(Duration::from_secs(u64::MAX)), u32::MAX);
    }

    #[test]
    fn open_errinjct_reply_puts_status_second() {
        assert_eq!(Reply::open_errinjct(0, 7).cells(), &[7, 0]);
        assert_eq!(Reply::open_errinjct(-4, 0).cells(), &[0, (-4i32).cast_unsigned()]);
    }
}
