//! `vfio-eeh-linux-conformance GROUP DEVICE`: the checks of
//! `tests/c/vfio_eeh_conformance.c` that this crate's API can make, made
//! through it on a real kernel, printed as the C program prints them (the
//! same `CHECK <name> <verdict> ret=<int> errno=<NAME|0> [value=<v>]` lines
//! and check names), so `vfio-conformance-compare` compares them with the C
//! oracle's answers check by check (`scripts/conformance/compare.sh`).
//!
//! Setup (container, group, device, region info, the ordering errors) runs
//! on the [`vfio`](vfio_eeh_linux::vfio) wrappers; the EEH sequence (every
//! `VFIO_EEH_PE_OP`, injection and recovery, config reads) runs through
//! [`VfioHost`], which takes the PE over as a VMM does. What the API cannot
//! express (raw argsz/flags values, BAR access, DMA, interrupts) is listed
//! with its reason in `tests/c/rust-backend-unexposed.txt`.
//!
//! Exit status: 0 when every check answered as real Linux is expected to,
//! 1 when some did not (the answers are data), 2 on usage errors.

use std::fmt::Display;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use vfio_eeh::addr::{PciAddr, PeId};
use vfio_eeh::backend::{BackendError, EehBackend, PeOpReply};
use vfio_eeh::ops::{EehOp, ErrFunc, ErrInjection, ErrType, PeState, ResetKind};
use vfio_eeh::uapi;
use vfio_eeh_linux::sys::Sys;
use vfio_eeh_linux::sysfs::Sysfs;
use vfio_eeh_linux::vfio::{Container, Group, GroupStatus, IommuType, VfioError};
use vfio_eeh_linux::VfioHost;

const DEV_VFIO: &str = "/dev/vfio";
/// How long a PE may stay unavailable after a reset (the C program's budget).
const STATE_POLL_BUDGET: u32 = 300;

/// The errno names the C program prints.
fn errno_name(errno: i32) -> String {
    let name = match errno {
        0 => "0",
        libc::EPERM => "EPERM",
        libc::ENOENT => "ENOENT",
        libc::ESRCH => "ESRCH",
        libc::EINTR => "EINTR",
        libc::EIO => "EIO",
        libc::ENXIO => "ENXIO",
        libc::E2BIG => "E2BIG",
        libc::EBADF => "EBADF",
        libc::EAGAIN => "EAGAIN",
        libc::ENOMEM => "ENOMEM",
        libc::EACCES => "EACCES",
        libc::EFAULT => "EFAULT",
        libc::EBUSY => "EBUSY",
        libc::EEXIST => "EEXIST",
        libc::ENODEV => "ENODEV",
        libc::ENOTDIR => "ENOTDIR",
        libc::EINVAL => "EINVAL",
        libc::ENOSPC => "ENOSPC",
        libc::ENOTTY => "ENOTTY",
        libc::ERANGE => "ERANGE",
        libc::ENOSYS => "ENOSYS",
        libc::EBADFD => "EBADFD",
        libc::EOPNOTSUPP => "EOPNOTSUPP",
        libc::ETIMEDOUT => "ETIMEDOUT",
        other => return format!("E{other}"),
    };
    name.to_owned()
}

/// What a check expects, as the C program's `struct want`.
#[derive(Clone, Copy)]
enum Want {
    Ret(i64),
    Ok,
    Err(i32),
    Info,
    /// Judged by the caller (reads and polls, whose value decides).
    Judged(bool),
}

/// One call's answer: the return value and errno (0 on success).
#[derive(Clone, Copy)]
struct Answer {
    ret: i64,
    errno: i32,
}

impl Answer {
    const fn ok(ret: i64) -> Self {
        Answer { ret, errno: 0 }
    }

    fn failed(errno: Option<i32>) -> Self {
        // A failure without an OS errno cannot be compared; EIO stands out.
        Answer { ret: -1, errno: errno.unwrap_or(libc::EIO) }
    }

