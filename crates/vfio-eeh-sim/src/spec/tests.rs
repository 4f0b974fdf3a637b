//! Tests of topology files: the built-in host, BAR placement, and each
//! error naming file and line.

use super::*;

#[test]
fn builtin_topology_has_two_phbs_and_multifunction_pes() {
    let spec = TopologySpec::builtin();
    let domains: Vec<u32> = spec.phbs().iter().map(|p| p.domain).collect();
    assert_eq!(domains, [0, 1]);
    let pes: Vec<&PeSpec> = spec.phbs().iter().flat_map(|p| &p.pes).collect();
    assert_eq!(pes.len(), 5);
    assert!(pes.iter().any(|pe| pe.devices.len() == 2));
    let nic = &pes[1].devices[0];
    assert_eq!((nic.vendor, nic.device, nic.class), (0x8086, 0x10fb, 0x020000));
    assert!(nic.multifunction);
    assert!(!pes[0].devices[0].multifunction);
    let gpu = &pes[2].devices[0];
    let big = gpu.bar(1).unwrap();
    assert_eq!((big.kind, big.size, big.flags()), (BarKind::Mem64, 16 << 30, 0xc));
    assert_eq!(big.addr & (big.size - 1), 0);
    assert!(big.addr >= PhbWindows::M64_BASE);
    // Non-prefetchable BARs sit in the 32-bit window, naturally aligned.
    let bar0 = gpu.bar(0).unwrap();
    assert!(bar0.addr >= 0x8000_0000 && bar0.addr + bar0.size <= 1 << 32 && bar0.addr & (bar0.size - 1) == 0);
    assert_eq!(nic.bar(2).unwrap().flags(), 0x1);
}

#[test]
fn bars_of_one_phb_do_not_overlap() {
    for phb in TopologySpec::builtin().phbs() {
        let mut ranges: Vec<(BarKind, bool, u64, u64)> = phb
            .pes
            .iter()
            .flat_map(|pe| &pe.devices)
            .flat_map(|d| &d.bars)
            .map(|b| (b.kind, b.kind == BarKind::Mem64 && b.prefetchable, b.addr, b.addr + b.size))
            .collect();
        ranges.sort_by_key(|r| (r.0 == BarKind::Io, r.2));
        for pair in ranges.windows(2) {
            if (pair[0].0 == BarKind::Io) == (pair[1].0 == BarKind::Io) {
                assert!(pair[0].3 <= pair[1].2, "{pair:?}");
            }
        }
    }
}

fn error_of(text: &str) -> (usize, String) {
    match TopologySpec::from_toml_str(text, "t.toml") {
        Err(TopologyError::Invalid { file, line, what }) => {
            assert_eq!(file, "t.toml");
            let shown = TopologyError::Invalid { file, line, what: what.clone() }.to_string();
            assert!(shown.starts_with(&format!("t.toml:{line}: ")), "{shown}");
            (line, what)
        }
        other => panic!("expected an error, got {other:?}"),
    }
}

const HEAD: &str = "[[phb]]\ndomain = 0\n[[phb.pe]]\ngroup = 7\n";

