//! The VFIO layer on a recording fake kernel: the exact request numbers
//! (generic and powerpc encodings) and argument bytes every operation hands
//! to `ioctl(2)`, the takeover sequence, errno mapping and capability
//! detection.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use vfio_eeh::addr::PeId;
use vfio_eeh::backend::{BackendError, EehBackend, Errno, PeOpReply};
use vfio_eeh::ops::{EehOp, ErrFunc, ErrInjection, ErrType, PeState, ResetKind};
use vfio_eeh::uapi::{self, Encoding, VfioIoctl};
use vfio_eeh_linux::fd::{IoctlArg, IoctlCall, NewFdCall, VfioFd, VfioSystem};
use vfio_eeh_linux::sysfs::Sysfs;
use vfio_eeh_linux::vfio::{Container, Group, IommuType, VfioError};
use vfio_eeh_linux::VfioHost;

/// One call the fake kernel saw.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Call {
    Open(PathBuf),
    Ioctl { fd: i32, request: u32, arg: Arg },
    Read { fd: i32, offset: u64, len: usize },
    Write { fd: i32, offset: u64, bytes: Vec<u8> },
}

/// An ioctl argument as passed (pointer arguments: the bytes before the call).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Arg {
    Value(u64),
    In(Vec<u8>),
    InOut(Vec<u8>),
}

const CONFIG_OFFSET: u64 = 7 << 40;
const CONFIG_SIZE: u64 = 256;

/// What the fake kernel answers, and what it saw.
struct Kernel {
    encoding: Encoding,
    calls: Vec<Call>,
    next_fd: i32,
    missing: BTreeSet<PathBuf>,
    denied: BTreeSet<PathBuf>,
    extensions: BTreeSet<u32>,
    viable: bool,
    pe_state: i32,
    failures: BTreeMap<u32, i32>,
    config: Vec<u8>,
}

#[derive(Clone)]
struct FakeSys(Arc<Mutex<Kernel>>);

struct FakeFd {
    fd: i32,
    kernel: Arc<Mutex<Kernel>>,
}

impl FakeSys {
    /// A POWER host with EEH: sPAPR TCE v2 and `VFIO_EEH`, every group viable.
    fn power(encoding: Encoding) -> Self {
        let mut config = vec![0; 256];
        config[..4].copy_from_slice(&[0xb3, 0x15, 0x13, 0x10]);
        FakeSys(Arc::new(Mutex::new(Kernel {
            encoding,
            calls: Vec::new(),
            next_fd: 3,
            missing: BTreeSet::new(),
            denied: BTreeSet::new(),
            extensions: [uapi::VFIO_SPAPR_TCE_V2_IOMMU, uapi::VFIO_SPAPR_TCE_IOMMU, uapi::VFIO_EEH].into(),
            viable: true,
            pe_state: 0,
            failures: BTreeMap::new(),
            config,
        })))
    }

    fn with(self, change: impl FnOnce(&mut Kernel)) -> Self {
        change(&mut self.0.lock().unwrap());
        self
    }

    fn calls(&self) -> Vec<Call> {
        self.0.lock().unwrap().calls.clone()
    }

    fn ioctls(&self) -> Vec<(u32, Arg)> {
        self.calls()
            .into_iter()
            .filter_map(|c| match c {
                Call::Ioctl { request, arg, .. } => Some((request, arg)),
                _ => None,
            })
            .collect()
    }
}

impl VfioSystem for FakeSys {
    type Fd = FakeFd;

    fn open(&self, path: &Path) -> io::Result<FakeFd> {
        let mut k = self.0.lock().unwrap();
        k.calls.push(Call::Open(path.to_owned()));
        if k.missing.iter().any(|m| path.starts_with(m)) {
            return Err(io::Error::from_raw_os_error(libc::ENOENT));
        }
        if k.denied.contains(path) {
            return Err(io::Error::from_raw_os_error(libc::EACCES));
        }
        k.next_fd += 1;
        Ok(FakeFd { fd: k.next_fd - 1, kernel: Arc::clone(&self.0) })
    }

