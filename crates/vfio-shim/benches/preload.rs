//! The cost of the preload library on the calls a VMM makes most: a 4-byte
//! read of an emulated config region and of an emulated BAR, and a DMA
//! map + unmap of one 4 KiB page (sPAPR TCE v2), each against a plain 4-byte
//! `pread` of a memfd in the same process (which passes through the library's
//! descriptor check). Target: each at most 3x the memfd read.
//!
//! The bench binary builds the preload library and eehd (release) and
//! re-executes itself under `LD_PRELOAD` twice: on the simulated host in
//! the process (`inproc/...`), then as a client of an eehd it starts
//! (`eehd/...`, `VFIO_EEH_SHIM_CONNECT`: BAR reads take the shared-memory
//! path, config reads a socket round trip). Each run times its own memfd
//! baseline; after criterion's report each prints the ratios, from the
//! fastest criterion sample of each.
//!
//! `cargo bench -p vfio-shim --bench preload`

use std::collections::BTreeMap;
use std::ffi::CString;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use criterion::Criterion;

#[path = "../tests/common/eehd.rs"]
mod eehd;
use eehd::Eehd;

/// Set in the re-executed child: the prefix of its benchmark names.
const CHILD: &str = "VFIO_EEH_BENCH_PRELOADED";
/// The host of both runs, whose group 0 is a drive of plain memory (the
/// built-in one is the NVMe controller model, whose BARs eehd never shares).
const TOPOLOGY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/plain-host.toml");
/// Its group and device.
const GROUP: &str = "/dev/vfio/0";
const DEVICE: &str = "0000:01:00.0";
/// vfio-pci's region offsets: index << 40.
const CONFIG_OFFSET: i64 = 7 << 40;
const BAR0_OFFSET: i64 = 0;

/// Fastest ns per call seen per benchmark.
static FASTEST: Mutex<BTreeMap<String, f64>> = Mutex::new(BTreeMap::new());

fn vfio_io(nr: u64) -> u64 {
    (u64::from(b';') << 8) | (100 + nr)
}

fn check(what: &str, ret: i64) -> i64 {
    assert!(ret >= 0, "{what}: {}", std::io::Error::last_os_error());
    ret
}

fn open(path: &str) -> i32 {
    let c = CString::new(path).expect("no NUL");
    // SAFETY: `c` is a NUL-terminated path that outlives the call.
    let fd = unsafe { libc::open(c.as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
    i32::try_from(check(path, i64::from(fd))).expect("an fd")
}

fn ioctl(fd: i32, nr: u64, arg: usize) -> i64 {
    // SAFETY: every caller passes an argument of the layout ioctl `nr` reads.
    i64::from(unsafe { libc::ioctl(fd, vfio_io(nr), arg) })
}

fn pread4(fd: i32, offset: i64) {
    let mut word = [0u8; 4];
    // SAFETY: `word` is 4 writable bytes.
    let n = unsafe { libc::pread(fd, word.as_mut_ptr().cast(), 4, offset) };
    assert_eq!(n, 4, "pread: {}", std::io::Error::last_os_error());
    std::hint::black_box(word);
}

/// A `VFIO_IOMMU_MAP_DMA` / `UNMAP_DMA` argument.
#[repr(C)]
struct DmaMap {
    argsz: u32,
    flags: u32,
    vaddr: u64,
    iova: u64,
    size: u64,
}

/// Container + group + sPAPR TCE v2 + device, a registered 64 KiB buffer,
/// memory decode on; returns (container, device, buffer address).
fn set_up_vfio(buffer: &mut [u8]) -> (i32, i32, u64) {
    let container = open("/dev/vfio/vfio");
    let group = open(GROUP);
    check("SET_CONTAINER", ioctl(group, 4, std::ptr::from_ref(&container) as usize));
    check("SET_IOMMU", ioctl(container, 2, 7));
    let name = CString::new(DEVICE).expect("no NUL");
    let device = i32::try_from(check("GET_DEVICE_FD", ioctl(group, 6, name.as_ptr() as usize))).expect("an fd");
    let vaddr = buffer.as_mut_ptr() as u64;
    let register: [u64; 3] = [24, vaddr, buffer.len() as u64]; // argsz + flags 0, vaddr, size
    check("REGISTER_MEMORY", ioctl(container, 17, register.as_ptr() as usize));
    // Memory Space on in the command register.
    let command: [u8; 2] = [0x06, 0x00];
    // SAFETY: `command` is 2 readable bytes.
    let n = unsafe { libc::pwrite(device, command.as_ptr().cast(), 2, CONFIG_OFFSET + 4) };
    assert_eq!(n, 2, "enabling memory decode");
    (container, device, vaddr)
}

/// Times `op` in criterion, recording the fastest sample.
fn bench(c: &mut Criterion, name: String, mut op: impl FnMut()) {
    c.bench_function(&name, |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                op();
            }
            let elapsed = start.elapsed();
            let ns = elapsed.as_secs_f64() * 1e9 / iters as f64;
            let mut fastest = FASTEST.lock().expect("not poisoned");
            let slot = fastest.entry(name.clone()).or_insert(f64::INFINITY);
            *slot = slot.min(ns);
            elapsed
        });
    });
}