#[test]
fn errors_name_the_line_and_the_problem() {
    let cases: &[(&str, usize, &str)] = &[
        ("", 1, "no [[phb]]"),
        ("[[phb]]\ndomain = 0\n", 1, "has no [[phb.pe]]"),
        ("[[phb]]\ndomain = 0\nsize = 3\n", 3, "Unknown field"),
        ("[[phb]]\ndomain = \"zero\"\n", 2, "Invalid type"),
        ("[[phb]]\ndomain = 0x10000\n[[phb.pe]]\ngroup = 1\n", 2, "above"),
        (&format!("{HEAD}device = [{{ addr = \"0000:01:00.0\", kind = \"nvme\" }},\n  {{ addr = \"0000:01:00.0\", kind = \"nic\" }}]\n"), 6, "listed twice"),
        (&format!("{HEAD}device = [{{ addr = \"0000:01:00.0\", kind = \"toaster\" }}]\n"), 5, "Unknown device kind \"toaster\""),
        (&format!("{HEAD}device = [{{ addr = \"0000:01:20.0\", kind = \"nvme\" }}]\n"), 5, "Slot 32 is out of range"),
        (&format!("{HEAD}device = [{{ addr = \"0001:01:00.0\", kind = \"nvme\" }}]\n"), 5, "not in domain 0000"),
        (&format!("{HEAD}device = [{{ addr = \"0000:01:00.1\", kind = \"nvme\" }}]\n"), 5, "no function 0"),
        (&format!("{HEAD}device = [{{ addr = \"0000:01:00.0\" }}]\n"), 5, "needs `vendor`"),
        (&format!("{HEAD}device = [{{ addr = \"0000:01:00.0\", kind = \"nvme\", ready_ms = 100000 }}]\n"), 5, "ready_ms"),
        (&format!("{HEAD}device = [{{ addr = \"0000:01:00.0\", kind = \"nvme\", class = 0x1000000 }}]\n"), 5, "24 bits"),
        (&format!("{HEAD}device = [{{ addr = \"0000:01:00.0\", kind = \"nvme\", vendor = 0xffff }}]\n"), 5, "no device"),
        (&format!("{HEAD}[[phb.pe]]\ngroup = 7\ndevice = [{{ addr = \"0000:01:00.0\", kind = \"nvme\" }}]\n"), 3, "has no device"),
        (&format!("{HEAD}device = [{{ addr = \"0000:01:00.0\", kind = \"nvme\" }}]\n[[phb.pe]]\ngroup = 7\n"), 7, "group 7 is listed twice"),
        (&format!("{HEAD}device = [{{ addr = \"0000:01:00.0\", kind = \"nvme\" }}]\n[[phb]]\ndomain = 0\n"), 7, "Domain 0000 is listed twice"),
        (&format!("{HEAD}device = [{{ addr = \"0000:01:00.0\", kind = \"nvme\", bars = [\n {{ index = 4, kind = \"mem64\", size = 4096 }},\n {{ index = 5, kind = \"mem32\", size = 4096 }} ] }}]\n"), 7, "overlaps"),
        (&format!("{HEAD}device = [{{ addr = \"0000:01:00.0\", kind = \"nvme\", bars = [\n {{ index = 5, kind = \"mem64\", size = 4096 }} ] }}]\n"), 6, "index must be 0..=4"),
        (&format!("{HEAD}device = [{{ addr = \"0000:01:00.0\", kind = \"nvme\", bars = [\n {{ index = 0, kind = \"mem32\", size = 3000 }} ] }}]\n"), 6, "power of two"),
        (&format!("{HEAD}device = [{{ addr = \"0000:01:00.0\", kind = \"nvme\", bars = [\n {{ index = 0, kind = \"io\", size = 16, prefetchable = true }} ] }}]\n"), 6, "cannot be prefetchable"),
        (&format!("{HEAD}device = [{{ addr = \"0000:01:00.0\", kind = \"nvme\", bars = [\n {{ index = 0, kind = \"mem32\", size = 0x80000000 }},\n {{ index = 1, kind = \"mem32\", size = 0x80000000 }} ] }}]\n"), 7, "32-bit MMIO window is full"),
        (&format!("{HEAD}device = [{{ addr = \"0000:01:00.0\", kind = \"nvme\",\n model = \"disk\" }}]\n"), 6, "Unknown device model \"disk\""),
        (&format!("{HEAD}device = [{{ addr = \"0000:01:00.0\", kind = \"nic\",\n namespace_size = 4096 }}]\n"), 6, "need model = \"nvme\""),
        (&format!("{HEAD}device = [{{ addr = \"0000:01:00.0\", kind = \"nvme\",\n namespace_size = 1000 }}]\n"), 6, "multiple of 512"),
        (&format!("{HEAD}device = [{{ addr = \"0000:01:00.0\", kind = \"nvme\",\n io_queues = 0 }}]\n"), 6, "io_queues"),
        (&format!("{HEAD}device = [{{ addr = \"0000:01:00.0\", kind = \"nvme\",\n queue_entries = 1 }}]\n"), 6, "Queue entries 1"),
        (&format!("{HEAD}device = [{{ addr = \"0000:01:00.0\", kind = \"nvme\",\n namespace_file = \"/nonexistent/ns.img\" }}]\n"), 6, "Cannot use /nonexistent/ns.img"),
        (&format!("{HEAD}device = [{{ addr = \"0000:01:00.0\", kind = \"nic\", bars = [{{ index = 0, kind = \"mem64\", size = 0x1000 }}],\n model = \"nvme\" }}]\n"), 6, "BAR0 of at least 0x4000"),
        ("[[phb]\n", 1, ""),
    ];
    for &(text, line, needle) in cases {
        let (got_line, what) = error_of(text);
        assert!(what.contains(needle), "{text:?}: {what:?} lacks {needle:?}");
        assert_eq!(got_line, line, "{text:?}: {what}");
        assert!(what.starts_with(|c: char| !c.is_lowercase()), "{what:?} starts in lower case");
    }
}