    fn encoding(&self) -> Encoding {
        self.0.lock().unwrap().encoding
    }
}

impl VfioFd for FakeFd {
    fn raw(&self) -> i32 {
        self.fd
    }

    fn ioctl(&self, call: IoctlCall<'_>) -> io::Result<i32> {
        let (request, arg) = call.into_parts();
        let mut k = self.kernel.lock().unwrap();
        let encoding = k.encoding;
        let is = |ioctl: VfioIoctl| request == ioctl.number(encoding);
        let recorded = match &arg {
            IoctlArg::Value(v) => Arg::Value(*v),
            IoctlArg::In(bytes) => Arg::In(bytes.to_vec()),
            IoctlArg::InOut(bytes) => Arg::InOut(bytes.to_vec()),
        };
        k.calls.push(Call::Ioctl { fd: self.fd, request, arg: recorded });
        if let Some(&errno) = k.failures.get(&request) {
            return Err(io::Error::from_raw_os_error(errno));
        }
        let ret = match arg {
            IoctlArg::Value(v) if is(uapi::CHECK_EXTENSION) => {
                i32::from(u32::try_from(v).is_ok_and(|ext| k.extensions.contains(&ext)))
            }
            IoctlArg::InOut(bytes) if is(uapi::GROUP_GET_STATUS) => {
                bytes[4] = if k.viable { 1 } else { 0 };
                0
            }
            IoctlArg::InOut(bytes) if is(uapi::DEVICE_GET_INFO) => {
                bytes[4..16].copy_from_slice(&[3, 0, 0, 0, 9, 0, 0, 0, 5, 0, 0, 0]);
                0
            }
            IoctlArg::InOut(bytes) if is(uapi::DEVICE_GET_REGION_INFO) => {
                bytes[4] = 3; // read | write
                bytes[16..24].copy_from_slice(&CONFIG_SIZE.to_ne_bytes());
                bytes[24..32].copy_from_slice(&CONFIG_OFFSET.to_ne_bytes());
                0
            }
            IoctlArg::In(bytes) if is(uapi::EEH_PE_OP) && bytes[8] == 4 => k.pe_state,
            IoctlArg::In(_) if is(uapi::GROUP_GET_DEVICE_FD) => {
                k.next_fd += 1;
                k.next_fd - 1
            }
            _ => 0,
        };
        Ok(ret)
    }