fn child(mode: &str) {
    let memfd = {
        let name = CString::new("bench").expect("no NUL");
        // SAFETY: `name` is a NUL-terminated string that outlives the call.
        let fd = i32::try_from(check("memfd_create", i64::from(unsafe { libc::memfd_create(name.as_ptr(), 0) })));
        let fd = fd.expect("an fd");
        // SAFETY: ftruncate takes integers.
        check("ftruncate", i64::from(unsafe { libc::ftruncate(fd, 4096) }));
        fd
    };
    let mut buffer = vec![0u8; 2 << 16];
    let aligned = buffer.as_ptr().align_offset(1 << 16);
    let (container, device, vaddr) = set_up_vfio(&mut buffer[aligned..aligned + (1 << 16)]);
    let map = DmaMap { argsz: 32, flags: 3, vaddr, iova: 0, size: 4096 };
    let unmap: [u64; 3] = [24, 0, 4096]; // argsz + flags 0, iova, size

    let mut c = Criterion::default().configure_from_args().measurement_time(Duration::from_secs(2));
    let name = |what: &str| format!("{mode}/{what}");
    bench(&mut c, name("memfd_pread_4"), || pread4(memfd, 0));
    bench(&mut c, name("vfio_config_read_4"), || pread4(device, CONFIG_OFFSET));
    bench(&mut c, name("vfio_bar_read_4"), || pread4(device, BAR0_OFFSET));
    bench(&mut c, name("vfio_dma_map_unmap"), || {
        check("MAP_DMA", ioctl(container, 13, std::ptr::from_ref(&map) as usize));
        check("UNMAP_DMA", ioctl(container, 14, unmap.as_ptr() as usize));
    });
    c.final_summary();

    let fastest = FASTEST.lock().expect("not poisoned");
    if let Some(&base) = fastest.get(&name("memfd_pread_4")) {
        println!("\n{mode}: fastest sample, ns per call, and ratio to this run's memfd pread (target <= 3x):");
        for (name, ns) in fastest.iter() {
            println!("  {name:<26} {ns:8.1} ns  {:5.2}x", ns / base);
        }
    }
}

/// Builds the preload library and runs this binary again under it.
fn parent() {
    let target = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("preload-bench");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
        .args(["build", "--quiet", "--release", "-p", "vfio-shim", "--features", "preload", "--lib"])
        .args(["-p", "eehd", "--bin", "eehd", "--target-dir"])
        .arg(&target)
        .status()
        .expect("cargo runs");
    assert!(status.success(), "building the preload library and eehd failed");
    let library = target.join("release/libvfio_eeh_shim.so");
    let me = std::env::current_exe().expect("the bench binary's path");
    let run = |mode: &str, env: &[(&str, &std::ffi::OsStr)]| {
        let status = Command::new(&me)
            .args(std::env::args_os().skip(1))
            .env("LD_PRELOAD", &library)
            .env(CHILD, mode)
            .envs(env.iter().copied())
            .status()
            .expect("the bench re-executes");
        assert!(status.success(), "the {mode} run failed");
    };
    let dir = tempfile::tempdir().expect("a temporary directory");
    run("inproc", &[("VFIO_EEH_SHIM_TOPOLOGY", TOPOLOGY.as_ref())]);
    let (_eehd, socket) = Eehd::start(&target.join("release/eehd"), dir.path(), &["--topology", TOPOLOGY]);
    run("eehd", &[("VFIO_EEH_SHIM_CONNECT", socket.as_os_str()), ("VFIO_EEH_SHIM_VM", "bench".as_ref())]);
}

fn main() {
    match std::env::var(CHILD) {
        Ok(mode) => child(&mode),
        Err(_) => parent(),
    }
}
