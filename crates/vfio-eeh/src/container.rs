//! `VFIO_EEH_PE_OP` as the kernel serves it on a container, and the
//! upstream model built on it.
//!
//! [`serve_pe_op`] is the container side: it reads the caller's
//! `struct vfio_eeh_pe_op` bytes with Linux's checks ([`PeOpArg`], the one
//! parser of that structure) and carries the op out on the container's PE,
//! answering what the ioctl returns (the state for `GET_STATE`, else 0) or the
//! errno. The emulated `/dev/vfio` serves it.
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

/// A caller's `struct vfio_eeh_pe_op` as the kernel copies it in: the first
/// 12 bytes (`argsz`, `flags`, `op`), then the whole 40 only for an
/// injection that says it carries one (`op` = `INJECT_ERR`, `flags` = 0,
/// `argsz` ≥ 40).
///
/// This is the one reader of the structure: [`serve_pe_op`] serves it, and
/// an emulated container can log [`op`](PeOpArg::op) before serving.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeOpArg {
    raw: VfioEehPeOp,
    /// `Err(errno)` if the injection's 40 bytes could not be copied.
    payload: Result<(), i32>,
}

impl PeOpArg {
    /// Copies the argument in through `copy_from_user`, which fills its
    /// buffer from the start of the caller's structure or answers an errno
    /// (`EFAULT`). An unreadable header is that errno; an unreadable
    /// injection payload is answered when the op is served.
    pub fn copy_in(mut copy_from_user: impl FnMut(&mut [u8]) -> Result<(), i32>) -> Result<Self, i32> {
        const HEADER_LEN: usize = uapi::VFIO_EEH_PE_OP_MINSZ as usize;
        const { assert!(HEADER_LEN <= size_of::<VfioEehPeOp>()) };
        let mut header = [0_u8; HEADER_LEN];
        copy_from_user(&mut header)?;
        let mut raw = VfioEehPeOp::default();
        // The structure is at least as long as the header (asserted above),
        // so this copies all of it.
        raw.as_mut_bytes().iter_mut().zip(header).for_each(|(byte, from_user)| *byte = from_user);
        let carries_injection =
            raw.op == uapi::VFIO_EEH_PE_INJECT_ERR && raw.flags == 0 && raw.argsz >= uapi::VFIO_EEH_PE_OP_INJECT_SZ;
        let payload = if carries_injection { copy_from_user(raw.as_mut_bytes()) } else { Ok(()) };
        Ok(PeOpArg { raw, payload })
    }

    /// The argument from `arg`, the bytes the caller's pointer reaches:
    /// copying beyond them is `EFAULT`.
    pub fn from_bytes(arg: &[u8]) -> Result<Self, i32> {
        Self::copy_in(|buf| {
            let bytes = arg.get(..buf.len()).ok_or(errno::EFAULT)?;
            buf.copy_from_slice(bytes);
            Ok(())
        })
    }

    /// The `op` field, as the caller wrote it.
    pub const fn op(&self) -> u32 {
        self.raw.op
    }

    /// Carries the op out on the container holding `pe`: the ioctl's
    /// non-negative value or a positive errno, with Linux's argument checks
    /// (`argsz` < 12, `flags` != 0 or an unknown op is `EINVAL`; an injection
    /// needs `argsz` ≥ 40 and readable bytes up to its mask).
    pub fn serve(&self, backend: &dyn EehBackend, pe: PeId) -> Result<u32, i32> {
        self.payload?;
        let op = EehOp::try_from(&self.raw).map_err(|e| e.errno())?;
        backend.pe_op(pe, op).map(PeOpReply::ioctl_value).map_err(|e| e.errno())
    }
}

/// Serves one `VFIO_EEH_PE_OP` ioctl whose argument is `arg` (the bytes the
/// caller's pointer reaches) on the container holding `pe`.
///
/// Returns the ioctl's non-negative value or a positive errno, with Linux's
/// argument checks: fewer than 12 readable bytes is `EFAULT`; `argsz` < 12,
/// `flags` != 0 or an unknown op is `EINVAL`; an injection needs `argsz` ≥ 40
/// and 40 readable bytes. See [`PeOpArg`].
pub fn serve_pe_op(backend: &dyn EehBackend, pe: PeId, arg: &[u8]) -> Result<u32, i32> {
    PeOpArg::from_bytes(arg)?.serve(backend, pe)
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

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::ops::{ErrFunc, ErrInjection, ErrType, PeState};

    /// A host whose one PE answers every op, remembering the ops.
    #[derive(Default)]
    struct Recorder(Mutex<Vec<EehOp>>);

    impl EehBackend for Recorder {
        fn pe_of(&self, device: PciAddr) -> Result<PeId, BackendError> {
            Err(BackendError::NoDevice(device))
        }

        fn devices_of(&self, _pe: PeId) -> Result<Vec<PciAddr>, BackendError> {
            Ok(Vec::new())
        }

        fn pe_op(&self, _pe: PeId, op: EehOp) -> Result<PeOpReply, BackendError> {
            self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(op);
            Ok(match op {
                EehOp::GetState => PeOpReply::State(PeState::Normal),
                _ => PeOpReply::Done,
            })
        }
    }

    fn injection() -> VfioEehPeOp {
        let inj = ErrInjection { kind: ErrType::Bus64, func: ErrFunc::LoadConfigAddr, addr: 0x1000, mask: !0 };
        VfioEehPeOp::from(EehOp::InjectErr(inj))
    }

    #[test]
    fn reads_the_header_then_the_payload_only_for_an_injection() {
        let host = Recorder::default();
        let state = VfioEehPeOp::from(EehOp::GetState);
        let header = &state.as_bytes()[..12];
        let arg = PeOpArg::from_bytes(header).unwrap();
        assert_eq!(arg.op(), uapi::VFIO_EEH_PE_GET_STATE);
        assert_eq!(arg.serve(&host, PeId(0)), Ok(PeState::Normal.raw()));
        assert_eq!(PeOpArg::from_bytes(&header[..11]), Err(errno::EFAULT), "the header is unreadable");

        let inject = injection();
        let mut copies = Vec::new();
        let arg = PeOpArg::copy_in(|buf| {
            copies.push(buf.len());
            buf.copy_from_slice(&inject.as_bytes()[..buf.len()]);
            Ok(())
        })
        .unwrap();
        assert_eq!(copies, [12, 40], "the header, then the whole structure");
        assert_eq!(arg.serve(&host, PeId(0)), Ok(0));
        assert!(matches!(host.0.lock().unwrap()[..], [EehOp::GetState, EehOp::InjectErr(_)]));
    }

    #[test]
    fn an_unreadable_injection_keeps_its_op_and_fails_when_served() {
        let host = Recorder::default();
        let inject = injection();
        let arg = PeOpArg::from_bytes(&inject.as_bytes()[..20]).unwrap();
        assert_eq!(arg.op(), uapi::VFIO_EEH_PE_INJECT_ERR, "the op is known for the log");
        assert_eq!(arg.serve(&host, PeId(0)), Err(errno::EFAULT));
        assert_eq!(serve_pe_op(&host, PeId(0), &inject.as_bytes()[..20]), Err(errno::EFAULT));

        // With flags set the kernel reads no payload and refuses the flags.
        let flagged = VfioEehPeOp { flags: 1, ..inject };
        assert_eq!(serve_pe_op(&host, PeId(0), &flagged.as_bytes()[..12]), Err(errno::EINVAL));
        assert!(host.0.lock().unwrap().is_empty(), "nothing reached the host");
    }
}