    fn ioctl_fd(&self, call: NewFdCall<'_>) -> io::Result<FakeFd> {
        let fd = self.ioctl(call.into_call())?;
        Ok(FakeFd { fd, kernel: Arc::clone(&self.kernel) })
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let mut k = self.kernel.lock().unwrap();
        k.calls.push(Call::Read { fd: self.fd, offset, len: buf.len() });
        let at = usize::try_from(offset - CONFIG_OFFSET).unwrap();
        buf.copy_from_slice(&k.config[at..at + buf.len()]);
        Ok(buf.len())
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<usize> {
        let mut k = self.kernel.lock().unwrap();
        k.calls.push(Call::Write { fd: self.fd, offset, bytes: buf.to_vec() });
        let at = usize::try_from(offset - CONFIG_OFFSET).unwrap();
        k.config[at..at + buf.len()].copy_from_slice(buf);
        Ok(buf.len())
    }
}

fn powernv() -> Sysfs {
    Sysfs::new(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/powernv"))
}

fn host(sys: &FakeSys) -> VfioHost<FakeSys> {
    VfioHost::with_system(sys.clone(), powernv(), "/dev/vfio")
}

/// Bytes from hex pairs, whitespace ignored.
fn hex(text: &str) -> Vec<u8> {
    let digits: String = text.split_whitespace().collect();
    (0..digits.len()).step_by(2).map(|i| u8::from_str_radix(&digits[i..i + 2], 16).unwrap()).collect()
}

const INJECTION: ErrInjection =
    ErrInjection { kind: ErrType::Bus64, func: ErrFunc::LoadConfigAddr, addr: 0x1234_5678_9abc, mask: !0xfff };

/// Every EEH op with the 40 bytes of its `struct vfio_eeh_pe_op` (x86_64 and
/// ppc64le are both little-endian).
fn pinned_ops() -> Vec<(EehOp, Vec<u8>)> {
    let plain = |op: &str| hex(&format!("28000000 00000000 {op}000000 00000000 {}", "00".repeat(24)));
    vec![
        (EehOp::Disable, plain("00")),
        (EehOp::Enable, plain("01")),
        (EehOp::UnfreezeIo, plain("02")),
        (EehOp::UnfreezeDma, plain("03")),
        (EehOp::GetState, plain("04")),
        (EehOp::ResetDeactivate, plain("05")),
        (EehOp::Reset(ResetKind::Hot), plain("06")),
        (EehOp::Reset(ResetKind::Fundamental), plain("07")),
        (EehOp::Configure, plain("08")),
        (
            EehOp::InjectErr(INJECTION),
            hex("28000000 00000000 09000000 00000000  01000000 04000000 bc9a785634120000 00f0ffffffffffff"),
        ),
    ]
}

#[cfg(target_endian = "little")]
#[test]
fn every_eeh_op_passes_pinned_bytes_and_request_number_in_both_encodings() {
    for (encoding, request) in [(Encoding::GENERIC, 0x0000_3b79), (Encoding::POWERPC, 0x2000_3b79)] {
        let sys = FakeSys::power(encoding);
        let host = host(&sys);
        for (op, bytes) in pinned_ops() {
            host.pe_op(PeId(1), op).unwrap();
            let (last_request, last_arg) = sys.ioctls().pop().unwrap();
            assert_eq!(last_request, request, "{op:?} under {encoding:?}");
            assert_eq!(last_arg, Arg::In(bytes), "{op:?}");
        }
    }
    assert_eq!(uapi::EEH_PE_OP.native(), if cfg!(target_arch = "powerpc64") { 0x2000_3b79 } else { 0x3b79 });
}

#[cfg(target_endian = "little")]
#[test]
fn taking_a_pe_over_issues_the_vfio_sequence_once() {
    let sys = FakeSys::power(Encoding::POWERPC);
    let host = host(&sys);
    assert_eq!(host.pe_op(PeId(1), EehOp::Enable), Ok(PeOpReply::Done));
    let region_info = |fd| Call::Ioctl {
        fd,
        request: 0x2000_3b6c,
        arg: Arg::InOut(hex("20000000 00000000 07000000 00000000 0000000000000000 0000000000000000")),
    };
    let ioctl = |fd, request, arg| Call::Ioctl { fd, request, arg };
    assert_eq!(
        sys.calls(),
        [
            Call::Open("/dev/vfio/vfio".into()),
            ioctl(3, 0x2000_3b64, Arg::Value(0)), // GET_API_VERSION
            Call::Open("/dev/vfio/1".into()),
            ioctl(4, 0x2000_3b67, Arg::InOut(hex("08000000 00000000"))), // GROUP_GET_STATUS
            ioctl(4, 0x2000_3b68, Arg::In(hex("03000000"))),             // GROUP_SET_CONTAINER(fd 3)
            ioctl(3, 0x2000_3b65, Arg::Value(7)),                        // CHECK_EXTENSION(sPAPR TCE v2)
            ioctl(3, 0x2000_3b66, Arg::Value(7)),                        // SET_IOMMU(sPAPR TCE v2)
            ioctl(3, 0x2000_3b65, Arg::Value(5)),                        // CHECK_EXTENSION(VFIO_EEH)
            ioctl(4, 0x2000_3b6a, Arg::In(b"0000:01:00.0\0".to_vec())),  // GROUP_GET_DEVICE_FD
            region_info(5),
            ioctl(4, 0x2000_3b6a, Arg::In(b"0000:01:00.1\0".to_vec())),
            region_info(6),
            ioctl(3, 0x2000_3b79, Arg::In(pinned_ops()[1].1.clone())), // EEH_PE_OP(ENABLE)
        ]
    );
    host.pe_op(PeId(1), EehOp::Configure).unwrap();
    assert_eq!(sys.calls().len(), 14, "the second op reuses the files");
}

#[test]
fn get_state_answers_with_the_ioctl_return_value() {
    let sys = FakeSys::power(Encoding::GENERIC).with(|k| k.pe_state = 2);
    let host = host(&sys);
    assert_eq!(host.pe_op(PeId(2), EehOp::GetState), Ok(PeOpReply::State(PeState::Stopped)));
    sys.0.lock().unwrap().pe_state = 5;
    assert_eq!(host.status(PeId(2)).unwrap().state, PeState::Unavailable);
    sys.0.lock().unwrap().pe_state = 3;
    let Err(BackendError::Io(what)) = host.pe_op(PeId(2), EehOp::GetState) else { panic!("state 3 accepted") };
    assert_eq!(what, "VFIO_EEH_PE_OP on /dev/vfio/vfio failed: Unknown PE state 3");
}

#[test]
fn kernel_errors_keep_their_errno() {
    let request = uapi::EEH_PE_OP.number(Encoding::GENERIC);
    let sys = FakeSys::power(Encoding::GENERIC).with(|k| {
        k.failures.insert(request, libc::ENODEV);
    });
    let host = host(&sys);
    let err = host.reset(PeId(3), ResetKind::Hot).unwrap_err();
    assert_eq!(err.errno(), libc::ENODEV);
    assert_eq!(
        err,
        BackendError::Os { what: "VFIO_EEH_PE_OP on /dev/vfio/vfio failed".into(), source: Errno(libc::ENODEV) }
    );
    assert_eq!(vfio_eeh::error_chain(&err), "VFIO_EEH_PE_OP on /dev/vfio/vfio failed: No such device (os error 19)");
    assert_eq!(host.pe_op(PeId(9), EehOp::Enable), Err(BackendError::NoPe(PeId(9))));
}

#[test]
fn capability_detection_says_why_eeh_is_unavailable() {
    let why = |sys: FakeSys| host(&sys).eeh_support().map_err(|e| e.to_string());
    assert_eq!(why(FakeSys::power(Encoding::GENERIC)), Ok(()));
    assert_eq!(
        why(FakeSys::power(Encoding::GENERIC).with(|k| {
            k.missing.insert("/dev/vfio".into());
        })),
        Err("/dev/vfio/vfio does not exist: the vfio module is not loaded, or this host has no VFIO".into())
    );
    let denied = FakeSys::power(Encoding::GENERIC).with(|k| {
        k.denied.insert("/dev/vfio/vfio".into());
    });
    let err = host(&denied).eeh_support().unwrap_err();
    assert_eq!((err.to_string(), err.errno()), ("Cannot open /dev/vfio/vfio".into(), Some(libc::EACCES)));
    let x86 = FakeSys::power(Encoding::GENERIC).with(|k| k.extensions = [uapi::VFIO_TYPE1V2_IOMMU].into());
    assert_eq!(
        why(x86.clone()),
        Err("/dev/vfio/vfio does not offer the VFIO_EEH extension: the host has no EEH (only POWER hosts do)".into())
    );
    let Err(BackendError::NotSupported(what)) = host(&x86).enable(PeId(1)) else { panic!("EEH on x86") };
    assert!(what.contains("VFIO_EEH"), "{what}");

    let not_viable = FakeSys::power(Encoding::GENERIC).with(|k| k.viable = false);
    let host = host(&not_viable);
    assert_eq!(
        host.group_support(PeId(2)).unwrap_err().to_string(),
        "IOMMU group 2 is not viable: not every device of it is bound to vfio-pci"
    );
    assert!(matches!(host.enable(PeId(2)), Err(BackendError::PermissionDenied(_))));
    let set_container = uapi::GROUP_SET_CONTAINER.number(Encoding::GENERIC);
    assert!(not_viable.ioctls().iter().all(|(request, _)| *request != set_container));
    let missing_group = FakeSys::power(Encoding::GENERIC).with(|k| {
        k.missing.insert("/dev/vfio/3".into());
    });
    assert_eq!(
        VfioHost::with_system(missing_group, powernv(), "/dev/vfio").group_support(PeId(3)).unwrap_err().to_string(),
        "/dev/vfio/3 does not exist: no device of this IOMMU group is bound to vfio-pci"
    );
}

#[cfg(target_endian = "little")]
#[test]
fn container_group_and_device_wrappers_pass_pinned_arguments() {
    let sys = FakeSys::power(Encoding::GENERIC).with(|k| k.extensions = [uapi::VFIO_TYPE1V2_IOMMU].into());
    let dev = Path::new("/dev/vfio");
    let container = Container::open(&sys, dev).unwrap();
    assert_eq!(container.api_version().unwrap(), 0);
    assert_eq!(container.best_iommu().unwrap(), IommuType::Type1V2);
    container.set_iommu(IommuType::Type1).unwrap();
    let group = Group::open(&sys, dev, PeId(1)).unwrap();
    assert!(group.status().unwrap().viable);
    group.attach(&container).unwrap();
    let device = group.device("0000:01:00.0".parse().unwrap()).unwrap();
    let info = device.info().unwrap();
    assert_eq!(
        (info.flags, info.num_regions, info.num_irqs),
        (uapi::VFIO_DEVICE_FLAGS_RESET | uapi::VFIO_DEVICE_FLAGS_PCI, 9, 5)
    );
    assert_eq!(device.config_read_u16(0).unwrap(), 0x15b3);
    assert_eq!(device.config_read_u32(0).unwrap(), 0x1013_15b3);
    device.config_write(4, &[0x06, 0x04]).unwrap();
    assert_eq!(device.config_read_u16(4).unwrap(), 0x0406);
    device.reset().unwrap();
    group.detach().unwrap();
    let err = device.config_read_u32(254).unwrap_err();
    assert!(matches!(err, VfioError::ConfigRange { offset: 254, len: 4, size: 256, .. }), "{err}");
    assert_eq!(
        err.to_string(),
        "Config access of 4 bytes at 0xfe is outside the 256-byte config region of /dev/vfio/1 device 0000:01:00.0"
    );

    let calls = sys.calls();
    let tail: Vec<&Call> = calls.iter().rev().take(10).rev().collect();
    let ioctl = |fd, request, arg| Call::Ioctl { fd, request, arg };
    let expected = [
        ioctl(5, 0x3b6b, Arg::InOut(hex("14000000 00000000 00000000 00000000 00000000"))), // DEVICE_GET_INFO
        Call::Read { fd: 5, offset: CONFIG_OFFSET, len: 2 },
        Call::Read { fd: 5, offset: CONFIG_OFFSET, len: 4 },
        Call::Write { fd: 5, offset: CONFIG_OFFSET + 4, bytes: vec![0x06, 0x04] },
        Call::Read { fd: 5, offset: CONFIG_OFFSET + 4, len: 2 },
        ioctl(5, 0x3b6f, Arg::Value(0)), // DEVICE_RESET
        ioctl(4, 0x3b69, Arg::Value(0)), // GROUP_UNSET_CONTAINER
    ];
    assert_eq!(tail[3..], expected.iter().collect::<Vec<_>>()[..]);
    assert!(calls.contains(&ioctl(3, 0x3b66, Arg::Value(1))), "SET_IOMMU(type1)");
}
