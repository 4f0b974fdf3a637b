//! The one seam between the front ends (RTAS, VFIO emulation, the CLI) and a
//! host: [`EehBackend`]. The simulator and the Linux backend implement it.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::addr::{PciAddr, PeId};
use crate::ops::{EehOp, ErrInjection, PeState, ResetKind};

/// The errno values the backends answer with (Linux's numbers, the same on
/// every architecture this project targets).
pub mod errno {
    /// Operation not permitted.
    pub const EPERM: i32 = 1;
    /// No such file or directory.
    pub const ENOENT: i32 = 2;
    /// I/O error.
    pub const EIO: i32 = 5;
    /// No such device or address.
    pub const ENXIO: i32 = 6;
    /// Bad file descriptor.
    pub const EBADF: i32 = 9;
    /// Permission denied.
    pub const EACCES: i32 = 13;
    /// Bad address.
    pub const EFAULT: i32 = 14;
    /// Device or resource busy.
    pub const EBUSY: i32 = 16;
    /// File exists.
    pub const EEXIST: i32 = 17;
    /// No such device.
    pub const ENODEV: i32 = 19;
    /// Invalid argument.
    pub const EINVAL: i32 = 22;
    /// Inappropriate ioctl for device.
    pub const ENOTTY: i32 = 25;
    /// Result out of range.
    pub const ERANGE: i32 = 34;
    /// Operation not supported.
    pub const EOPNOTSUPP: i32 = 95;
}

/// An OS error number as an error: what a host's kernel answered. Its
/// message is the OS's ("No such device (os error 19)").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Errno(pub i32);

impl std::fmt::Display for Errno {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::io::Error::from_raw_os_error(self.0).fmt(f)
    }
}

impl std::error::Error for Errno {}

impl From<Errno> for std::io::Error {
    fn from(errno: Errno) -> Self {
        std::io::Error::from_raw_os_error(errno.0)
    }
}

/// Why a host refused or failed an EEH operation. Each maps to the errno the
/// Linux kernel gives for it.
///
/// [`NoDevice`](BackendError::NoDevice) and [`NoPe`](BackendError::NoPe) say
/// an address names nothing on the host; the others that the host could not
/// carry the operation out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "error")]
pub enum BackendError {
    /// The host has no such device.
    #[error("No PCI device {0} on this host")]
    NoDevice(PciAddr),
    /// The host has no such PE (IOMMU group).
    #[error("No PE {0} on this host")]
    NoPe(PeId),
    /// The operation's arguments are invalid.
    #[error("Invalid argument: {0}")]
    InvalidArgument(String),
    /// An injection type or function the host cannot inject.
    #[error("Out of range: {0}")]
    OutOfRange(String),
    /// EEH is not enabled on the PE.
    #[error("EEH is not enabled on PE {0}")]
    NotEnabled(PeId),
    /// The PE has failed permanently and is no longer usable.
    #[error("PE {0} has failed permanently")]
    PermanentlyFailed(PeId),
    /// The host does not offer this operation.
    #[error("Not supported: {0}")]
    NotSupported(String),
    /// Permission denied.
    #[error("Permission denied: {0}")]
    PermissionDenied(String),
    /// The host failed the operation.
    #[error("Host I/O error: {0}")]
    Io(String),
    /// An OS error, as a real host reports it.
    #[error("{what}")]
    Os {
        /// What failed.
        what: String,
        /// The errno the OS answered.
        #[serde(rename = "errno")]
        #[source]
        source: Errno,
    },
}

impl BackendError {
    /// The errno Linux answers for this error.
    pub fn errno(&self) -> i32 {
        match self {
            BackendError::NoDevice(_) | BackendError::NoPe(_) => errno::ENODEV,
            BackendError::InvalidArgument(_) => errno::EINVAL,
            BackendError::OutOfRange(_) => errno::ERANGE,
            BackendError::NotEnabled(_) | BackendError::PermanentlyFailed(_) | BackendError::Io(_) => errno::EIO,
            BackendError::NotSupported(_) => errno::ENOTTY,
            BackendError::PermissionDenied(_) => errno::EPERM,
            BackendError::Os { source, .. } => source.0,
        }
    }
}