    fn of_vfio<T>(result: &Result<T, VfioError>, ret: impl FnOnce(&T) -> i64) -> Self {
        match result {
            Ok(value) => Answer::ok(ret(value)),
            Err(e) => Answer::failed(e.errno()),
        }
    }

    fn of_backend<T>(result: &Result<T, BackendError>, ret: impl FnOnce(&T) -> i64) -> Self {
        match result {
            Ok(value) => Answer::ok(ret(value)),
            Err(e) => Answer::failed(Some(e.errno())),
        }
    }
}

/// The CHECK lines and the verdict counts.
#[derive(Default)]
struct Report {
    pass: u32,
    fail: u32,
    info: u32,
}

impl Report {
    fn emit(&mut self, name: &str, want: Want, answer: Answer, value: Option<&dyn Display>) {
        let Answer { ret, errno } = answer;
        let verdict = match want {
            Want::Ok if ret >= 0 => "pass",
            Want::Ret(v) if ret == v => "pass",
            Want::Err(e) if ret == -1 && errno == e => "pass",
            Want::Info => "info",
            Want::Judged(true) => "pass",
            _ => "fail",
        };
        match verdict {
            "pass" => self.pass += 1,
            "info" => self.info += 1,
            _ => self.fail += 1,
        }
        let value = value.map(|v| format!(" value={v}")).unwrap_or_default();
        println!("CHECK {name} {verdict} ret={ret} errno={}{value}", errno_name(errno));
    }

    fn summary(&self) {
        let checks = self.pass + self.fail + self.info;
        println!("SUMMARY checks={checks} pass={} fail={} info={} skip=0", self.pass, self.fail, self.info);
    }
}

/// `flags=0x..` of `VFIO_GROUP_GET_STATUS`.
fn status_flags(status: &GroupStatus) -> String {
    let viable = if status.viable { uapi::VFIO_GROUP_FLAGS_VIABLE } else { 0 };
    let container_set = if status.container_set { uapi::VFIO_GROUP_FLAGS_CONTAINER_SET } else { 0 };
    let flags = viable | container_set;
    format!("flags={flags:#x}")
}

/// The C program's extensions, in its order, with the names it prints.
const EXTENSIONS: [(&str, u32); 11] = [
    ("type1", uapi::VFIO_TYPE1_IOMMU),
    ("spapr_tce", uapi::VFIO_SPAPR_TCE_IOMMU),
    ("type1v2", uapi::VFIO_TYPE1V2_IOMMU),
    ("dma_cc", 4),
    ("vfio_eeh", uapi::VFIO_EEH),
    ("type1_nesting", 6),
    ("spapr_tce_v2", uapi::VFIO_SPAPR_TCE_V2_IOMMU),
    ("noiommu", 8),
    ("unmap_all", 9),
    ("update_vaddr", 10),
    ("unknown", 9999),
];

/// The `value=` of an EEH op check: the argument size and op code.
fn op_value(op: EehOp) -> String {
    format!("argsz={},op={}", uapi::VFIO_EEH_PE_OP_INJECT_SZ, op.code())
}

fn pe_op_answer(result: &Result<PeOpReply, BackendError>) -> Answer {
    Answer::of_backend(result, |reply| match reply {
        PeOpReply::State(state) => i64::from(state.raw()),
        PeOpReply::Done => 0,
    })
}

struct Checks {
    report: Report,
    group: PeId,
    device: PciAddr,
}

impl Checks {
    fn extensions(&mut self, prefix: &str, container: &Container<<Sys as vfio_eeh_linux::fd::VfioSystem>::Fd>) {
        for (name, extension) in EXTENSIONS {
            let want = match name {
                "vfio_eeh" => Want::Ret(1),
                "unknown" => Want::Ret(0),
                _ => Want::Info,
            };
            let answer = Answer::of_vfio(&container.check_extension(extension), |&on| i64::from(on));
            self.report.emit(&format!("{prefix}_{name}"), want, answer, Some(&answer.ret));
        }
    }

