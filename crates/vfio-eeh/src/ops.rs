//! EEH operations on a PE and the states a PE reports, with the numbers VFIO
//! (`VFIO_EEH_PE_OP`) and PAPR (RTAS) give them.
//!
//! VFIO's op codes and PAPR's function codes are different namespaces; the
//! state values are shared: `VFIO_EEH_PE_STATE_*` equals PAPR's "PE Reset
//! State", so a state read from the host passes to the guest unchanged.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::uapi;

/// The state of a PE, as `VFIO_EEH_PE_OP(GET_STATE)` returns it and as
/// `ibm,read-slot-reset-state2` reports it. There is no state 3.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[repr(u32)]
pub enum PeState {
    /// MMIO and DMA allowed.
    Normal = uapi::VFIO_EEH_PE_STATE_NORMAL,
    /// Reset asserted.
    Reset = uapi::VFIO_EEH_PE_STATE_RESET,
    /// Frozen: MMIO and DMA stopped.
    Stopped = uapi::VFIO_EEH_PE_STATE_STOPPED,
    /// DMA stopped, MMIO allowed.
    StoppedDma = uapi::VFIO_EEH_PE_STATE_STOPPED_DMA,
    /// Temporarily or permanently unavailable.
    Unavailable = uapi::VFIO_EEH_PE_STATE_UNAVAIL,
}

impl PeState {
    /// The VFIO / PAPR number.
    pub const fn raw(self) -> u32 {
        self as u32
    }

    /// Reads a VFIO / PAPR state number.
    pub const fn from_raw(raw: u32) -> Option<Self> {
        Some(match raw {
            uapi::VFIO_EEH_PE_STATE_NORMAL => PeState::Normal,
            uapi::VFIO_EEH_PE_STATE_RESET => PeState::Reset,
            uapi::VFIO_EEH_PE_STATE_STOPPED => PeState::Stopped,
            uapi::VFIO_EEH_PE_STATE_STOPPED_DMA => PeState::StoppedDma,
            uapi::VFIO_EEH_PE_STATE_UNAVAIL => PeState::Unavailable,
            _ => return None,
        })
    }

    /// Whether MMIO (loads and stores) reaches the devices.
    pub const fn mmio_allowed(self) -> bool {
        matches!(self, PeState::Normal | PeState::StoppedDma)
    }
}

impl fmt::Display for PeState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PeState::Normal => "normal",
            PeState::Reset => "reset",
            PeState::Stopped => "stopped",
            PeState::StoppedDma => "stopped-dma",
            PeState::Unavailable => "unavailable",
        })
    }
}

/// Which reset a PE gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResetKind {
    /// Hot reset (secondary bus reset), PAPR set-slot-reset function 1.
    Hot,
    /// Fundamental reset (PERST#), PAPR set-slot-reset function 3.
    Fundamental,
}

/// Width of the address an injected error matches
/// (`EEH_ERR_TYPE_32` / `EEH_ERR_TYPE_64`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[repr(u32)]
pub enum ErrType {
    /// 32-bit address (PAPR `ioa-bus-error`).
    Bus32 = uapi::EEH_ERR_TYPE_32,
    /// 64-bit address (PAPR `ioa-bus-error-64`).
    Bus64 = uapi::EEH_ERR_TYPE_64,
}

impl ErrType {
    /// Reads `EEH_ERR_TYPE_*`.
    pub const fn from_raw(raw: u32) -> Option<Self> {
        match raw {
            uapi::EEH_ERR_TYPE_32 => Some(ErrType::Bus32),
            uapi::EEH_ERR_TYPE_64 => Some(ErrType::Bus64),
            _ => None,
        }
    }

    /// The `EEH_ERR_TYPE_*` code.
    pub const fn raw(self) -> u32 {
        match self {
            ErrType::Bus32 => uapi::EEH_ERR_TYPE_32,
            ErrType::Bus64 => uapi::EEH_ERR_TYPE_64,
        }
    }
}

