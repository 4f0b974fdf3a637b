//! The sysfs topology on fixture trees (`tests/fixtures`, built by
//! `make-fixtures.sh`) and on this machine's real `/sys`.

use std::fs;
use std::path::{Path, PathBuf};

use vfio_eeh::addr::{PciAddr, PeId};
use vfio_eeh::backend::{BackendError, EehBackend};
use vfio_eeh::topology::{Readiness, Topology};
use vfio_eeh_linux::sysfs::{Sysfs, SysfsError};
use vfio_eeh_linux::VfioHost;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

fn addr(text: &str) -> PciAddr {
    text.parse().unwrap()
}

/// One line per group: `domain/group: devices`.
fn shape(topo: &Topology) -> Vec<String> {
    let mut lines = Vec::new();
    for phb in &topo.phbs {
        for group in &phb.groups {
            let devices: Vec<String> = group.devices.iter().map(|d| d.addr.to_string()).collect();
            lines.push(format!("{:04x}/{}: {}", phb.domain, group.pe, devices.join(" ")));
        }
    }
    lines
}

#[test]
fn powernv_tree_has_phbs_groups_and_devices() {
    let topo = Sysfs::new(fixture("powernv")).topology().unwrap();
    assert_eq!(topo.problems, Vec::<String>::new());
    assert_eq!(
        shape(&topo),
        [
            "0000/1: 0000:01:00.0 0000:01:00.1",
            "0001/2: 0001:01:00.0 0001:01:00.1 0001:01:00.2 0001:01:00.3",
            "0002/3: 0002:01:00.0",
            "0030/5: 0030:01:00.0",
        ]
    );
    let ungrouped: Vec<String> = topo.ungrouped.iter().map(|d| d.addr.to_string()).collect();
    assert_eq!(ungrouped, ["0000:00:00.0", "0001:00:00.0"]);
    assert_eq!(topo.ungrouped[0].driver.as_deref(), Some("pcieport"));

    let bcm = &topo.phbs[1].groups[0];
    assert_eq!((bcm.devices[0].vendor, bcm.devices[0].device, bcm.devices[0].class), (0x14e4, 0x1657, 0x020000));
    assert_eq!(bcm.devices[2].driver.as_deref(), Some("tg3"));
    assert_eq!(bcm.devices[3].driver, None);
    let Readiness::No { why } = bcm.readiness() else { panic!("a group with tg3 is ready") };
    assert_eq!(why, "0001:01:00.2 is bound to tg3; 0001:01:00.3 is bound to no driver");
    assert_eq!(topo.phbs[0].groups[0].readiness(), Readiness::Yes);
    assert!(matches!(topo.phbs[2].groups[0].readiness(), Readiness::No { .. }));
}

#[test]
fn device_reads_ids_driver_group_and_eeh_pe() {
    let sysfs = Sysfs::new(fixture("powernv"));
    let (dev, problems) = sysfs.device(addr("0030:01:00.0")).unwrap();
    assert!(problems.is_empty(), "{problems:?}");
    assert_eq!((dev.device.vendor, dev.device.device, dev.device.class), (0x10de, 0x1db1, 0x030200));
    assert_eq!(dev.device.driver.as_deref(), Some("vfio-pci"));
    assert_eq!(dev.iommu_group, Some(PeId(5)));
    assert_eq!(dev.eeh_pe, Some(0x4));
    let (root_port, _) = sysfs.device(addr("0000:00:00.0")).unwrap();
    assert_eq!((root_port.iommu_group, root_port.eeh_pe), (None, None));
    assert!(matches!(sysfs.device(addr("0000:09:00.0")), Err(SysfsError::NoDevice { .. })));
}