    /// Container, group and device setup with their ordering errors, on the
    /// wrappers; everything closes at the end.
    fn setup(&mut self) {
        let dev = Path::new(DEV_VFIO);
        let container_path = dev.join("vfio");
        let container = Container::open(&Sys, dev);
        let answer = Answer::of_vfio(&container, |_| 0);
        self.report.emit("open_container", Want::Ret(0), answer, Some(&container_path.display()));
        let group_path = dev.join(self.group.0.to_string());
        let group = Group::open(&Sys, dev, self.group);
        self.report.emit("open_group", Want::Ret(0), Answer::of_vfio(&group, |_| 0), Some(&group_path.display()));
        let (Ok(container), Ok(group)) = (container, group) else { return };

        let version = Answer::of_vfio(&container.api_version(), |&v| i64::from(v));
        self.report.emit("api_version", Want::Ret(i64::from(uapi::VFIO_API_VERSION)), version, Some(&version.ret));
        let status = group.status();
        let flags = status.as_ref().map(status_flags).unwrap_or_else(|_| "flags=0x0".to_owned());
        self.report.emit("group_status_viable", Want::Ok, Answer::of_vfio(&status, |_| 0), Some(&flags));
        self.extensions("check_ext", &container);

        let no_group = container.eeh_pe_op(EehOp::GetState);
        let answer = Answer::of_vfio(&no_group, |_| 0);
        self.report.emit("eeh_op_no_group", Want::Err(libc::EINVAL), answer, Some(&op_value(EehOp::GetState)));
        let answer = Answer::of_vfio(&container.set_iommu(IommuType::SpaprTceV2), |()| 0);
        self.report.emit("set_iommu_no_group", Want::Err(libc::EINVAL), answer, Some(&answer.ret));
        let answer = Answer::of_vfio(&group.detach(), |()| 0);
        self.report.emit("unset_container_not_set", Want::Err(libc::EINVAL), answer, None);
        let answer = Answer::of_vfio(&group.device(self.device), |d| i64::from(d.raw_fd()));
        self.report.emit("get_device_fd_not_attached", Want::Err(libc::EINVAL), answer, Some(&self.device));

        let answer = Answer::of_vfio(&group.attach(&container), |()| 0);
        self.report.emit("set_container", Want::Ok, answer, None);
        let status = group.status();
        let flags = status.as_ref().map(status_flags).unwrap_or_else(|_| "flags=0x0".to_owned());
        self.report.emit("group_status_container_set", Want::Ok, Answer::of_vfio(&status, |_| 0), Some(&flags));
        let answer = Answer::of_vfio(&group.attach(&container), |()| 0);
        self.report.emit("set_container_twice", Want::Err(libc::EINVAL), answer, None);
        let answer = Answer::of_vfio(&group.device(self.device), |d| i64::from(d.raw_fd()));
        self.report.emit("get_device_fd_no_iommu", Want::Err(libc::EINVAL), answer, Some(&self.device));

        let iommu = container.best_iommu();
        let set = iommu.as_ref().map_err(|_| ()).map(|&iommu| (iommu, container.set_iommu(iommu)));
        let answer = match &set {
            Ok((_, result)) => Answer::of_vfio(result, |()| 0),
            Err(()) => Answer::failed(None),
        };
        self.report.emit("set_iommu", Want::Ret(0), answer, Some(&answer.ret));
        if let Ok((iommu, _)) = set {
            let answer = Answer::of_vfio(&container.set_iommu(iommu), |()| 0);
            self.report.emit("set_iommu_twice", Want::Err(libc::EINVAL), answer, Some(&answer.ret));
        }
        self.extensions("iommu_check_ext", &container);

        let unknown: PciAddr = "0000:ff:1f.7".parse().expect("a valid address");
        let answer = Answer::of_vfio(&group.device(unknown), |d| i64::from(d.raw_fd()));
        self.report.emit("get_device_fd_unknown_name", Want::Err(libc::ENODEV), answer, Some(&unknown));
        let device = group.device(self.device);
        let answer = Answer::of_vfio(&device, |d| i64::from(d.raw_fd()));
        self.report.emit("get_device_fd", Want::Ok, answer, Some(&self.device));
        let Ok(device) = device else { return };

        let info = device.info();
        let value =
            info.as_ref().map(|i| format!("flags={:#x},regions={},irqs={}", i.flags, i.num_regions, i.num_irqs));
        self.report.emit(
            "device_get_info",
            Want::Ok,
            Answer::of_vfio(&info, |_| 0),
            value.as_ref().ok().map(|v| v as _),
        );
        for index in 0..info.map_or(0, |i| i.num_regions) {
            let region = device.region_info(index);
            let value = region
                .as_ref()
                .map(|r| format!("index={index},flags={:#x},size={:#x},offset={:#x}", r.flags, r.size, r.offset));
            // vfio-pci answers EINVAL for the VGA region of a device without VGA.
            let no_vga = index == uapi::VFIO_PCI_VGA_REGION_INDEX && region.as_ref().is_err();
            let want = if no_vga { Want::Info } else { Want::Ok };
            let answer = Answer::of_vfio(&region, |_| 0);
            self.report.emit(&format!("region_info_{index}"), want, answer, value.as_ref().ok().map(|v| v as _));
        }
        let answer = Answer::of_vfio(&device.reset(), |()| 0);
        self.report.emit("device_reset", Want::Info, answer, None);
    }

