use super::*;

/// The numbers the reference (§1.5) lists, checked there against the real
/// x86_64 and powerpc64 headers.
#[test]
fn encodings_match_the_reference_table() {
    let table = [
        (CHECK_EXTENSION, 0x0000_3B65, 0x2000_3B65),
        (SET_IOMMU, 0x0000_3B66, 0x2000_3B66),
        (IOMMU_SPAPR_TCE_GET_INFO, 0x0000_3B70, 0x2000_3B70),
        (DEVICE_GET_PCI_HOT_RESET_INFO, 0x0000_3B70, 0x2000_3B70),
        (SEED_DEVICE_SET_ADDR_MAPPING, 0x0000_3B70, 0x2000_3B70),
        (IOMMU_ENABLE, 0x3B73, 0x2000_3B73),
        (IOMMU_DISABLE, 0x3B74, 0x2000_3B74),
        (IOMMU_SPAPR_REGISTER_MEMORY, 0x3B75, 0x2000_3B75),
        (IOMMU_SPAPR_UNREGISTER_MEMORY, 0x3B76, 0x2000_3B76),
        (IOMMU_SPAPR_TCE_CREATE, 0x3B77, 0x2000_3B77),
        (IOMMU_SPAPR_TCE_REMOVE, 0x3B78, 0x2000_3B78),
        (EEH_PE_OP, 15225, 536_886_137),
    ];
    for (ioctl, generic, powerpc) in table {
        assert_eq!(ioctl.number(Encoding::GENERIC), generic, "{}", ioctl.name);
        assert_eq!(ioctl.number(Encoding::POWERPC), powerpc, "{}", ioctl.name);
    }
}

#[test]
fn sized_encodings_put_direction_and_size_where_each_arch_does() {
    // _IOWR('V', 0, 8): generic 0xC0085600; powerpc 0xC0085600 too (READ|WRITE = 6 << 29).
    let rw_generic = Encoding::GENERIC.write | Encoding::GENERIC.read;
    let rw_powerpc = Encoding::POWERPC.write | Encoding::POWERPC.read;
    assert_eq!(Encoding::GENERIC.ioc(rw_generic, b'V', 0, 8), 0xC008_5600);
    assert_eq!(Encoding::POWERPC.ioc(rw_powerpc, b'V', 0, 8), 0xC008_5600);
    // _IOR(0x3B, 0x70, 4): generic read = 2 << 30; powerpc read = 2 << 29.
    assert_eq!(Encoding::GENERIC.ioc(Encoding::GENERIC.read, 0x3B, 0x70, 4), 0x8004_3B70);
    assert_eq!(Encoding::POWERPC.ioc(Encoding::POWERPC.read, 0x3B, 0x70, 4), 0x4004_3B70);
}

#[test]
fn our_mapping_ioctl_collides_with_nothing_upstream() {
    assert_eq!(DEVICE_ADDR_MAPPING.nr(), 0x7f);
    for upstream in UPSTREAM_IOCTLS {
        assert_ne!(upstream.nr(), DEVICE_ADDR_MAPPING.nr(), "{}", upstream.name);
    }
    // The seed's number is taken on device fds.
    assert!(UPSTREAM_IOCTLS.iter().any(|u| u.fd == FdKind::Device && u.nr() == SEED_DEVICE_SET_ADDR_MAPPING.nr()));
}

#[test]
fn native_encoding_is_the_targets() {
    let expected = if cfg!(target_arch = "powerpc64") { 0x2000_3B79 } else { 0x3B79 };
    assert_eq!(EEH_PE_OP.native(), expected);
}