#[test]
fn backend_finds_pes_and_their_devices_in_sysfs() {
    let host = VfioHost::new(Sysfs::new(fixture("powernv")), "/nonexistent/vfio");
    assert_eq!(host.pe_of(addr("0001:01:00.2")), Ok(PeId(2)));
    assert_eq!(
        host.devices_of(PeId(2)).unwrap(),
        ["0001:01:00.0", "0001:01:00.1", "0001:01:00.2", "0001:01:00.3"].map(addr)
    );
    assert_eq!(host.pe_of(addr("0000:07:00.0")), Err(BackendError::NoDevice(addr("0000:07:00.0"))));
    let Err(BackendError::NotSupported(why)) = host.pe_of(addr("0000:00:00.0")) else { panic!("root port in a PE") };
    assert!(why.contains("0000:00:00.0 is in no IOMMU group") && why.contains("powernv"), "{why}");
    assert_eq!(host.devices_of(PeId(4)), Err(BackendError::NoPe(PeId(4))));
    // Without /dev/vfio, an operation fails with the path and ENOENT.
    let Err(BackendError::Os { what, source }) = host.status(PeId(1)) else { panic!("EEH without /dev/vfio") };
    assert_eq!(source.0, libc::ENOENT);
    assert!(what.starts_with("/nonexistent/vfio/vfio does not exist"), "{what}");
    assert!(host.eeh_support().unwrap_err().to_string().contains("/nonexistent/vfio/vfio"));
}

#[test]
fn host_without_iommu_lists_every_device_ungrouped() {
    let topo = Sysfs::new(fixture("no-iommu")).topology().unwrap();
    assert!(topo.problems.is_empty(), "{:?}", topo.problems);
    assert_eq!(topo.phbs.len(), 1);
    assert!(topo.phbs[0].groups.is_empty());
    assert_eq!(topo.ungrouped.len(), 2);
    assert_eq!(topo.ungrouped[1].driver.as_deref(), Some("virtio-pci"));
}

#[test]
fn odd_entries_become_problems_naming_their_paths_and_the_rest_is_listed() {
    let root = fixture("odd");
    let topo = Sysfs::new(&root).topology().unwrap();
    let problem = |needle: &str| {
        topo.problems
            .iter()
            .find(|p| p.contains(needle))
            .unwrap_or_else(|| panic!("no problem about {needle} in {:#?}", topo.problems))
            .clone()
    };
    let dev = |a: &str| root.join("bus/pci/devices").join(a).display().to_string();
    assert_eq!(
        problem("garbage"),
        format!("Malformed {}/bus/pci/devices/garbage: \"garbage\" is not a PCI address", root.display())
    );
    assert_eq!(
        problem("01.0/vendor"),
        format!("Malformed {}/vendor: \"0xzzzz\" is not a hex number", dev("0000:00:01.0"))
    );
    assert!(problem("02.0/class").starts_with(&format!("Cannot read {}/class: ", dev("0000:00:02.0"))));
    assert_eq!(
        problem("03.0/iommu_group"),
        format!("Dangling link {}/iommu_group -> ../../../kernel/iommu_groups/9", dev("0000:00:03.0"))
    );
    assert_eq!(
        problem("04.0/iommu_group"),
        format!("Malformed {}/iommu_group: \"abc\" is not a link to an IOMMU group number", dev("0000:00:04.0"))
    );
    assert_eq!(
        problem("05.0/driver"),
        format!("Dangling link {}/driver -> ../../../bus/pci/drivers/gone", dev("0000:00:05.0"))
    );
    // A directory where an attribute belongs is not opened: only regular files are read.
    assert_eq!(problem("06.0/vendor"), format!("Cannot read {}/vendor: not a regular file", dev("0000:00:06.0")));
    assert_eq!(
        problem("0000:00:07.0"),
        format!(
            "Dangling link {}/bus/pci/devices/0000:00:07.0 -> ../../../devices/pci0000:00/0000:00:07.0",
            root.display()
        )
    );
    assert_eq!(
        problem("08.0/device"),
        format!("Malformed {}/device: \"0x12345\" is not an id of its width", dev("0000:00:08.0"))
    );
    assert_eq!(
        problem("group 7"),
        "IOMMU group 7 spans several EEH PEs: 0000:00:09.0 in PE 0x10, 0000:00:0a.0 in PE 0x11"
    );
    assert_eq!(
        problem("0b.0"),
        format!("Malformed {}/eeh_pe_config_addr: \"bogus\" is not a hex number", dev("0000:00:0b.0"))
    );
    assert_eq!(topo.problems.len(), 11, "{:#?}", topo.problems);

    // Everything readable is still there: 0x0b devices minus the dangling 07.
    let listed: Vec<String> = topo
        .devices()
        .map(|(_, d)| d.addr.to_string())
        .chain(topo.ungrouped.iter().map(|d| d.addr.to_string()))
        .collect();
    assert_eq!(listed.len(), 11, "{listed:?}");
    let good = topo.group_of(addr("0000:00:00.0")).unwrap();
    assert_eq!((good.pe, good.devices[0].vendor, good.devices[0].class), (PeId(0), 0x8086, 0x060000));
    // Unreadable ids read as all-ones; a dangling driver is no driver; a bad group link leaves the device ungrouped.
    let (_, malformed) = topo.devices().find(|(_, d)| d.addr == addr("0000:00:01.0")).unwrap();
    assert_eq!((malformed.vendor, malformed.device), (0xffff, 0x1041));
    let (_, classless) = topo.devices().find(|(_, d)| d.addr == addr("0000:00:02.0")).unwrap();
    assert_eq!(classless.class, 0xff_ffff);
    let ungrouped: Vec<String> = topo.ungrouped.iter().map(|d| d.addr.to_string()).collect();
    assert_eq!(ungrouped, ["0000:00:03.0", "0000:00:04.0"]);
    assert_eq!(topo.group_of(addr("0000:00:05.0")).unwrap().devices[0].driver, None);
}