    /// One config read of `len` bytes at `offset` through the host, printed
    /// as the C program's `check_read` does.
    fn config_read(&mut self, host: &VfioHost, name: &str, offset: u64, len: usize, want_valid: Option<bool>) {
        let mut buf = [0u8; 8];
        let result = host.config_read(self.device, offset, &mut buf[..len]);
        let len_ret = i64::try_from(len).expect("at most 8");
        let answer = Answer::of_backend(&result, |()| len_ret);
        let word = buf[..len].iter().rev().fold(0u64, |w, &b| w << 8 | u64::from(b));
        let ones = u64::MAX >> (64 - 8 * len);
        let want = match want_valid {
            None => Want::Info,
            Some(valid) => Want::Judged(answer.ret == len_ret && (word != ones) == valid),
        };
        self.report.emit(name, want, answer, Some(&format!("{word:#0width$x}", width = 2 + 2 * len)));
    }

    fn pe_op(&mut self, host: &VfioHost, name: &str, op: EehOp, want: Want) -> Answer {
        let answer = pe_op_answer(&host.pe_op(self.group, op));
        self.report.emit(name, want, answer, Some(&op_value(op)));
        answer
    }

    /// GET_STATE until the PE is no longer unavailable.
    fn state_poll(&mut self, host: &VfioHost, name: &str) {
        let mut polls = 0;
        let answer = loop {
            let answer = pe_op_answer(&host.pe_op(self.group, EehOp::GetState));
            polls += 1;
            if answer.ret != i64::from(PeState::Unavailable.raw()) || polls >= STATE_POLL_BUDGET {
                break answer;
            }
            std::thread::sleep(Duration::from_secs(1));
        };
        if answer.ret == i64::from(PeState::Reset.raw()) {
            std::thread::sleep(Duration::from_secs(1));
        }
        let settled = answer.ret >= 0 && answer.ret != i64::from(PeState::Unavailable.raw());
        let value = format!("state={},polls={polls}", answer.ret);
        self.report.emit(name, Want::Judged(settled), answer, Some(&value));
    }