/// The access an injected error fires on (`EEH_ERR_FUNC_*`, 0..=19, the same
/// codes as PAPR's `ioa-bus-error` function word).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[repr(u32)]
#[allow(missing_docs)] // The names are the header's, one per code.
pub enum ErrFunc {
    LoadMemAddr = 0,
    LoadMemData = 1,
    LoadIoAddr = 2,
    LoadIoData = 3,
    LoadConfigAddr = 4,
    LoadConfigData = 5,
    StoreMemAddr = 6,
    StoreMemData = 7,
    StoreIoAddr = 8,
    StoreIoData = 9,
    StoreConfigAddr = 10,
    StoreConfigData = 11,
    DmaReadAddr = 12,
    DmaReadData = 13,
    DmaReadMaster = 14,
    DmaReadTarget = 15,
    DmaWriteAddr = 16,
    DmaWriteData = 17,
    DmaWriteMaster = 18,
    DmaWriteTarget = 19,
}

/// The kind of access an injected error watches for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AccessKind {
    /// MMIO load.
    MemLoad,
    /// MMIO store.
    MemStore,
    /// I/O-space load.
    IoLoad,
    /// I/O-space store.
    IoStore,
    /// Config-space load.
    ConfigLoad,
    /// Config-space store.
    ConfigStore,
    /// DMA read by the device.
    DmaRead,
    /// DMA write by the device.
    DmaWrite,
}

impl ErrFunc {
    const ALL: [ErrFunc; 20] = [
        ErrFunc::LoadMemAddr,
        ErrFunc::LoadMemData,
        ErrFunc::LoadIoAddr,
        ErrFunc::LoadIoData,
        ErrFunc::LoadConfigAddr,
        ErrFunc::LoadConfigData,
        ErrFunc::StoreMemAddr,
        ErrFunc::StoreMemData,
        ErrFunc::StoreIoAddr,
        ErrFunc::StoreIoData,
        ErrFunc::StoreConfigAddr,
        ErrFunc::StoreConfigData,
        ErrFunc::DmaReadAddr,
        ErrFunc::DmaReadData,
        ErrFunc::DmaReadMaster,
        ErrFunc::DmaReadTarget,
        ErrFunc::DmaWriteAddr,
        ErrFunc::DmaWriteData,
        ErrFunc::DmaWriteMaster,
        ErrFunc::DmaWriteTarget,
    ];

    /// Reads `EEH_ERR_FUNC_*`; codes above 19 are `None`.
    pub fn from_raw(raw: u32) -> Option<Self> {
        Self::ALL.get(usize::try_from(raw).ok()?).copied()
    }

    /// The code.
    pub const fn raw(self) -> u32 {
        self as u32
    }

    /// Every function code, in order.
    pub fn all() -> impl Iterator<Item = ErrFunc> {
        Self::ALL.into_iter()
    }

    /// The access that triggers this error.
    pub const fn access(self) -> AccessKind {
        match self as u32 {
            0..=1 => AccessKind::MemLoad,
            2..=3 => AccessKind::IoLoad,
            4..=5 => AccessKind::ConfigLoad,
            6..=7 => AccessKind::MemStore,
            8..=9 => AccessKind::IoStore,
            10..=11 => AccessKind::ConfigStore,
            12..=15 => AccessKind::DmaRead,
            _ => AccessKind::DmaWrite,
        }
    }
}

/// An error to inject into a PE (the payload of `VFIO_EEH_PE_INJECT_ERR`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ErrInjection {
    /// Address width.
    pub kind: ErrType,
    /// Which access fires it.
    pub func: ErrFunc,
    /// Bus address to match.
    pub addr: u64,
    /// Bits of `addr` to compare (1 = compare); 0 matches any address.
    pub mask: u64,
}

impl ErrInjection {
    /// Whether an access at `addr` matches this injection's address and mask.
    pub const fn matches_addr(&self, addr: u64) -> bool {
        (addr ^ self.addr) & self.mask == 0
    }
}