#[test]
fn a_missing_pci_bus_is_an_error_naming_the_directory() {
    let dir = tempfile::tempdir().unwrap();
    let err = Sysfs::new(dir.path()).topology().unwrap_err();
    assert_eq!(err.to_string(), format!("Cannot list {}/bus/pci/devices", dir.path().display()));
}

/// A copy of a fixture tree in a fresh directory that every user may enter
/// (the unprivileged child below reads it), with the directory kept alive.
fn fixture_copy(name: &str) -> (tempfile::TempDir, PathBuf) {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let status = std::process::Command::new("cp").arg("-a").arg(fixture(name)).arg(dir.path()).status().unwrap();
    assert!(status.success());
    let root = dir.path().join(name);
    (dir, root)
}

/// Set in the child that [`unreadable_files_are_problems_naming_their_paths`]
/// starts as `nobody`: the sysfs root to scan.
const UNPRIVILEGED_ROOT: &str = "VFIO_EEH_TEST_UNPRIVILEGED_ROOT";

/// A file the scanner may not read is a problem naming it, and the rest is
/// listed. Root reads files whatever their mode, so as root (CI) the test
/// runs its check again in a child of itself as `nobody` (`setpriv`, from
/// util-linux): the check runs whoever runs the suite.
#[test]
fn unreadable_files_are_problems_naming_their_paths() {
    use std::os::unix::fs::PermissionsExt;
    if let Some(root) = std::env::var_os(UNPRIVILEGED_ROOT) {
        let root = PathBuf::from(root);
        let vendor = root.join("bus/pci/devices/0002:01:00.0/vendor");
        assert!(fs::read(&vendor).is_err(), "the child must not be able to read {}", vendor.display());
        let topo = Sysfs::new(&root).topology().unwrap();
        assert_eq!(topo.problems, [format!("Cannot read {}: Permission denied (os error 13)", vendor.display())]);
        assert_eq!(topo.devices().count(), 8);
        return;
    }
    let (_dir, root) = fixture_copy("powernv");
    let vendor = root.join("devices/pci0002:00/0002:01:00.0/vendor");
    fs::set_permissions(&vendor, fs::Permissions::from_mode(0o000)).unwrap();
    let is_root = fs::metadata("/proc/self").map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0).unwrap();
    let test = std::env::current_exe().unwrap();
    let mut child = if is_root {
        let mut cmd = std::process::Command::new("setpriv");
        cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups"]).arg(test);
        cmd
    } else {
        std::process::Command::new(test)
    };
    let out = child
        .args(["--exact", "unreadable_files_are_problems_naming_their_paths", "--nocapture", "--test-threads=1"])
        .env(UNPRIVILEGED_ROOT, &root)
        .output()
        .expect("setpriv (util-linux) runs the check as nobody");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("1 passed"), "the child ran no check: {stdout}");
}

