//! A tiny NVMe driver on the preload library's emulated `/dev/vfio`, in
//! both IOMMU modes: it maps "guest RAM" of its own (type1 `MAP_DMA`; sPAPR
//! TCE v2 registered memory, the default window and a DDW at 1<<59), gives
//! MSI-X eventfds with `SET_IRQS`, brings the controller up through BAR0
//! `pwrite`s and does I/O whose data and completions arrive in its memory
//! by DMA, with the eventfds firing. Then the PE freezes mid-I/O (the
//! doorbell is dropped, registers read all-ones), recovers through
//! `VFIO_EEH_PE_OP` resets with the controller needing a new bring-up and
//! the acknowledged data intact, and a DMA to an unmapped IOVA freezes the
//! PE as an IOMMU fault does on PowerNV, reaching no memory.
//!
//! The same driver runs again as a VMM of a real eehd
//! (`VFIO_EEH_SHIM_CONNECT`), whose controller model does its DMA into the
//! driver's memory through the mirror of the container's mappings and
//! whose interrupts come back to the driver's eventfds.
//!
//! Each test runs itself again as a child process under `LD_PRELOAD`, so
//! that its `open`, `ioctl`, `pread` and `pwrite` are the real libc calls
//! the library interposes.

mod common;
#[path = "common/eehd.rs"]
mod eehd;

use std::ffi::OsStr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use vfio_eeh::ops::{EehOp, ErrFunc, ErrInjection, ErrType, PeState, ResetKind};
use vfio_eeh::uapi::{self, VfioIoctl};
use zerocopy::{FromBytes, IntoBytes};

/// Set in the child that runs the driver.
const CHILD: &str = "VFIO_EEH_TEST_NVME_DRIVER_CHILD";
const DEVICE: &str = "0000:01:00.0";
/// Bytes of "guest RAM": queues in the first half, data in the second.
const RAM: usize = 4 << 20;
const HALF: u64 = (RAM / 2) as u64;
/// vfio-pci region offsets.
const BAR0: i64 = 0;
const MSIX_VECTORS: u32 = 9;

/// `test` again, as a child under the preload library with `iommu` and
/// `env`.
fn child(test: &str, iommu: &str, env: &[(&str, &OsStr)]) -> Command {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env("LD_PRELOAD", common::preload_library())
        .env(CHILD, "1")
        .env("VFIO_EEH_SHIM_IOMMU", iommu)
        .env("VFIO_EEH_SHIM_RESET", "report-unavailable")
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

/// Checks that a child's test passed.
fn passed(out: &std::process::Output) {
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && text.contains("1 passed"), "{text}");
}

/// Runs `test` again in a child under the preload library with `iommu`
/// and `env`.
fn in_child(test: &str, iommu: &str, env: &[(&str, &OsStr)]) {
    passed(&child(test, iommu, env).output().unwrap());
}

#[test]
fn an_nvme_driver_does_io_and_recovers_on_type1() {
    if std::env::var_os(CHILD).is_some() {
        return Driver::run(Iommu::Type1);
    }
    // type1 with EEH (a test mode) so that the recovery can be driven.
    in_child("an_nvme_driver_does_io_and_recovers_on_type1", "type1v2-with-eeh", &[]);
}

#[test]
fn an_nvme_driver_does_io_and_recovers_on_spapr_tce_v2_with_a_ddw() {
    if std::env::var_os(CHILD).is_some() {
        return Driver::run(Iommu::SpaprDdw);
    }
    in_child("an_nvme_driver_does_io_and_recovers_on_spapr_tce_v2_with_a_ddw", "spapr-tce-v2", &[]);
}

/// eehd's idle timeout in these tests, and how long the driver stays idle
/// to outlast it.
const IDLE_TIMEOUT: &str = "1";
const IDLE: Duration = Duration::from_millis(2500);