/// An EEH operation on a PE, one per `VFIO_EEH_PE_*` op code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "op")]
pub enum EehOp {
    /// `VFIO_EEH_PE_DISABLE` (Linux: a no-op).
    Disable,
    /// `VFIO_EEH_PE_ENABLE`: enable EEH; also thaws a frozen PE (the host
    /// hands the PE to its new owner clean).
    Enable,
    /// `VFIO_EEH_PE_UNFREEZE_IO`: thaw MMIO.
    UnfreezeIo,
    /// `VFIO_EEH_PE_UNFREEZE_DMA`: thaw DMA.
    UnfreezeDma,
    /// `VFIO_EEH_PE_GET_STATE`.
    GetState,
    /// `VFIO_EEH_PE_RESET_DEACTIVATE`: deassert reset, restore BARs, thaw.
    ResetDeactivate,
    /// `VFIO_EEH_PE_RESET_HOT` / `_FUNDAMENTAL`: freeze, then assert reset.
    Reset(ResetKind),
    /// `VFIO_EEH_PE_CONFIGURE`.
    Configure,
    /// `VFIO_EEH_PE_INJECT_ERR`.
    InjectErr(ErrInjection),
}

impl EehOp {
    /// Every op but `InjectErr`, the only one that carries arguments.
    pub const WITHOUT_ARGUMENTS: [EehOp; 9] = [
        EehOp::Disable,
        EehOp::Enable,
        EehOp::UnfreezeIo,
        EehOp::UnfreezeDma,
        EehOp::GetState,
        EehOp::ResetDeactivate,
        EehOp::Reset(ResetKind::Hot),
        EehOp::Reset(ResetKind::Fundamental),
        EehOp::Configure,
    ];

    /// The `VFIO_EEH_PE_*` op code.
    pub const fn code(&self) -> u32 {
        match self {
            EehOp::Disable => uapi::VFIO_EEH_PE_DISABLE,
            EehOp::Enable => uapi::VFIO_EEH_PE_ENABLE,
            EehOp::UnfreezeIo => uapi::VFIO_EEH_PE_UNFREEZE_IO,
            EehOp::UnfreezeDma => uapi::VFIO_EEH_PE_UNFREEZE_DMA,
            EehOp::GetState => uapi::VFIO_EEH_PE_GET_STATE,
            EehOp::ResetDeactivate => uapi::VFIO_EEH_PE_RESET_DEACTIVATE,
            EehOp::Reset(ResetKind::Hot) => uapi::VFIO_EEH_PE_RESET_HOT,
            EehOp::Reset(ResetKind::Fundamental) => uapi::VFIO_EEH_PE_RESET_FUNDAMENTAL,
            EehOp::Configure => uapi::VFIO_EEH_PE_CONFIGURE,
            EehOp::InjectErr(_) => uapi::VFIO_EEH_PE_INJECT_ERR,
        }
    }

    /// A short name for logs and tables.
    pub const fn name(&self) -> &'static str {
        match self {
            EehOp::Disable => "disable",
            EehOp::Enable => "enable",
            EehOp::UnfreezeIo => "unfreeze-io",
            EehOp::UnfreezeDma => "unfreeze-dma",
            EehOp::GetState => "get-state",
            EehOp::ResetDeactivate => "reset-deactivate",
            EehOp::Reset(ResetKind::Hot) => "reset-hot",
            EehOp::Reset(ResetKind::Fundamental) => "reset-fundamental",
            EehOp::Configure => "configure",
            EehOp::InjectErr(_) => "inject-err",
        }
    }
}

/// Why a `struct vfio_eeh_pe_op` was refused; all map to `EINVAL` as in Linux.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PeOpDecodeError {
    /// `argsz` is below what the op needs (12, or 40 for `INJECT_ERR`).
    #[error("argsz {argsz} is below the {needed} bytes this op needs")]
    ArgszTooSmall {
        /// What the caller said.
        argsz: u32,
        /// What the op needs.
        needed: u32,
    },
    /// `flags` is not 0.
    #[error("flags {0:#x} are not 0")]
    Flags(u32),
    /// Unknown op code.
    #[error("Unknown EEH op {0}")]
    UnknownOp(u32),
    /// Error function above 19.
    #[error("Error function {0} is out of range (0..=19)")]
    ErrFunc(u32),
    /// Error type neither 32- nor 64-bit.
    #[error("Error type {0} is neither 0 (32-bit) nor 1 (64-bit)")]
    ErrType(u32),
}