/// Runs a scan on another thread, failing (not hanging) if it blocks.
fn topology_within_seconds(root: &Path) -> Topology {
    let (tx, rx) = std::sync::mpsc::channel();
    let sysfs = Sysfs::new(root);
    std::thread::spawn(move || tx.send(sysfs.topology().unwrap()));
    rx.recv_timeout(std::time::Duration::from_secs(20)).expect("the scan blocked")
}

/// A hostile fake tree: a FIFO, a link to an endless device and an
/// oversized file as attributes. None is opened or read past a page; each is
/// a problem naming it, and the scan carries on.
#[test]
fn attributes_that_are_not_small_regular_files_are_problems_not_hangs() {
    let (_dir, root) = fixture_copy("powernv");
    let device = root.join("devices/pci0002:00/0002:01:00.0");
    fs::remove_file(device.join("vendor")).unwrap();
    let status = std::process::Command::new("mkfifo").arg(device.join("vendor")).status().unwrap();
    assert!(status.success());
    fs::remove_file(device.join("device")).unwrap();
    std::os::unix::fs::symlink("/dev/zero", device.join("device")).unwrap();
    fs::write(device.join("class"), format!("0x{}\n", "0".repeat(8192))).unwrap();
    let eeh_pe = root.join("devices/pci0000:00/0000:01:00.0/eeh_pe_config_addr");
    fs::remove_file(&eeh_pe).unwrap();
    std::os::unix::fs::symlink("/dev/urandom", &eeh_pe).unwrap();

    let topo = topology_within_seconds(&root);
    let via_link = |dev: &str, file: &str| root.join("bus/pci/devices").join(dev).join(file).display().to_string();
    assert_eq!(
        topo.problems,
        [
            format!("Cannot read {}: not a regular file", via_link("0000:01:00.0", "eeh_pe_config_addr")),
            format!("Cannot read {}: not a regular file", via_link("0002:01:00.0", "vendor")),
            format!("Cannot read {}: not a regular file", via_link("0002:01:00.0", "device")),
            format!("Cannot read {}: larger than 4096 bytes", via_link("0002:01:00.0", "class")),
        ]
    );
    assert_eq!(topo.devices().count(), 8);
    let (_, hostile) = topo.devices().find(|(_, d)| d.addr == addr("0002:01:00.0")).unwrap();
    assert_eq!((hostile.vendor, hostile.device, hostile.class), (0xffff, 0xffff, 0xff_ffff));
}

/// This machine's `/sys`, checked against each device's own `vendor` file.
#[test]
fn real_sys_lists_every_pci_device_with_its_vendor() {
    let devices = Path::new("/sys/bus/pci/devices");
    let Ok(entries) = fs::read_dir(devices) else {
        eprintln!("skipped: no {} on this machine", devices.display());
        return;
    };
    let mut expected: Vec<(PciAddr, u16)> = entries
        .map(|e| {
            let e = e.unwrap();
            let text = fs::read_to_string(e.path().join("vendor")).unwrap();
            let vendor = u16::from_str_radix(text.trim().trim_start_matches("0x"), 16).unwrap();
            (e.file_name().to_str().unwrap().parse().unwrap(), vendor)
        })
        .collect();
    expected.sort();
    let topo = Sysfs::default().topology().unwrap();
    assert!(topo.problems.is_empty(), "{:?}", topo.problems);
    let mut found: Vec<(PciAddr, u16)> =
        topo.devices().map(|(_, d)| d).chain(&topo.ungrouped).map(|d| (d.addr, d.vendor)).collect();
    found.sort();
    assert_eq!(found, expected);
    for phb in &topo.phbs {
        for group in &phb.groups {
            let members = Sysfs::default().group_devices(group.pe).unwrap();
            let listed: Vec<PciAddr> = group.devices.iter().map(|d| d.addr).collect();
            assert!(listed.iter().all(|a| members.contains(a)), "group {}: {listed:?} vs {members:?}", group.pe);
        }
    }
}
