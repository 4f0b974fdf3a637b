//! The RTAS EEH calls, their argument counts, status codes, and the per-VM
//! token table that the guest reads from the `/rtas` device-tree node.

use std::collections::HashMap;

/// PAPR RTAS status words (LoPAPR "RTAS Status Word Values" plus the
/// call-specific values the EEH calls use).
pub mod status {
    /// Success.
    pub const SUCCESS: i32 = 0;
    /// `ibm,slot-error-detail`: no error log returned.
    pub const NO_ERRORS_FOUND: i32 = 1;
    /// Hardware error.
    pub const HARDWARE_ERROR: i32 = -1;
    /// Busy, retry later.
    pub const BUSY: i32 = -2;
    /// Parameter error; also "not supported" (one value, as in QEMU).
    pub const PARAMETER_ERROR: i32 = -3;
    /// errinjct: already open (open), not the owner or not open (errinjct, close).
    pub const ERRINJCT_OWNERSHIP: i32 = -4;
    /// Unexpected state change: re-read the PE state.
    pub const UNEXPECTED_STATE: i32 = -7;
    /// `ibm,set-slot-reset` function 3: fundamental reset not defined for
    /// this PE (the guest falls back to a hot reset).
    pub const FUNDAMENTAL_RESET_UNSUPPORTED: i32 = -8;
    /// Extended delay: wait 10^(status - 9900) ms and call again (9900..=9905).
    pub const EXTENDED_DELAY_MIN: i32 = 9900;
    /// The largest extended-delay status.
    pub const EXTENDED_DELAY_MAX: i32 = 9905;
}

/// PAPR errinjct class `ioa-bus-error` (token as seen on PowerVM and in the
/// 2025 QEMU/Linux proposals; the guest reads it from `ibm,errinjct-tokens`).
pub const ERRINJCT_IOA_BUS_ERROR: u32 = 0x07;
/// PAPR errinjct class `ioa-bus-error-64`.
pub const ERRINJCT_IOA_BUS_ERROR_64: u32 = 0x0F;

/// An RTAS EEH call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RtasCall {
    /// `ibm,set-eeh-option`.
    SetEehOption,
    /// `ibm,get-config-addr-info2`.
    GetConfigAddrInfo2,
    /// `ibm,get-config-addr-info` (the older form).
    GetConfigAddrInfo,
    /// `ibm,read-slot-reset-state2`.
    ReadSlotResetState2,
    /// `ibm,read-slot-reset-state` (the older form).
    ReadSlotResetState,
    /// `ibm,set-slot-reset`.
    SetSlotReset,
    /// `ibm,configure-pe`.
    ConfigurePe,
    /// `ibm,configure-bridge`.
    ConfigureBridge,
    /// `ibm,slot-error-detail`.
    SlotErrorDetail,
    /// `ibm,open-errinjct`.
    OpenErrinjct,
    /// `ibm,errinjct`.
    Errinjct,
    /// `ibm,close-errinjct`.
    CloseErrinjct,
}

impl RtasCall {
    /// Every call, in token order.
    pub const ALL: [RtasCall; 12] = [
        RtasCall::SetEehOption,
        RtasCall::GetConfigAddrInfo2,
        RtasCall::GetConfigAddrInfo,
        RtasCall::ReadSlotResetState2,
        RtasCall::ReadSlotResetState,
        RtasCall::SetSlotReset,
        RtasCall::ConfigurePe,
        RtasCall::ConfigureBridge,
        RtasCall::SlotErrorDetail,
        RtasCall::OpenErrinjct,
        RtasCall::Errinjct,
        RtasCall::CloseErrinjct,
    ];

    /// The `/rtas` property name.
    pub const fn name(self) -> &'static str {
        match self {
            RtasCall::SetEehOption => "ibm,set-eeh-option",
            RtasCall::GetConfigAddrInfo2 => "ibm,get-config-addr-info2",
            RtasCall::GetConfigAddrInfo => "ibm,get-config-addr-info",
            RtasCall::ReadSlotResetState2 => "ibm,read-slot-reset-state2",
            RtasCall::ReadSlotResetState => "ibm,read-slot-reset-state",
            RtasCall::SetSlotReset => "ibm,set-slot-reset",
            RtasCall::ConfigurePe => "ibm,configure-pe",
            RtasCall::ConfigureBridge => "ibm,configure-bridge",
            RtasCall::SlotErrorDetail => "ibm,slot-error-detail",
            RtasCall::OpenErrinjct => "ibm,open-errinjct",
            RtasCall::Errinjct => "ibm,errinjct",
            RtasCall::CloseErrinjct => "ibm,close-errinjct",
        }
    }

    /// The call named `name`.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.name() == name)
    }

    /// `nargs` the call takes.
    pub const fn nargs(self) -> usize {
        match self {
            RtasCall::SetEehOption
            | RtasCall::GetConfigAddrInfo2
            | RtasCall::GetConfigAddrInfo
            | RtasCall::SetSlotReset => 4,
            RtasCall::ReadSlotResetState2
            | RtasCall::ReadSlotResetState
            | RtasCall::ConfigurePe
            | RtasCall::ConfigureBridge
            | RtasCall::Errinjct => 3,
            RtasCall::SlotErrorDetail => 8,
            RtasCall::OpenErrinjct => 0,
            RtasCall::CloseErrinjct => 1,
        }
    }

    /// The guest memory a call with these arguments reads or writes, as
    /// (guest real address, bytes): `ibm,slot-error-detail`'s return buffer
    /// (at most `rtas-error-log-max`, 2 KiB) and `ibm,errinjct`'s work
    /// buffer (its 1 KiB block); `None` for the other calls, or if `args` is
    /// too short. A VMM that has RTAS served elsewhere (by eehd) sends this
    /// window of its memory along.
    pub fn guest_buffer(self, args: &[u32]) -> Option<(u64, usize)> {
        match self {
            RtasCall::SlotErrorDetail => {
                let (&addr, &len) = (args.get(5)?, args.get(6)?);
                let len = usize::try_from(len)
                    .map_or(super::handlers::RTAS_ERROR_LOG_MAX, |n| n.min(super::handlers::RTAS_ERROR_LOG_MAX));
                Some((u64::from(addr), len))
            }
            RtasCall::Errinjct => Some((u64::from(*args.get(2)?), super::handlers::ERRINJCT_BLOCK_BYTES)),
            _ => None,
        }
    }

    /// Whether `nret` is one the call accepts (read-slot-reset-state2 takes
    /// 4, or 5 with the recovery-info cell).
    pub const fn accepts_nret(self, nret: usize) -> bool {
        match self {
            RtasCall::ReadSlotResetState2 => nret == 4 || nret == 5,
            RtasCall::ReadSlotResetState => nret == 3,
            RtasCall::GetConfigAddrInfo2 | RtasCall::GetConfigAddrInfo | RtasCall::OpenErrinjct => nret == 2,
            _ => nret == 1,
        }
    }
}