impl PeOpDecodeError {
    /// The errno Linux answers: `EINVAL` for the core checks (the function
    /// range among them, checked by `eeh_pe_inject_err`), `ERANGE` for
    /// PowerNV's check of the injection type.
    pub const fn errno(self) -> i32 {
        match self {
            PeOpDecodeError::ErrType(_) => crate::backend::errno::ERANGE,
            _ => crate::backend::errno::EINVAL,
        }
    }
}

impl TryFrom<&uapi::VfioEehPeOp> for EehOp {
    type Error = PeOpDecodeError;

    /// Reads a `struct vfio_eeh_pe_op` with Linux's checks, in Linux's order.
    fn try_from(raw: &uapi::VfioEehPeOp) -> Result<Self, PeOpDecodeError> {
        if raw.argsz < uapi::VFIO_EEH_PE_OP_MINSZ {
            return Err(PeOpDecodeError::ArgszTooSmall { argsz: raw.argsz, needed: uapi::VFIO_EEH_PE_OP_MINSZ });
        }
        if raw.flags != 0 {
            return Err(PeOpDecodeError::Flags(raw.flags));
        }
        Ok(match raw.op {
            uapi::VFIO_EEH_PE_DISABLE => EehOp::Disable,
            uapi::VFIO_EEH_PE_ENABLE => EehOp::Enable,
            uapi::VFIO_EEH_PE_UNFREEZE_IO => EehOp::UnfreezeIo,
            uapi::VFIO_EEH_PE_UNFREEZE_DMA => EehOp::UnfreezeDma,
            uapi::VFIO_EEH_PE_GET_STATE => EehOp::GetState,
            uapi::VFIO_EEH_PE_RESET_DEACTIVATE => EehOp::ResetDeactivate,
            uapi::VFIO_EEH_PE_RESET_HOT => EehOp::Reset(ResetKind::Hot),
            uapi::VFIO_EEH_PE_RESET_FUNDAMENTAL => EehOp::Reset(ResetKind::Fundamental),
            uapi::VFIO_EEH_PE_CONFIGURE => EehOp::Configure,
            uapi::VFIO_EEH_PE_INJECT_ERR => {
                let needed = uapi::VFIO_EEH_PE_OP_INJECT_SZ;
                if raw.argsz < needed {
                    return Err(PeOpDecodeError::ArgszTooSmall { argsz: raw.argsz, needed });
                }
                let err = &raw.err;
                let func = ErrFunc::from_raw(err.func).ok_or(PeOpDecodeError::ErrFunc(err.func))?;
                let kind = ErrType::from_raw(err.type_).ok_or(PeOpDecodeError::ErrType(err.type_))?;
                EehOp::InjectErr(ErrInjection { kind, func, addr: err.addr, mask: err.mask })
            }
            other => return Err(PeOpDecodeError::UnknownOp(other)),
        })
    }
}

