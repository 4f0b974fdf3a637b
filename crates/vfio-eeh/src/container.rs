//! `VFIO_EEH_PE_OP` as the kernel serves it on a container, and the
//! upstream model built on it.
//!
//! [`serve_pe_op`] is the container side: it reads the caller's
//! `struct vfio_eeh_pe_op` bytes with Linux's checks and carries the op out on
//! the container's PE, answering what the ioctl returns (the state for
//! `GET_STATE`, else 0) or the errno. The emulated `/dev/vfio` serves it.
//!
//! [`ContainerPath`] is the VMM side of upstream's model, where the VMM
//! resolves guest addresses itself and reaches the host only through
//! `VFIO_EEH_PE_OP` on a container it owns: it implements [`EehBackend`] by
//! encoding every op into the ioctl structure and handing the bytes to the
//! container. What the ioctl cannot carry is lost on this path, as on a real
//! host: the remaining reset delay and the error log.

use std::collections::HashSet;

use zerocopy::IntoBytes;

use crate::addr::{PciAddr, PeId};
use crate::backend::{errno, BackendError, EehBackend, Errno, PeOpReply};
use crate::ops::EehOp;
use crate::uapi::{self, VfioEehPeOp};

/// Serves one `VFIO_EEH_PE_OP` ioctl whose argument is `arg` (the bytes the
/// caller's pointer reaches, at most 40) on the container holding `pe`.
///
/// Returns the ioctl's non-negative value or a positive errno, with Linux's
/// argument checks: fewer than 12 readable bytes is `EFAULT`; `argsz` < 12,
/// `flags` != 0 or an unknown op is `EINVAL`; an injection needs `argsz` ≥ 40.
pub fn serve_pe_op(backend: &dyn EehBackend, pe: PeId, arg: &[u8]) -> Result<u32, i32> {
    let mut raw = VfioEehPeOp::default();
    let copied = arg.len().min(std::mem::size_of::<VfioEehPeOp>());
    if copied < uapi::VFIO_EEH_PE_OP_MINSZ as usize {
        return Err(errno::EFAULT);
    }
    raw.as_mut_bytes()[..copied].copy_from_slice(&arg[..copied]);
    let injection_unreadable = raw.op == uapi::VFIO_EEH_PE_INJECT_ERR
        && raw.flags == 0
        && raw.argsz >= uapi::VFIO_EEH_PE_OP_INJECT_SZ
        && copied < uapi::VFIO_EEH_PE_OP_INJECT_SZ as usize;
    if injection_unreadable {
        return Err(errno::EFAULT);
    }
    let op = EehOp::try_from(&raw).map_err(|e| e.errno())?;
    backend.pe_op(pe, op).map(PeOpReply::ioctl_value).map_err(|e| e.errno())
}

/// Upstream's model, VMM side: every op goes through `VFIO_EEH_PE_OP` bytes
/// to the container of its PE, one container (holding one group) per PE.
pub struct ContainerPath<B> {
    host: B,
    pes: HashSet<PeId>,
}

impl<B: EehBackend> ContainerPath<B> {
    /// The VMM's containers on `host`, one for each of `pes`.
    pub fn new(host: B, pes: impl IntoIterator<Item = PeId>) -> Self {
        ContainerPath { host, pes: pes.into_iter().collect() }
    }

    fn check_pe(&self, pe: PeId) -> Result<(), BackendError> {
        if self.pes.contains(&pe) {
            Ok(())
        } else {
            Err(BackendError::NoPe(pe))
        }
    }
}

impl<B: EehBackend> EehBackend for ContainerPath<B> {
    fn pe_of(&self, device: PciAddr) -> Result<PeId, BackendError> {
        let pe = self.host.pe_of(device)?;
        self.check_pe(pe).map(|()| pe).map_err(|_| BackendError::NoDevice(device))
    }

    fn devices_of(&self, pe: PeId) -> Result<Vec<PciAddr>, BackendError> {
        self.check_pe(pe)?;
        self.host.devices_of(pe)
    }

    fn pe_op(&self, pe: PeId, op: EehOp) -> Result<PeOpReply, BackendError> {
        self.check_pe(pe)?;
        let raw = VfioEehPeOp::from(op);
        let value = serve_pe_op(&self.host, pe, raw.as_bytes()).map_err(|errno| BackendError::Os {
            what: format!("VFIO_EEH_PE_OP {}", op.name()),
            source: Errno(errno),
        })?;
        match op {
            EehOp::GetState => crate::ops::PeState::from_raw(value)
                .map(PeOpReply::State)
                .ok_or_else(|| BackendError::Io(format!("GET_STATE returned unknown state {value}"))),
            _ => Ok(PeOpReply::Done),
        }
    }
}