/// Runs `test` in a child that is a VMM of a fresh eehd (which closes a
/// session idle for [`IDLE_TIMEOUT`] seconds), killed and started again
/// once the child says it is idle ([`RESTART`]).
fn in_child_under_eehd(test: &str, iommu: &str) {
    let dir = tempfile::tempdir().unwrap();
    let binary = eehd::debug_binary();
    let args = ["--idle-timeout", IDLE_TIMEOUT];
    let (daemon, socket) = eehd::Eehd::start(&binary, dir.path(), &args);
    let env = [
        ("VFIO_EEH_SHIM_CONNECT", socket.as_os_str()),
        ("VFIO_EEH_SHIM_VM", "nvme".as_ref()),
        (RESTART, dir.path().as_os_str()),
    ];
    let mut running = child(test, iommu, &env).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !dir.path().join("idle").exists() && running.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "the driver never got idle");
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(daemon);
    let _daemon = eehd::Eehd::start(&binary, dir.path(), &args);
    std::fs::write(dir.path().join("restarted"), b"").unwrap();
    passed(&running.wait_with_output().unwrap());
}

/// Set (to a directory) in a child whose eehd the parent restarts: the
/// child creates `idle` in it and waits for `restarted`.
const RESTART: &str = "VFIO_EEH_TEST_RESTART_DIR";