impl From<EehOp> for uapi::VfioEehPeOp {
    /// Builds the ioctl argument: `argsz` 40, `flags` 0.
    fn from(op: EehOp) -> Self {
        let err = match op {
            EehOp::InjectErr(inj) => {
                uapi::VfioEehPeErr { type_: inj.kind as u32, func: inj.func.raw(), addr: inj.addr, mask: inj.mask }
            }
            _ => uapi::VfioEehPeErr::default(),
        };
        uapi::VfioEehPeOp::new(op.code(), err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn states_have_the_vfio_and_papr_numbers() {
        let pairs = [
            (PeState::Normal, 0),
            (PeState::Reset, 1),
            (PeState::Stopped, 2),
            (PeState::StoppedDma, 4),
            (PeState::Unavailable, 5),
        ];
        for (state, raw) in pairs {
            assert_eq!(state.raw(), raw);
            assert_eq!(PeState::from_raw(raw), Some(state));
        }
        assert_eq!(PeState::from_raw(3), None);
        assert_eq!(PeState::from_raw(6), None);
    }

    #[test]
    fn err_funcs_cover_0_to_19_and_map_to_accesses() {
        assert_eq!(ErrFunc::all().count(), 20);
        for (i, f) in ErrFunc::all().enumerate() {
            assert_eq!(f.raw() as usize, i);
        }
        assert_eq!(ErrFunc::from_raw(20), None);
        assert_eq!(ErrFunc::LoadMemAddr.access(), AccessKind::MemLoad);
        assert_eq!(ErrFunc::LoadConfigData.access(), AccessKind::ConfigLoad);
        assert_eq!(ErrFunc::StoreMemData.access(), AccessKind::MemStore);
        assert_eq!(ErrFunc::StoreConfigAddr.access(), AccessKind::ConfigStore);
        assert_eq!(ErrFunc::DmaReadTarget.access(), AccessKind::DmaRead);
        assert_eq!(ErrFunc::DmaWriteAddr.access(), AccessKind::DmaWrite);
    }

    #[test]
    fn decode_applies_linux_checks_in_order() {
        let mut raw = uapi::VfioEehPeOp::new(uapi::VFIO_EEH_PE_GET_STATE, Default::default());
        assert_eq!(EehOp::try_from(&raw), Ok(EehOp::GetState));
        raw.argsz = 12;
        assert_eq!(EehOp::try_from(&raw), Ok(EehOp::GetState));
        raw.argsz = 11;
        assert_eq!(EehOp::try_from(&raw).unwrap_err().errno(), crate::backend::errno::EINVAL);
        raw.argsz = 40;
        raw.flags = 1;
        assert_eq!(EehOp::try_from(&raw), Err(PeOpDecodeError::Flags(1)));
        raw.flags = 0;
        raw.op = 10;
        assert_eq!(EehOp::try_from(&raw), Err(PeOpDecodeError::UnknownOp(10)));
        raw.op = uapi::VFIO_EEH_PE_INJECT_ERR;
        raw.argsz = 39;
        assert_eq!(EehOp::try_from(&raw), Err(PeOpDecodeError::ArgszTooSmall { argsz: 39, needed: 40 }));
        raw.argsz = 40;
        raw.err.func = 20;
        assert_eq!(EehOp::try_from(&raw).unwrap_err().errno(), crate::backend::errno::EINVAL);
        raw.err.func = 4;
        raw.err.type_ = 2;
        assert_eq!(EehOp::try_from(&raw), Err(PeOpDecodeError::ErrType(2)));
        assert_eq!(EehOp::try_from(&raw).unwrap_err().errno(), crate::backend::errno::ERANGE);
    }

    #[test]
    fn injection_mask_compares_only_masked_bits() {
        let inj = ErrInjection { kind: ErrType::Bus64, func: ErrFunc::LoadMemAddr, addr: 0x1000, mask: !0xfff };
        assert!(inj.matches_addr(0x1abc));
        assert!(!inj.matches_addr(0x2000));
        assert!(ErrInjection { mask: 0, ..inj }.matches_addr(u64::MAX));
    }

    fn any_op() -> impl Strategy<Value = EehOp> {
        let inj = (any::<bool>(), 0u32..20, any::<u64>(), any::<u64>()).prop_map(|(wide, func, addr, mask)| {
            EehOp::InjectErr(ErrInjection {
                kind: if wide { ErrType::Bus64 } else { ErrType::Bus32 },
                func: ErrFunc::from_raw(func).unwrap(),
                addr,
                mask,
            })
        });
        prop_oneof![proptest::sample::select(&EehOp::WITHOUT_ARGUMENTS[..]), inj]
    }

    proptest! {
        #[test]
        fn ops_round_trip_through_the_uapi_struct(op in any_op()) {
            let raw = uapi::VfioEehPeOp::from(op);
            prop_assert_eq!(raw.argsz, 40);
            prop_assert_eq!(raw.flags, 0);
            prop_assert_eq!(EehOp::try_from(&raw), Ok(op));
        }
    }
}
