//! Writes the seed corpora under `fuzz/seeds/<target>/`, built with the real
//! encoders so the seeds follow the code: `cargo run --example make_seeds`
//! from `fuzz/` (the files are committed; rerun after a format change).

use std::fs;
use std::path::Path;
use std::sync::Arc;

use vfio_eeh::ops::{EehOp, ErrFunc, ErrInjection, ErrType, ResetKind};
use vfio_eeh::rtas::{RtasArgs, RtasCall, TokenTable, ERRINJCT_IOA_BUS_ERROR_64};
use vfio_eeh::uapi::{self, VfioEehPeOp, VfioIoctl};
use vfio_eeh_fuzz::{builtin_devices, flags, guest_addr_of, nvme_record, NVME_IOVA};
use vfio_eeh_shim::fuzzing::FD_MARKER;
use vfio_eeh_sim::clock::VirtualClock;
use vfio_eeh_sim::SimHost;
use zerocopy::IntoBytes;

fn write(target: &str, name: &str, bytes: &[u8]) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("seeds").join(target);
    fs::create_dir_all(&dir).expect("seed directory");
    fs::write(dir.join(name), bytes).expect("seed file");
}

/// A record: advance the clock `advance` × 8 ms, then serve `bytes`.
fn record(out: &mut Vec<u8>, advance: u8, bytes: &[u8]) {
    out.push(advance);
    out.push(u8::try_from(bytes.len()).expect("a record is under 256 bytes"));
    out.extend_from_slice(bytes);
}

/// Writes `bytes` into guest memory at `kib` KiB.
fn memory(out: &mut Vec<u8>, kib: u8, bytes: &[u8]) {
    out.push(0xc0 | kib);
    out.push(u8::try_from(bytes.len()).expect("a record is under 256 bytes"));
    out.extend_from_slice(bytes);
}

/// A guest access to built-in device `index`.
fn access(out: &mut Vec<u8>, index: u8) {
    out.push(0x80 | index);
}

/// A `vfio_ioctls` record: ioctl `ioctl` on open descriptor `fd` with an
/// argument structure made of `words` (little-endian `u32`s).
fn vfio_ioctl(out: &mut Vec<u8>, fd: u8, ioctl: VfioIoctl, words: &[u32]) {
    let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
    out.extend([0x80 | fd, uapi::VFIO_BASE + ioctl.offset, u8::try_from(bytes.len()).expect("a short argument")]);
    out.extend(bytes);
}

/// A `vfio_ioctls` record: ioctl `ioctl` on open descriptor `fd` with a
/// number as the argument.
fn vfio_ioctl_value(out: &mut Vec<u8>, fd: u8, ioctl: VfioIoctl, value: u64) {
    out.extend([0x80 | fd, uapi::VFIO_BASE + ioctl.offset, 0xff]);
    out.extend(value.to_le_bytes());
}