/// The tokens one VM's firmware hands out, both ways.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenTable {
    by_token: HashMap<u32, RtasCall>,
}

impl TokenTable {
    /// The first token of the default table (QEMU numbers its RTAS tokens
    /// from 0x2000 too; the guest never assumes numbers, it reads `/rtas`).
    pub const DEFAULT_BASE: u32 = 0x2000;

    /// Tokens `base`, `base + 1`, ... for [`RtasCall::ALL`].
    pub fn sequential(base: u32) -> Self {
        let by_token = (base..).zip(RtasCall::ALL).collect();
        TokenTable { by_token }
    }

    /// The call a token names.
    pub fn call(&self, token: u32) -> Option<RtasCall> {
        self.by_token.get(&token).copied()
    }

    /// The token of a call, as the `/rtas` property would give it.
    pub fn token(&self, call: RtasCall) -> Option<u32> {
        self.by_token.iter().find(|(_, &c)| c == call).map(|(&t, _)| t)
    }

    /// `(name, token)` pairs for the `/rtas` node, by token.
    pub fn properties(&self) -> Vec<(&'static str, u32)> {
        let mut props: Vec<_> = self.by_token.iter().map(|(&t, c)| (c.name(), t)).collect();
        props.sort_by_key(|&(_, t)| t);
        props
    }
}

impl Default for TokenTable {
    fn default() -> Self {
        Self::sequential(Self::DEFAULT_BASE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_in_guest_memory_are_named_by_their_arguments() {
        let detail = [0, 0, 0, 0, 0, 0x10_0000, 4096, 1];
        assert_eq!(RtasCall::SlotErrorDetail.guest_buffer(&detail), Some((0x10_0000, 2048)));
        assert_eq!(RtasCall::Errinjct.guest_buffer(&[7, 1, 0x2000]), Some((0x2000, 1024)));
        assert_eq!(RtasCall::SlotErrorDetail.guest_buffer(&detail[..5]), None);
        assert_eq!(RtasCall::SetSlotReset.guest_buffer(&[0, 0, 0, 1]), None);
    }

    #[test]
    fn argument_counts_follow_papr() {
        let expected = [
            (RtasCall::SetEehOption, 4, 1),
            (RtasCall::GetConfigAddrInfo2, 4, 2),
            (RtasCall::GetConfigAddrInfo, 4, 2),
            (RtasCall::ReadSlotResetState2, 3, 4),
            (RtasCall::ReadSlotResetState, 3, 3),
            (RtasCall::SetSlotReset, 4, 1),
            (RtasCall::ConfigurePe, 3, 1),
            (RtasCall::ConfigureBridge, 3, 1),
            (RtasCall::SlotErrorDetail, 8, 1),
            (RtasCall::OpenErrinjct, 0, 2),
            (RtasCall::Errinjct, 3, 1),
            (RtasCall::CloseErrinjct, 1, 1),
        ];
        for (call, nargs, nret) in expected {
            assert_eq!(call.nargs(), nargs, "{}", call.name());
            assert!(call.accepts_nret(nret), "{}", call.name());
            assert!(!call.accepts_nret(nret + 2), "{}", call.name());
            assert!(!call.accepts_nret(0), "{}", call.name());
        }
        assert!(RtasCall::ReadSlotResetState2.accepts_nret(5));
    }

    #[test]
    fn token_table_maps_both_ways() {
        let table = TokenTable::default();
        for call in RtasCall::ALL {
            let token = table.token(call).unwrap();
            assert_eq!(table.call(token), Some(call));
            assert_eq!(RtasCall::from_name(call.name()), Some(call));
        }
        assert_eq!(table.call(0x1fff), None);
        assert_eq!(table.properties()[0], ("ibm,set-eeh-option", 0x2000));
        assert_eq!(RtasCall::from_name("ibm,nothing"), None);
    }
}