/// A PE's state with what the guest needs to wait for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeStatus {
    /// The VFIO / PAPR state.
    pub state: PeState,
    /// While [`PeState::Unavailable`]: how long until the PE is usable again,
    /// if the host knows; `Some(ZERO)` means permanently unavailable.
    pub unavailable_for: Option<Duration>,
}

impl PeStatus {
    /// A status with no delay information.
    pub const fn of(state: PeState) -> Self {
        PeStatus { state, unavailable_for: None }
    }
}

/// What a successful [`EehBackend::pe_op`] returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PeOpReply {
    /// The operation was carried out.
    Done,
    /// The state, for [`EehOp::GetState`].
    State(PeState),
}

impl PeOpReply {
    /// The value `VFIO_EEH_PE_OP` returns: 0, or the state for `GET_STATE`.
    pub const fn ioctl_value(self) -> u32 {
        match self {
            PeOpReply::Done => 0,
            PeOpReply::State(state) => state.raw(),
        }
    }
}

/// A host that carries out EEH operations on its PEs.
///
/// One required primitive, [`pe_op`](EehBackend::pe_op), speaks the VFIO op
/// set; the typed helpers are built on it, and hosts that know more (the
/// remaining reset delay, an error log) override [`status`](EehBackend::status)
/// and [`error_log`](EehBackend::error_log).
pub trait EehBackend: Send + Sync {
    /// The PE (IOMMU group) that holds a host device.
    fn pe_of(&self, device: PciAddr) -> Result<PeId, BackendError>;

    /// The host devices of a PE, in address order.
    fn devices_of(&self, pe: PeId) -> Result<Vec<PciAddr>, BackendError>;

    /// Carries out one `VFIO_EEH_PE_*` operation on a PE.
    fn pe_op(&self, pe: PeId, op: EehOp) -> Result<PeOpReply, BackendError>;

    /// The PE's state, with the remaining delay where the host knows it.
    fn status(&self, pe: PeId) -> Result<PeStatus, BackendError> {
        match self.pe_op(pe, EehOp::GetState)? {
            PeOpReply::State(state) => Ok(PeStatus::of(state)),
            PeOpReply::Done => Err(BackendError::Io(format!("PE {pe}: get-state returned no state"))),
        }
    }

    /// The PE's error log (a PHB diag blob), handed out once; `None` when
    /// there is none.
    fn error_log(&self, pe: PeId) -> Result<Option<Vec<u8>>, BackendError> {
        self.devices_of(pe).map(|_| None)
    }

    /// Enables EEH on a PE (thawing it if frozen).
    fn enable(&self, pe: PeId) -> Result<(), BackendError> {
        self.pe_op(pe, EehOp::Enable).map(drop)
    }

    /// Asserts a reset on a PE.
    fn reset(&self, pe: PeId, kind: ResetKind) -> Result<(), BackendError> {
        self.pe_op(pe, EehOp::Reset(kind)).map(drop)
    }

    /// Injects an error into a PE.
    fn inject(&self, pe: PeId, injection: ErrInjection) -> Result<(), BackendError> {
        self.pe_op(pe, EehOp::InjectErr(injection)).map(drop)
    }
}

impl<T: EehBackend + ?Sized> EehBackend for std::sync::Arc<T> {
    fn pe_of(&self, device: PciAddr) -> Result<PeId, BackendError> {
        (**self).pe_of(device)
    }
    fn devices_of(&self, pe: PeId) -> Result<Vec<PciAddr>, BackendError> {
        (**self).devices_of(pe)
    }
    fn pe_op(&self, pe: PeId, op: EehOp) -> Result<PeOpReply, BackendError> {
        (**self).pe_op(pe, op)
    }
    fn status(&self, pe: PeId) -> Result<PeStatus, BackendError> {
        (**self).status(pe)
    }
    fn error_log(&self, pe: PeId) -> Result<Option<Vec<u8>>, BackendError> {
        (**self).error_log(pe)
    }
}