#[test]
fn a_custom_device_with_bars_is_placed() {
    let text = format!(
        "{HEAD}device = [{{ addr = \"0000:05:00.0\", vendor = 0x1af4, device = 0x1041, class = 0x020000, bars = [\n  {{ index = 2, kind = \"mem64\", prefetchable = true, size = 0x4000 }} ] }}]\n"
    );
    let spec = TopologySpec::from_toml_str(&text, "t.toml").unwrap();
    let dev = &spec.phbs()[0].pes[0].devices[0];
    assert_eq!((dev.vendor, dev.ready_delay), (0x1af4, Duration::from_millis(DEFAULT_READY_MS)));
    assert_eq!(dev.bars.len(), 1);
    assert_eq!(dev.bar(2).unwrap().addr, PhbWindows::M64_BASE);
}

#[test]
fn kind_nvme_gets_the_nvme_model_and_its_fields_are_read() {
    let spec = TopologySpec::builtin();
    let nvme = &spec.phbs()[0].pes[0].devices[0];
    assert_eq!(nvme.model, DeviceModel::Nvme(NvmeSpec::DEFAULT), "the built-in NVMe PE");
    assert_eq!(nvme.bar(0).unwrap().size, 16 << 10, "BAR0 unchanged");
    assert!(spec
        .phbs()
        .iter()
        .flat_map(|p| &p.pes)
        .skip(1)
        .flat_map(|pe| &pe.devices)
        .all(|d| d.model == DeviceModel::Memory));
    let file = std::env::temp_dir().join(format!("vfio-eeh-spec-{}.img", std::process::id()));
    let text = format!(
        "{HEAD}device = [{{ addr = \"0000:01:00.0\", kind = \"nvme\", namespace_size = 0x100000, io_queues = 2, queue_entries = 64, namespace_file = {:?} }},\n  {{ addr = \"0000:02:00.0\", kind = \"nvme\", model = \"memory\" }}]\n",
        file.display().to_string()
    );
    let spec = TopologySpec::from_toml_str(&text, "t.toml").unwrap();
    let devices = &spec.phbs()[0].pes[0].devices;
    let want =
        NvmeSpec { namespace_bytes: 1 << 20, namespace_file: Some(file.clone()), io_queues: 2, queue_entries: 64 };
    assert_eq!(devices[0].model, DeviceModel::Nvme(want));
    assert_eq!(std::fs::metadata(&file).unwrap().len(), 1 << 20, "the file was created at its size");
    assert_eq!(devices[1].model, DeviceModel::Memory, "model overrides the kind's");
    std::fs::remove_file(file).unwrap();
}

#[test]
fn a_missing_file_is_a_read_error_naming_it() {
    let err = TopologySpec::from_toml_file("/nonexistent/topo.toml").unwrap_err();
    assert!(matches!(err, TopologyError::Read { .. }));
    assert_eq!(err.to_string(), "Cannot read topology file /nonexistent/topo.toml");
}