/// Says the driver is idle and waits until eehd was started again.
fn idle_across_a_restart(dir: &std::path::Path) {
    std::fs::write(dir.join("idle"), b"").unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !dir.join("restarted").exists() {
        assert!(Instant::now() < deadline, "eehd was not started again");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn an_nvme_driver_of_an_eehd_vmm_does_io_and_recovers_on_type1() {
    if std::env::var_os(CHILD).is_some() {
        return Driver::run(Iommu::Type1);
    }
    in_child_under_eehd("an_nvme_driver_of_an_eehd_vmm_does_io_and_recovers_on_type1", "type1v2-with-eeh");
}

#[test]
fn an_nvme_driver_of_an_eehd_vmm_does_io_and_recovers_on_spapr_tce_v2_with_a_ddw() {
    if std::env::var_os(CHILD).is_some() {
        return Driver::run(Iommu::SpaprDdw);
    }
    let test = "an_nvme_driver_of_an_eehd_vmm_does_io_and_recovers_on_spapr_tce_v2_with_a_ddw";
    in_child_under_eehd(test, "spapr-tce-v2");
}

#[derive(Clone, Copy)]
enum Iommu {
    Type1,
    SpaprDdw,
}

/// `ioctl(fd, request, arg)`.
fn ioctl<T: IntoBytes + FromBytes>(fd: i32, request: VfioIoctl, arg: &mut T) -> i64 {
    // SAFETY: `arg` is a live, writable value of the structure the request
    // names, for the length of the call.
    i64::from(unsafe { libc::ioctl(fd, libc::Ioctl::from(request.native()), std::ptr::from_mut(arg)) })
}

/// `ioctl(fd, request, value)` with a number as the argument.
fn ioctl_value(fd: i32, request: VfioIoctl, value: u64) -> i64 {
    // SAFETY: the request takes a number; no memory is passed.
    i64::from(unsafe { libc::ioctl(fd, libc::Ioctl::from(request.native()), value) })
}

fn open(path: &str) -> i32 {
    let c = std::ffi::CString::new(path).unwrap();
    // SAFETY: `c` is a NUL-terminated path.
    let fd = unsafe { libc::open(c.as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
    assert!(fd >= 0, "open {path}");
    fd
}

fn eventfd() -> i32 {
    // SAFETY: eventfd takes integers.
    let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
    assert!(fd >= 0);
    fd
}

/// Reads (and clears) an eventfd's counter: 0 if it did not fire.
fn fired(fd: i32) -> u64 {
    let mut count = 0u64;
    // SAFETY: `count` is a live u64; the kernel writes its 8 bytes.
    let n = unsafe { libc::read(fd, std::ptr::from_mut(&mut count).cast(), 8) };
    if n == 8 {
        count
    } else {
        0
    }
}

/// Anonymous memory the device reaches by DMA, accessed only through raw
/// pointers (the device writes it behind the program's back).
struct Ram {
    base: *mut u8,
}

impl Ram {
    fn new() -> Self {
        // SAFETY: an anonymous private mapping; no existing memory is touched.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                RAM,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(base, libc::MAP_FAILED);
        Ram { base: base.cast() }
    }

    fn vaddr(&self) -> u64 {
        self.base.expose_provenance() as u64
    }

    /// The RAM offset, checked to hold `len` bytes.
    fn at(offset: u64, len: usize) -> usize {
        let at = usize::try_from(offset).unwrap();
        assert!(at + len <= RAM);
        at
    }

    fn put(&self, offset: u64, bytes: &[u8]) {
        let at = Self::at(offset, bytes.len());
        // SAFETY: in bounds of the mapping, which lives as long as `self`.
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), self.base.add(at), bytes.len()) };
    }

    fn get(&self, offset: u64, len: usize) -> Vec<u8> {
        let at = Self::at(offset, len);
        let mut out = vec![0u8; len];
        // SAFETY: in bounds of the mapping, which lives as long as `self`.
        unsafe { std::ptr::copy_nonoverlapping(self.base.add(at), out.as_mut_ptr(), len) };
        out
    }
}

/// RAM offsets and sizes of the driver's structures.
const ASQ: u64 = 0;
const ACQ: u64 = 0x1000;
const SQ1: u64 = 0x2000;
const CQ1: u64 = 0x3000;
const PRP_LIST: u64 = 0x4000;
const IDENTIFY: u64 = 0x5000;
const QUEUE_ENTRIES: u16 = 16;

struct Driver {
    container: i32,
    device: i32,
    ram: Ram,
    /// IOVAs of RAM offset 0 and of RAM offset `HALF` (the data half).
    queue_iova: u64,
    data_iova: u64,
    vectors: [i32; 2],
    /// (tail, head, phase) of the admin and the I/O queue pair.
    queues: [(u16, u16, bool); 2],
    cid: u16,
}

impl Driver {
    fn run(iommu: Iommu) {
        let mut d = Driver::open(iommu);
        assert_eq!(d.pe_op(EehOp::Enable), 0, "as QEMU does when the guest enables EEH");
        d.bring_up();
        let id = d.admin(0x06, 0, [1, 0, 0, 0, 0, 0], d.queue_iova + IDENTIFY);
        assert_eq!(id, 0);
        assert!(String::from_utf8_lossy(&d.ram.get(IDENTIFY + 24, 40)).starts_with("vfio-eeh simulated NVMe"));
        assert!(fired(d.vectors[0]) > 0, "the admin completion raised vector 0");
        d.create_io_queues();

        // 64 KiB at LBA 0 from the data half, through a PRP list.
        let data: Vec<u8> = (0..64 << 10).map(|i: u32| (i % 253) as u8).collect();
        d.ram.put(HALF, &data);
        assert_eq!(d.rw(0x01, 0, 128, 0), 0);
        assert!(fired(d.vectors[1]) > 0, "the I/O completion raised vector 1");
        assert_eq!(d.rw(0x02, 0, 128, 0x10_0000), 0);
        assert_eq!(d.ram.get(HALF + 0x10_0000, data.len()), data, "read back by DMA");

        if let Some(dir) = std::env::var_os(RESTART) {
            // Idle past eehd's idle timeout: eehd closes the session and
            // takes the bus back, the controller keeps its state. The next
            // doorbell finds the connection gone and goes on a new one, the
            // bus lent again first.
            std::thread::sleep(IDLE);
            d.ram.put(HALF, &data.iter().map(|b| !b).collect::<Vec<u8>>());
            assert_eq!(d.rw(0x01, 128, 128, 0), 0, "a write after the idle time");
            assert_eq!(d.rw(0x02, 128, 128, 0x10_0000), 0);
            assert_eq!(d.ram.get(HALF + 0x10_0000, data.len()), d.ram.get(HALF, data.len()), "read back");

            // eehd is killed and started again while the driver is idle.
            // Its controller model starts at power-on (its state was the
            // old eehd's, the namespace too), so the driver brings it up
            // again; the I/O needs this VMM's bus in the new eehd: every
            // mapping again, and MSI-X.
            idle_across_a_restart(std::path::Path::new(&dir));
            assert_eq!(d.reg32(0x1c), 0, "CSTS of the new eehd's controller: not ready");
            d.bring_up();
            d.create_io_queues();
            d.ram.put(HALF, &data);
            assert_eq!(d.rw(0x01, 0, 128, 0), 0);
            assert!(fired(d.vectors[1]) > 0, "the I/O completion raised vector 1 through the new eehd");
            assert_eq!(d.rw(0x02, 0, 128, 0x10_0000), 0);
            assert_eq!(d.ram.get(HALF + 0x10_0000, data.len()), data, "read back by DMA through the new eehd");
        }

        // Freeze mid-I/O: the doorbell is dropped, registers read all-ones.
        let inj = ErrInjection { kind: ErrType::Bus32, func: ErrFunc::LoadConfigAddr, addr: 0, mask: 0 };
        assert_eq!(d.pe_op(EehOp::InjectErr(inj)), 0);
        // The config load fires the injection where it waits for one
        // (eehd's host), and reads a frozen PE where it fired at once.
        assert_eq!(d.config_id(), u32::MAX, "the config load meets the freeze");
        assert_eq!(d.pe_op(EehOp::GetState), i64::from(PeState::Stopped.raw()));
        d.ram.put(HALF, &vec![0xee; 64 << 10]);
        d.submit(1, 0x01, 1, [0, 0, 127, 0, 0, 0], d.data_iova, d.queue_iova + PRP_LIST);
        assert_eq!(d.reg32(0x1c), u32::MAX, "CSTS of a frozen PE");
        assert_eq!(d.reap(1), None, "no completion");

        // Recovery: the controller was reset and needs a new bring-up; the
        // acknowledged data is there, the dropped write never happened.
        assert_eq!(d.pe_op(EehOp::Reset(ResetKind::Hot)), 0, "{}", std::io::Error::last_os_error());
        assert_eq!(d.pe_op(EehOp::ResetDeactivate), 0);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while d.pe_op(EehOp::GetState) != i64::from(PeState::Normal.raw()) {
            assert!(std::time::Instant::now() < deadline, "the PE never came back");
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        assert_eq!(d.reg32(0x1c), 0, "CSTS after the reset: not ready");
        d.bring_up();
        d.create_io_queues();
        assert_eq!(d.rw(0x02, 0, 128, 0x20_0000 - HALF), 0);
        assert_eq!(d.ram.get(0x20_0000, data.len()), data, "the media kept the data");

        // A DMA to an IOVA nothing maps: an IOMMU fault freezes the PE and
        // nothing reaches memory.
        let unmapped = d.data_iova + 4 * HALF;
        d.submit(1, 0x02, 1, [0, 0, 7, 0, 0, 0], unmapped, 0);
        assert_eq!(d.pe_op(EehOp::GetState), i64::from(PeState::Stopped.raw()));
        assert_eq!(d.reap(1), None);
    }

    fn open(iommu: Iommu) -> Self {
        let container = open("/dev/vfio/vfio");
        let group = open("/dev/vfio/0");
        let mut fd = container;
        assert_eq!(ioctl(group, uapi::GROUP_SET_CONTAINER, &mut fd), 0, "{}", std::io::Error::last_os_error());
        let ram = Ram::new();
        let rw = uapi::VFIO_DMA_MAP_FLAG_READ | uapi::VFIO_DMA_MAP_FLAG_WRITE;
        let map = |iova: u64, vaddr: u64| {
            let mut m = uapi::VfioIommuType1DmaMap { argsz: 32, flags: rw, vaddr, iova, size: HALF };
            assert_eq!(ioctl(container, uapi::IOMMU_MAP_DMA, &mut m), 0, "MAP_DMA at {iova:#x}");
        };
        let (queue_iova, data_iova) = match iommu {
            Iommu::Type1 => {
                assert_eq!(ioctl_value(container, uapi::SET_IOMMU, u64::from(uapi::VFIO_TYPE1V2_IOMMU)), 0);
                (0x1000_0000, 0x1000_0000 + HALF)
            }
            Iommu::SpaprDdw => {
                assert_eq!(ioctl_value(container, uapi::SET_IOMMU, u64::from(uapi::VFIO_SPAPR_TCE_V2_IOMMU)), 0);
                let mut reg =
                    uapi::VfioIommuSpaprRegisterMemory { argsz: 24, flags: 0, vaddr: ram.vaddr(), size: RAM as u64 };
                assert_eq!(ioctl(container, uapi::IOMMU_SPAPR_REGISTER_MEMORY, &mut reg), 0);
                let mut ddw = uapi::VfioIommuSpaprTceCreate {
                    argsz: 40,
                    page_shift: 12,
                    window_size: 1 << 30,
                    levels: 1,
                    ..Default::default()
                };
                assert_eq!(ioctl(container, uapi::IOMMU_SPAPR_TCE_CREATE, &mut ddw), 0);
                assert_eq!(ddw.start_addr, 1 << 59, "the DDW");
                (0x100_0000, 1 << 59)
            }
        };
        map(queue_iova, ram.vaddr());
        map(data_iova, ram.vaddr() + HALF);
        let mut name = [DEVICE.as_bytes(), b"\0"].concat();
        // SAFETY: `name` is a live NUL-terminated string for the call.
        let device =
            unsafe { libc::ioctl(group, libc::Ioctl::from(uapi::GROUP_GET_DEVICE_FD.native()), name.as_mut_ptr()) };
        assert!(device >= 0, "GET_DEVICE_FD");

        let mut info = uapi::VfioIrqInfo { argsz: 16, index: uapi::VFIO_PCI_MSIX_IRQ_INDEX, ..Default::default() };
        assert_eq!(ioctl(device, uapi::DEVICE_GET_IRQ_INFO, &mut info), 0);
        assert_eq!(info.count, MSIX_VECTORS, "one vector per queue pair");
        let mut region = uapi::VfioRegionInfo { argsz: 32, index: 0, ..Default::default() };
        assert_eq!(ioctl(device, uapi::DEVICE_GET_REGION_INFO, &mut region), 0);
        assert_eq!(region.size, 16 << 10);
        assert_eq!(region.flags & uapi::VFIO_REGION_INFO_FLAG_MMAP, 0, "BAR0 is trapped");

        let vectors = [eventfd(), eventfd()];
        #[derive(zerocopy::IntoBytes, zerocopy::FromBytes, zerocopy::Immutable)]
        #[repr(C)]
        struct SetTwo {
            head: uapi::VfioIrqSet,
            fds: [i32; 2],
        }
        let flags = uapi::VFIO_IRQ_SET_DATA_EVENTFD | uapi::VFIO_IRQ_SET_ACTION_TRIGGER;
        let head = uapi::VfioIrqSet { argsz: 28, flags, index: uapi::VFIO_PCI_MSIX_IRQ_INDEX, start: 0, count: 2 };
        let mut set = SetTwo { head, fds: vectors };
        assert_eq!(ioctl(device, uapi::DEVICE_SET_IRQS, &mut set), 0);

        Driver { container, device, ram, queue_iova, data_iova, vectors, queues: [(0, 0, true); 2], cid: 0 }
    }

    fn pe_op(&self, op: EehOp) -> i64 {
        let mut arg = uapi::VfioEehPeOp::from(op);
        ioctl(self.container, uapi::EEH_PE_OP, &mut arg)
    }

    fn reg32(&self, off: i64) -> u32 {
        self.read32(BAR0 + off)
    }

    /// The first dword of config space (vendor and device ids).
    fn config_id(&self) -> u32 {
        self.read32(i64::from(uapi::VFIO_PCI_CONFIG_REGION_INDEX) << 40)
    }

    fn read32(&self, offset: i64) -> u32 {
        let mut v = [0u8; 4];
        // SAFETY: `v` is a live 4-byte buffer.
        let n = unsafe { libc::pread(self.device, v.as_mut_ptr().cast(), 4, offset) };
        assert_eq!(n, 4);
        u32::from_le_bytes(v)
    }

    fn write_reg(&self, off: i64, bytes: &[u8]) {
        // SAFETY: `bytes` is a live buffer of its length.
        let n = unsafe { libc::pwrite(self.device, bytes.as_ptr().cast(), bytes.len(), BAR0 + off) };
        assert_eq!(n, bytes.len() as isize);
    }

    /// `nvme_pci_configure_admin_queue` + `nvme_enable_ctrl` (the queues
    /// zeroed as `nvme_init_queue` does).
    fn bring_up(&mut self) {
        self.queues = [(0, 0, true); 2];
        self.ram.put(ACQ, &[0; 0x1000]);
        self.ram.put(CQ1, &[0; 0x1000]);
        let n = u32::from(QUEUE_ENTRIES - 1);
        self.write_reg(0x24, &(n << 16 | n).to_le_bytes());
        self.write_reg(0x28, &(self.queue_iova + ASQ).to_le_bytes());
        self.write_reg(0x30, &(self.queue_iova + ACQ).to_le_bytes());
        self.write_reg(0x14, &0x0046_0001u32.to_le_bytes());
        assert_eq!(self.reg32(0x1c) & 3, 1, "ready, not fatal");
    }

    fn create_io_queues(&mut self) {
        let size = u32::from(QUEUE_ENTRIES - 1) << 16 | 1;
        assert_eq!(self.admin(0x05, 0, [size, 1 << 16 | 3, 0, 0, 0, 0], self.queue_iova + CQ1), 0);
        assert_eq!(self.admin(0x01, 0, [size, 1 << 16 | 1, 0, 0, 0, 0], self.queue_iova + SQ1), 0);
    }

    fn submit(&mut self, queue: usize, opcode: u8, nsid: u32, cdw: [u32; 6], prp1: u64, prp2: u64) -> u16 {
        self.cid += 1;
        let mut e = [0u8; 64];
        e[0] = opcode;
        e[2..4].copy_from_slice(&self.cid.to_le_bytes());
        e[4..8].copy_from_slice(&nsid.to_le_bytes());
        e[24..32].copy_from_slice(&prp1.to_le_bytes());
        e[32..40].copy_from_slice(&prp2.to_le_bytes());
        for (i, v) in cdw.iter().enumerate() {
            e[40 + 4 * i..44 + 4 * i].copy_from_slice(&v.to_le_bytes());
        }
        let sq = if queue == 0 { ASQ } else { SQ1 };
        let (tail, _, _) = &mut self.queues[queue];
        self.ram.put(sq + u64::from(*tail) * 64, &e);
        *tail = (*tail + 1) % QUEUE_ENTRIES;
        let tail = u32::from(*tail);
        self.write_reg(0x1000 + 8 * queue as i64, &tail.to_le_bytes());
        self.cid
    }

    /// The status of the next completion, if one was posted.
    fn reap(&mut self, queue: usize) -> Option<u16> {
        let cq = if queue == 0 { ACQ } else { CQ1 };
        let (_, head, phase) = &mut self.queues[queue];
        let e = self.ram.get(cq + u64::from(*head) * 16, 16);
        let word = u16::from_le_bytes([e[14], e[15]]);
        if (word & 1 == 1) != *phase {
            return None;
        }
        *head = (*head + 1) % QUEUE_ENTRIES;
        if *head == 0 {
            *phase = !*phase;
        }
        let head = u32::from(*head);
        self.write_reg(0x1004 + 8 * queue as i64, &head.to_le_bytes());
        Some(word >> 1)
    }

    fn admin(&mut self, opcode: u8, nsid: u32, cdw: [u32; 6], prp1: u64) -> u16 {
        self.submit(0, opcode, nsid, cdw, prp1, 0);
        self.reap(0).expect("an admin completion")
    }

    /// Reads or writes `blocks` at `lba` from the data half at `offset`,
    /// with a PRP list for the pages after the first.
    fn rw(&mut self, opcode: u8, lba: u32, blocks: u32, offset: u64) -> u16 {
        let pages: Vec<u8> = (1..u64::from(blocks).div_ceil(8))
            .flat_map(|i| (self.data_iova + offset + i * 0x1000).to_le_bytes())
            .collect();
        self.ram.put(PRP_LIST, &pages);
        let prp2 = if blocks > 16 { self.queue_iova + PRP_LIST } else { self.data_iova + offset + 0x1000 };
        self.submit(1, opcode, 1, [lba, 0, blocks - 1, 0, 0, 0], self.data_iova + offset, prp2);
        self.reap(1).expect("an I/O completion")
    }
}