/// Seeds of `vfio_ioctls`: a device set up under each IOMMU, then every
/// ioctl the emulator serves on it, its container and its group.
fn vfio_ioctls_seeds() {
    let lo = |v: u64| (v & 0xffff_ffff) as u32;
    let hi = |v: u64| (v >> 32) as u32;
    for (name, flags, iommu) in [("spapr", 0u8, uapi::VFIO_SPAPR_TCE_V2_IOMMU), ("type1", 1, uapi::VFIO_TYPE1V2_IOMMU)]
    {
        // open[0] the container, open[1] group 0, open[2] its device.
        let mut seed = vec![flags, 0x00, 0x01];
        vfio_ioctl(&mut seed, 1, uapi::GROUP_GET_STATUS, &[8, 0]);
        vfio_ioctl(&mut seed, 1, uapi::GROUP_SET_CONTAINER, &[FD_MARKER]);
        vfio_ioctl_value(&mut seed, 0, uapi::CHECK_EXTENSION, u64::from(iommu));
        vfio_ioctl_value(&mut seed, 0, uapi::SET_IOMMU, u64::from(iommu));
        let device = b"0000:01:00.0\0\0\0\0";
        let words: Vec<u32> = device.chunks(4).map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
        vfio_ioctl(&mut seed, 1, uapi::GROUP_GET_DEVICE_FD, &words);
        vfio_ioctl(&mut seed, 2, uapi::DEVICE_GET_INFO, &[24, 0, 0, 0, 0, 0]);
        vfio_ioctl(&mut seed, 2, uapi::DEVICE_GET_REGION_INFO, &[32, 0, 7, 0, 0, 0, 0, 0]);
        vfio_ioctl(&mut seed, 2, uapi::DEVICE_GET_IRQ_INFO, &[16, 0, 3, 0]);
        // SET_IRQS: eventfd trigger of the ERR index with the container's eventfd.
        vfio_ioctl(&mut seed, 2, uapi::DEVICE_SET_IRQS, &[24, 0x24, 3, 0, 1, FD_MARKER]);
        vfio_ioctl(&mut seed, 2, uapi::DEVICE_FEATURE, &[16, 0x3_0000, 0, 0]);
        vfio_ioctl(&mut seed, 2, uapi::DEVICE_ADDR_MAPPING, &[32, 0, 0, 0, 0, 0, 0, 0]);
        vfio_ioctl(&mut seed, 2, uapi::DEVICE_RESET, &[]);
        vfio_ioctl(&mut seed, 2, uapi::DEVICE_GET_PCI_HOT_RESET_INFO, &[16, 0, 0, 0]);
        if flags & 1 == 0 {
            vfio_ioctl(&mut seed, 0, uapi::IOMMU_SPAPR_TCE_GET_INFO, &[48, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
            vfio_ioctl(&mut seed, 0, uapi::IOMMU_SPAPR_REGISTER_MEMORY, &[24, 0, lo(0x10_0000), 0, 0x1_0000, 0]);
            let window = 1u64 << 30;
            vfio_ioctl(&mut seed, 0, uapi::IOMMU_SPAPR_TCE_CREATE, &[40, 0, 16, 0, lo(window), hi(window), 1, 0, 0, 0]);
            vfio_ioctl(&mut seed, 0, uapi::IOMMU_MAP_DMA, &[32, 3, lo(0x10_0000), 0, 0, 0, 0x1_0000, 0]);
            vfio_ioctl(&mut seed, 0, uapi::IOMMU_UNMAP_DMA, &[24, 0, 0, 0, 0x1_0000, 0]);
            vfio_ioctl(&mut seed, 0, uapi::IOMMU_SPAPR_TCE_REMOVE, &[16, 0, 0, hi(1 << 59)]);
            vfio_ioctl(&mut seed, 0, uapi::IOMMU_SPAPR_UNREGISTER_MEMORY, &[24, 0, lo(0x10_0000), 0, 0x1_0000, 0]);
            vfio_ioctl(&mut seed, 0, uapi::IOMMU_ENABLE, &[]);
        } else {
            vfio_ioctl(&mut seed, 0, uapi::IOMMU_GET_INFO, &[24, 0, 0, 0, 0, 0]);
            vfio_ioctl(&mut seed, 0, uapi::IOMMU_MAP_DMA, &[32, 3, lo(0x10_0000), 0, 0, 0, 0x1_0000, 0]);
            vfio_ioctl(&mut seed, 0, uapi::IOMMU_UNMAP_DMA, &[24, 0, 0, 0, 0x1_0000, 0]);
        }
        let get_state: Vec<u32> = VfioEehPeOp::from(EehOp::GetState)
            .as_bytes()
            .chunks(4)
            .map(|c| u32::from_le_bytes(c.try_into().unwrap()))
            .collect();
        vfio_ioctl(&mut seed, 0, uapi::EEH_PE_OP, &get_state);
        // Config space read, a BAR 0 write, a foreign ioctl, then closes.
        seed.extend([0xc2, 0x07, 0x00, 0x00, 0x04, 0xc2, 0x80, 0x10, 0x00, 0x04, 1, 2, 3, 4]);
        seed.extend([0x82, 0xff, 0x00, 0x41, 0x40, 0x40]);
        write("vfio_ioctls", name, &seed);
    }
}

/// An NVMe submission queue entry.
fn nvme_command(opcode: u8, cid: u16, nsid: u32, prp1: u64, cdw10: u32, cdw11: u32, cdw12: u32) -> [u8; 64] {
    let mut e = [0u8; 64];
    e[0] = opcode;
    e[2..4].copy_from_slice(&cid.to_le_bytes());
    e[4..8].copy_from_slice(&nsid.to_le_bytes());
    e[24..32].copy_from_slice(&prp1.to_le_bytes());
    e[40..44].copy_from_slice(&cdw10.to_le_bytes());
    e[44..48].copy_from_slice(&cdw11.to_le_bytes());
    e[48..52].copy_from_slice(&cdw12.to_le_bytes());
    e
}

/// Seeds of `nvme`: Linux's bring-up (admin queues, Identify, one I/O
/// queue pair), a write and a read, with MSI-X and with INTx, and a reset.
fn nvme_seeds() {
    let write32 = |out: &mut Vec<u8>, off: u16, value: u32| {
        out.push(nvme_record::WRITE32);
        out.extend(off.to_le_bytes());
        out.extend(value.to_le_bytes());
    };
    let write64 = |out: &mut Vec<u8>, off: u16, value: u64| {
        out.push(nvme_record::WRITE64);
        out.extend(off.to_le_bytes());
        out.extend(value.to_le_bytes());
    };
    let memory = |out: &mut Vec<u8>, offset: usize, bytes: &[u8]| {
        out.push(nvme_record::MEMORY | u8::try_from(offset / 512).expect("in the first 32 KiB"));
        out.push(u8::try_from(bytes.len()).expect("a record is under 256 bytes"));
        out.extend_from_slice(bytes);
    };
    let mut io = Vec::new();
    write32(&mut io, 0x24, 0x000f_000f);
    write64(&mut io, 0x28, NVME_IOVA);
    write64(&mut io, 0x30, NVME_IOVA + 0x1000);
    write32(&mut io, 0x14, 0x0046_0001);
    let admin: Vec<u8> = [
        nvme_command(0x06, 1, 0, NVME_IOVA + 0x4000, 1, 0, 0),
        nvme_command(0x05, 2, 0, NVME_IOVA + 0x3000, 0x000f_0001, 1 << 16 | 3, 0),
        nvme_command(0x01, 3, 0, NVME_IOVA + 0x2000, 0x000f_0001, 1 << 16 | 1, 0),
    ]
    .concat();
    memory(&mut io, 0, &admin);
    write32(&mut io, 0x1000, 3);
    write32(&mut io, 0x1004, 3);
    let rw: Vec<u8> =
        [nvme_command(0x01, 4, 1, NVME_IOVA + 0x4000, 0, 0, 7), nvme_command(0x02, 5, 1, NVME_IOVA + 0x5000, 0, 0, 7)]
            .concat();
    memory(&mut io, 0x2000, &rw);
    write32(&mut io, 0x1008, 2);
    write32(&mut io, 0x100c, 2);
    write("nvme", "bring_up_io_msix", &[[1].as_slice(), &io].concat());
    write("nvme", "bring_up_io_intx", &[[0].as_slice(), &io].concat());
    let mut reset = io;
    reset.push(nvme_record::RESET);
    write32(&mut reset, 0x1000, 1);
    write("nvme", "reset_then_doorbell", &[[1].as_slice(), &reset].concat());
}

fn main() {
    vfio_ioctls_seeds();
    nvme_seeds();
    let host = SimHost::builtin(Arc::new(VirtualClock::new()));
    let devices = builtin_devices(&host);
    let tokens = TokenTable::default();
    let call = |c: RtasCall, args: &[u32], nret: usize| RtasArgs::new(tokens.token(c).unwrap(), args, nret).encode();

    // RTAS: each call alone on the NVMe, then a whole recovery, under both
    // policies and both models.
    let nvme = guest_addr_of(devices[0]);
    let cells = [nvme.config_addr().raw(), nvme.buid().hi(), nvme.buid().lo()];
    let [a0, a1, a2] = cells;
    let single: Vec<(&str, Vec<u8>)> = vec![
        ("set_eeh_option", call(RtasCall::SetEehOption, &[a0, a1, a2, 1], 1)),
        ("config_addr_info2", call(RtasCall::GetConfigAddrInfo2, &[a0, a1, a2, 1], 2)),
        ("config_addr_info", call(RtasCall::GetConfigAddrInfo, &[a0, a1, a2, 0], 2)),
        ("read_state2", call(RtasCall::ReadSlotResetState2, &cells, 4)),
        ("read_state2_5", call(RtasCall::ReadSlotResetState2, &cells, 5)),
        ("read_state", call(RtasCall::ReadSlotResetState, &cells, 3)),
        ("set_slot_reset", call(RtasCall::SetSlotReset, &[a0, a1, a2, 1], 1)),
        ("configure_pe", call(RtasCall::ConfigurePe, &cells, 1)),
        ("configure_bridge", call(RtasCall::ConfigureBridge, &cells, 1)),
        ("slot_error_detail", call(RtasCall::SlotErrorDetail, &[a0, a1, a2, 0, 0, 0x1000, 2048, 1], 1)),
        ("open_errinjct", call(RtasCall::OpenErrinjct, &[], 2)),
        ("close_errinjct", call(RtasCall::CloseErrinjct, &[1], 1)),
    ];
    for (name, buf) in &single {
        let mut seed = vec![0];
        record(&mut seed, 0, buf);
        write("rtas", name, &seed);
    }
    let mut recovery = Vec::new();
    // The ioa-bus-error-64 work buffer at 1 KiB: address 0, mask 0, the
    // NVMe, function 0 (load, memory address).
    let work: Vec<u8> =
        [0, 0, 0, 0, a0, a1, a2, ErrFunc::LoadMemAddr as u32].iter().flat_map(|w| w.to_be_bytes()).collect();
    memory(&mut recovery, 1, &work);
    let steps: Vec<(u8, Vec<u8>)> = vec![
        (0, call(RtasCall::GetConfigAddrInfo2, &[a0, a1, a2, 1], 2)),
        (0, call(RtasCall::SetEehOption, &[a0, a1, a2, 1], 1)),
        (0, call(RtasCall::OpenErrinjct, &[], 2)),
        (0, call(RtasCall::Errinjct, &[ERRINJCT_IOA_BUS_ERROR_64, 1, 0x400], 1)),
        (0, call(RtasCall::CloseErrinjct, &[1], 1)),
    ];
    for (advance, buf) in &steps {
        record(&mut recovery, *advance, buf);
    }
    access(&mut recovery, 0);
    for (advance, buf) in [
        (0, call(RtasCall::ReadSlotResetState2, &cells, 4)),
        (0, call(RtasCall::SetEehOption, &[a0, a1, a2, 2], 1)),
        (0, call(RtasCall::SlotErrorDetail, &[a0, a1, a2, 0, 0, 0x1000, 2048, 1], 1)),
        (0, call(RtasCall::SetSlotReset, &[a0, a1, a2, 1], 1)),
        (32, call(RtasCall::SetSlotReset, &[a0, a1, a2, 0], 1)),
        (0, call(RtasCall::ReadSlotResetState2, &cells, 4)),
        (225, call(RtasCall::ReadSlotResetState2, &cells, 4)),
        (0, call(RtasCall::ConfigurePe, &cells, 1)),
        (0, call(RtasCall::SlotErrorDetail, &[a0, a1, a2, 0, 0, 0x1000, 2048, 2], 1)),
        (0, call(RtasCall::ReadSlotResetState2, &cells, 4)),
    ] {
        record(&mut recovery, advance, &buf);
    }
    for (name, bits) in [
        ("recovery", 0),
        ("recovery_reporting", flags::REPORTING),
        ("recovery_qemu", flags::QEMU),
        ("recovery_container", flags::CONTAINER | flags::REPORTING),
        ("recovery_immediate", flags::IMMEDIATE),
    ] {
        let mut seed = vec![bits];
        seed.extend_from_slice(&recovery);
        write("rtas", name, &seed);
    }
    write("rtas", "truncated", &[0, 0, 8, 0, 0, 0x20, 0x03, 0, 0, 0, 3]);
    write("rtas", "too_many_cells", &[0, 0, 12, 0, 0, 0x20, 0x03, 0, 0, 0, 12, 0, 0, 0, 12]);

    // Topology files: the built-in one, a minimal one, and broken ones.
    write("topology", "builtin.toml", vfio_eeh_sim::spec::BUILTIN_TOML.as_bytes());
    write(
        "topology",
        "minimal.toml",
        b"[[phb]]\ndomain = 0\n[[phb.pe]]\ngroup = 7\ndevice = [{ addr = \"0000:01:00.0\" }]\n",
    );
    write(
        "topology",
        "custom_bars.toml",
        b"[[phb]]\ndomain = 2\n[[phb.pe]]\ngroup = 1\ndevice = [{ addr = \"0002:05:00.0\", vendor = 0x1014, device = 1, class = 0x020000, ready_ms = 5, bars = [{ index = 0, kind = \"mem64\", prefetchable = true, size = 0x100000 }, { index = 2, kind = \"io\", size = 0x100 }, { index = 3, kind = \"mem32\", size = 0x1000 }] }]\n",
    );
    write("topology", "duplicate.toml", b"[[phb]]\ndomain = 0\n[[phb.pe]]\ngroup = 1\ndevice = [{ addr = \"0000:01:00.0\", kind = \"nic\" }, { addr = \"0000:01:00.0\", kind = \"nic\" }]\n");
    write(
        "topology",
        "wrong_domain.toml",
        b"[[phb]]\ndomain = 1\n[[phb.pe]]\ngroup = 1\ndevice = [{ addr = \"0000:01:00.0\", kind = \"gpu\" }]\n",
    );
    write("topology", "unknown_field.toml", b"[[phb]]\ndomain = 0\nspeed = 5\n");

    // Address text.
    for (name, text) in [
        ("pci_full", "0000:01:00.0"),
        ("pci_short", "02:03.4"),
        ("pci_max", "ffffffff:ff:1f.7"),
        ("pci_bad_slot", "0000:00:20.0"),
        ("guest", "0x800000020000000:00:01.0"),
        ("guest_bad_func", "1:00:1f.8"),
        ("buid", "0x0800000020000000"),
        ("buid_upper", "0XFFFFFFFFFFFFFFFF"),
        ("config_cell", "\u{10}\u{12}\u{19}\u{4}"),
    ] {
        write("addr", name, text.as_bytes());
    }

    // VFIO_EEH_PE_OP arguments: every op, a short one, bad flags.
    let ops = [
        ("enable", EehOp::Enable),
        ("disable", EehOp::Disable),
        ("get_state", EehOp::GetState),
        ("unfreeze_io", EehOp::UnfreezeIo),
        ("unfreeze_dma", EehOp::UnfreezeDma),
        ("reset_hot", EehOp::Reset(ResetKind::Hot)),
        ("reset_fundamental", EehOp::Reset(ResetKind::Fundamental)),
        ("deactivate", EehOp::ResetDeactivate),
        ("configure", EehOp::Configure),
        (
            "inject",
            EehOp::InjectErr(ErrInjection { kind: ErrType::Bus64, func: ErrFunc::LoadMemAddr, addr: 0, mask: 0 }),
        ),
    ];
    for (name, op) in ops {
        let raw = VfioEehPeOp::from(op);
        let mut seed = vec![0];
        record(&mut seed, 0, raw.as_bytes());
        write("pe_op", name, &seed);
    }
    let op = |op: EehOp| VfioEehPeOp::from(op).as_bytes().to_vec();
    let inject = EehOp::InjectErr(ErrInjection { kind: ErrType::Bus64, func: ErrFunc::LoadMemAddr, addr: 0, mask: 0 });
    let mut cycle = vec![0x10]; // Direct, PE 0, reporting host.
    for (advance, arg) in [(0, op(EehOp::Enable)), (0, op(inject))] {
        record(&mut cycle, advance, &arg);
    }
    access(&mut cycle, 0);
    for (advance, arg) in [
        (0, op(EehOp::GetState)),
        (0, op(EehOp::UnfreezeIo)),
        (0, op(EehOp::Reset(ResetKind::Hot))),
        (32, op(EehOp::ResetDeactivate)),
        (0, op(EehOp::GetState)),
        (255, op(EehOp::GetState)),
        (0, op(EehOp::Configure)),
    ] {
        record(&mut cycle, advance, &arg);
    }
    write("pe_op", "recovery", &cycle);
    cycle[0] = flags::PE_OP_CONTAINER | 0x10;
    write("pe_op", "recovery_container", &cycle);
    let mut short = vec![0];
    record(&mut short, 0, &op(EehOp::GetState)[..12]);
    record(&mut short, 0, &op(inject)[..20]);
    write("pe_op", "short", &short);
    let mut bad = op(EehOp::Enable);
    bad[4] = 1;
    let mut seed = vec![4]; // PE 2.
    record(&mut seed, 0, &bad);
    write("pe_op", "bad_flags", &seed);
}