    /// An injection and the documented recovery, named `eeh_<prefix>_*`.
    fn inject_and_recover(&mut self, host: &VfioHost, prefix: &str, func: ErrFunc) {
        let injection = ErrInjection { kind: ErrType::Bus32, func, addr: 0, mask: 0 };
        let injected = self.pe_op(host, &format!("eeh_{prefix}_inject"), EehOp::InjectErr(injection), Want::Ret(0));
        if injected.ret == 0 {
            let stopped = Want::Ret(i64::from(PeState::Stopped.raw()));
            self.pe_op(host, &format!("eeh_{prefix}_state_frozen"), EehOp::GetState, stopped);
            self.config_read(host, &format!("eeh_{prefix}_frozen_config_read"), 0, 4, Some(false));
        }
        self.pe_op(host, &format!("eeh_{prefix}_unfreeze_io"), EehOp::UnfreezeIo, Want::Ret(0));
        self.pe_op(host, &format!("eeh_{prefix}_reset_hot"), EehOp::Reset(ResetKind::Hot), Want::Ret(0));
        self.state_poll(host, &format!("eeh_{prefix}_state_poll"));
        self.pe_op(host, &format!("eeh_{prefix}_reset_deactivate"), EehOp::ResetDeactivate, Want::Ret(0));
        self.pe_op(host, &format!("eeh_{prefix}_configure"), EehOp::Configure, Want::Ret(0));
        let normal = Want::Ret(i64::from(PeState::Normal.raw()));
        self.pe_op(host, &format!("eeh_{prefix}_state_recovered"), EehOp::GetState, normal);
        self.config_read(host, &format!("eeh_{prefix}_recovered_config_read"), 0, 4, Some(true));
    }

    /// Every `VFIO_EEH_PE_OP` through [`VfioHost`], with config reads.
    fn eeh(&mut self, host: &VfioHost) {
        let normal = Want::Ret(i64::from(PeState::Normal.raw()));
        self.pe_op(host, "eeh_enable", EehOp::Enable, Want::Ret(0));
        self.pe_op(host, "eeh_get_state_initial", EehOp::GetState, normal);
        self.config_read(host, "eeh_normal_config_read", 0, 4, Some(true));
        for len in [1, 2, 4, 8] {
            self.config_read(host, &format!("config_read_width_{len}"), 0, len, None);
        }
        self.config_read(host, "config_read_unaligned_2_at_1", 1, 2, None);
        self.config_read(host, "config_read_unaligned_4_at_2", 2, 4, None);
        self.pe_op(host, "eeh_get_state_after_arg_checks", EehOp::GetState, normal);
        self.inject_and_recover(host, "ld_mem", ErrFunc::LoadMemAddr);
        self.inject_and_recover(host, "ld_cfg", ErrFunc::LoadConfigAddr);
        self.pe_op(host, "eeh_unfreeze_dma", EehOp::UnfreezeDma, Want::Ret(0));
        self.pe_op(host, "eeh_disable", EehOp::Disable, Want::Ret(0));
    }

    /// A second container beside the host's: it has no group.
    fn spare_container(&mut self) {
        let dev = Path::new(DEV_VFIO);
        let spare = Container::open(&Sys, dev);
        let path = dev.join("vfio");
        self.report.emit("open_spare_container", Want::Ret(0), Answer::of_vfio(&spare, |_| 0), Some(&path.display()));
        let Ok(spare) = spare else { return };
        let answer = Answer::of_vfio(&spare.check_extension(uapi::VFIO_EEH), |&on| i64::from(on));
        self.report.emit("spare_check_ext_vfio_eeh", Want::Info, answer, Some(&answer.ret));
        let answer = Answer::of_vfio(&spare.eeh_pe_op(EehOp::GetState), |_| 0);
        let value = op_value(EehOp::GetState);
        self.report.emit("eeh_op_container_without_group", Want::Err(libc::EINVAL), answer, Some(&value));
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let parsed = match args.as_slice() {
        [group, device] => group.parse::<u32>().ok().zip(device.parse::<PciAddr>().ok()),
        _ => None,
    };
    let Some((group, device)) = parsed else {
        eprintln!("usage: vfio-eeh-linux-conformance <iommu-group-number> <device-address>");
        return ExitCode::from(2);
    };
    let mut checks = Checks { report: Report::default(), group: PeId(group), device };
    checks.setup();
    let host = VfioHost::new(Sysfs::default(), DEV_VFIO);
    checks.eeh(&host);
    checks.spare_container();
    drop(host);
    checks.report.summary();
    if checks.report.fail == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
