//! Addresses: host PCI devices, guest devices behind a virtual PHB, and the
//! PAPR configuration-address cell that RTAS calls carry.
//!
//! * [`PciAddr`]: a host function, `domain:bus:device.function`, spelled as
//!   Linux sysfs spells it (`0000:01:00.0`); `01:00.0` is read as domain 0.
//! * [`GuestAddr`]: a function as the guest sees it, the BUID of its virtual
//!   PHB plus bus/slot/function, spelled `0x800000020000000:00:01.0`.
//! * [`ConfigAddr`]: PAPR's 32-bit config address,
//!   `ext_reg[11:8] << 28 | bus << 16 | devfn << 8 | reg[7:0]`.
//! * [`Buid`]: the 64-bit PHB unit id, which RTAS splits into two cells.
//! * [`PeId`]: a host PE, named by its IOMMU group (VFIO reaches a PE through
//!   its group).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Highest PCI device (slot) number.
pub const MAX_SLOT: u8 = 31;
/// Highest PCI function number.
pub const MAX_FUNC: u8 = 7;
/// Highest (extended) configuration register offset.
pub const MAX_REGISTER: u16 = 0xfff;

/// Why an address was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddrError {
    /// The text is not an address of the expected form.
    #[error("Malformed {what} {text:?}: {reason}")]
    Malformed {
        /// Which kind of address was expected.
        what: &'static str,
        /// The text given.
        text: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The device (slot) number is above 31.
    #[error("Slot {0} is out of range (0..=31)")]
    SlotOutOfRange(u8),
    /// The function number is above 7.
    #[error("Function {0} is out of range (0..=7)")]
    FuncOutOfRange(u8),
    /// The register offset is above 0xfff.
    #[error("Register {0:#x} is out of range (0..=0xfff)")]
    RegisterOutOfRange(u16),
    /// Bits 24..27 of a PAPR config address are reserved and must be 0.
    #[error("Config address {0:#010x} has reserved bits 24..27 set")]
    ReservedBits(u32),
}

fn check_slot_func(slot: u8, func: u8) -> Result<(), AddrError> {
    if slot > MAX_SLOT {
        return Err(AddrError::SlotOutOfRange(slot));
    }
    if func > MAX_FUNC {
        return Err(AddrError::FuncOutOfRange(func));
    }
    Ok(())
}

/// `bus()`, `devfn()`, `slot()` and `func()` of a type with `bus` and
/// `devfn` fields.
macro_rules! bus_devfn_accessors {
    () => {
        /// The bus number.
        pub const fn bus(self) -> u8 {
            self.bus
        }

        /// Device (slot) and function, packed.
        pub const fn devfn(self) -> Devfn {
            self.devfn
        }

        /// The device (slot) number, 0..=31.
        pub const fn slot(self) -> u8 {
            self.devfn.slot()
        }

        /// The function number, 0..=7.
        pub const fn func(self) -> u8 {
            self.devfn.func()
        }
    };
}

/// serde as the text form: `Display` out, `FromStr` in.
macro_rules! text_serde {
    ($name:ident) => {
        impl Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_str(self)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
                text.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

/// Device and function packed as PCI does: `device << 3 | function`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Devfn(u8);

impl Devfn {
    /// Packs a device (slot) and function number.
    pub fn new(slot: u8, func: u8) -> Result<Self, AddrError> {
        check_slot_func(slot, func)?;
        Ok(Devfn(slot << 3 | func))
    }

    /// Every byte is a valid devfn.
    pub const fn from_raw(raw: u8) -> Self {
        Devfn(raw)
    }

    /// The packed byte.
    pub const fn raw(self) -> u8 {
        self.0
    }

    /// The device (slot) number, 0..=31.
    pub const fn slot(self) -> u8 {
        self.0 >> 3
    }

    /// The function number, 0..=7.
    pub const fn func(self) -> u8 {
        self.0 & 7
    }
}

/// Splits `text` at the last `:` into `(head, "bus:slot.func" tail parts)`,
/// parsing `BB:SS.F` as hex bus, hex slot and decimal function.
fn parse_bus_slot_func(what: &'static str, full: &str, text: &str) -> Result<(u8, u8, u8), AddrError> {
    let malformed = |reason| AddrError::Malformed { what, text: full.to_owned(), reason };
    let (bus, rest) = text.split_once(':').ok_or_else(|| malformed("expected BB:SS.F"))?;
    let (slot, func) = rest.split_once('.').ok_or_else(|| malformed("expected SS.F after the bus"))?;
    let bus = parse_hex_u8(bus).ok_or_else(|| malformed("bus is not a hex number 00..ff"))?;
    let slot = parse_hex_u8(slot).ok_or_else(|| malformed("slot is not a hex number 00..1f"))?;
    if func.len() != 1 {
        return Err(malformed("function is not one digit 0..7"));
    }
    let func = func.parse::<u8>().map_err(|_| malformed("function is not one digit 0..7"))?;
    check_slot_func(slot, func)?;
    Ok((bus, slot, func))
}

fn parse_hex_u8(text: &str) -> Option<u8> {
    if text.is_empty() || text.len() > 2 {
        return None;
    }
    u8::from_str_radix(text, 16).ok()
}

/// A host PCI function: `domain:bus:device.function`.
///
/// ```
/// use vfio_eeh::addr::PciAddr;
/// let a: PciAddr = "0001:02:03.4".parse()?;
/// assert_eq!((a.domain(), a.bus(), a.slot(), a.func()), (1, 2, 3, 4));
/// assert_eq!("02:03.4".parse::<PciAddr>()?.to_string(), "0000:02:03.4");
/// assert!("0000:00:20.0".parse::<PciAddr>().is_err()); // slot 0x20 > 31
/// # Ok::<(), vfio_eeh::addr::AddrError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PciAddr {
    domain: u32,
    bus: u8,
    devfn: Devfn,
}

impl PciAddr {
    /// Builds an address, refusing slot > 31 and function > 7.
    pub fn new(domain: u32, bus: u8, slot: u8, func: u8) -> Result<Self, AddrError> {
        Ok(PciAddr { domain, bus, devfn: Devfn::new(slot, func)? })
    }

    /// The PCI domain (segment); on PowerNV, one per PHB.
    pub const fn domain(self) -> u32 {
        self.domain
    }

    bus_devfn_accessors!();
}

impl fmt::Display for PciAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04x}:{:02x}:{:02x}.{}", self.domain, self.bus, self.slot(), self.func())
    }
}

impl FromStr for PciAddr {
    type Err = AddrError;

    fn from_str(text: &str) -> Result<Self, AddrError> {
        const WHAT: &str = "PCI address";
        let (domain, rest) = match text.matches(':').count() {
            1 => (0, text),
            2 => {
                let (domain, rest) = text.split_once(':').expect("two colons");
                let valid = !domain.is_empty() && domain.len() <= 8;
                let domain = valid.then(|| u32::from_str_radix(domain, 16).ok()).flatten().ok_or_else(|| {
                    AddrError::Malformed { what: WHAT, text: text.to_owned(), reason: "domain is not a hex number" }
                })?;
                (domain, rest)
            }
            _ => {
                return Err(AddrError::Malformed {
                    what: WHAT,
                    text: text.to_owned(),
                    reason: "expected DDDD:BB:SS.F or BB:SS.F",
                })
            }
        };
        let (bus, slot, func) = parse_bus_slot_func(WHAT, text, rest)?;
        PciAddr::new(domain, bus, slot, func)
    }
}

text_serde!(PciAddr);

/// The 64-bit unit id of a (virtual) PHB.
///
/// RTAS passes it as two cells, high word first:
/// ```
/// use vfio_eeh::addr::Buid;
/// let buid = Buid::from_cells(0x0800_0000, 0x2000_0000);
/// assert_eq!(buid, Buid(0x0800_0000_2000_0000));
/// assert_eq!((buid.hi(), buid.lo()), (0x0800_0000, 0x2000_0000));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Buid(pub u64);

impl Buid {
    /// QEMU's first sPAPR PHB BUID (index 0); later PHBs add their index.
    pub const SPAPR_BASE: Buid = Buid(0x0800_0000_2000_0000);

    /// Joins the `PHB_Unit_ID_Hi` and `PHB_Unit_ID_Low` cells.
    pub const fn from_cells(hi: u32, lo: u32) -> Self {
        Buid((hi as u64) << 32 | lo as u64)
    }

    /// The high cell.
    pub const fn hi(self) -> u32 {
        (self.0 >> 32) as u32
    }

    /// The low cell.
    #[allow(clippy::cast_possible_truncation)] // Keeping the low 32 bits is the point.
    pub const fn lo(self) -> u32 {
        self.0 as u32
    }
}

impl fmt::Display for Buid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}", self.0)
    }
}

impl FromStr for Buid {
    type Err = AddrError;
    fn from_str(text: &str) -> Result<Self, AddrError> {
        let digits = text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")).unwrap_or(text);
        let valid = !digits.is_empty() && digits.len() <= 16;
        valid.then(|| u64::from_str_radix(digits, 16).ok()).flatten().map(Buid).ok_or_else(|| AddrError::Malformed {
            what: "BUID",
            text: text.to_owned(),
            reason: "not a 64-bit hex number",
        })
    }
}

/// A function as the guest addresses it: virtual PHB plus bus/slot/function.
///
/// This is the payload of the seed's `VFIO_DEVICE_SET_ADDR_MAPPING`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GuestAddr {
    buid: Buid,
    bus: u8,
    devfn: Devfn,
}

impl GuestAddr {
    /// Builds an address, refusing slot > 31 and function > 7.
    pub fn new(buid: Buid, bus: u8, slot: u8, func: u8) -> Result<Self, AddrError> {
        Ok(GuestAddr { buid, bus, devfn: Devfn::new(slot, func)? })
    }

    /// The address of the function named by an RTAS (config address, BUID)
    /// pair; the register bits are ignored.
    pub const fn from_config(buid: Buid, config: ConfigAddr) -> Self {
        GuestAddr { buid, bus: config.bus(), devfn: config.devfn() }
    }

    /// The virtual PHB.
    pub const fn buid(self) -> Buid {
        self.buid
    }

    bus_devfn_accessors!();

    /// The PAPR config address of this function, register 0.
    pub const fn config_addr(self) -> ConfigAddr {
        ConfigAddr::of_function(self.bus, self.devfn)
    }
}

impl fmt::Display for GuestAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{:02x}:{:02x}.{}", self.buid, self.bus, self.slot(), self.func())
    }
}

impl FromStr for GuestAddr {
    type Err = AddrError;

    fn from_str(text: &str) -> Result<Self, AddrError> {
        const WHAT: &str = "guest address";
        let (buid, rest) = text.split_once(':').ok_or(AddrError::Malformed {
            what: WHAT,
            text: text.to_owned(),
            reason: "expected BUID:BB:SS.F",
        })?;
        let buid: Buid = buid.parse()?;
        let (bus, slot, func) = parse_bus_slot_func(WHAT, text, rest)?;
        GuestAddr::new(buid, bus, slot, func)
    }
}

text_serde!(GuestAddr);

/// PAPR's configuration address cell.
///
/// | bits | content |
/// |---|---|
/// | 28..31 | register bits 8..11 |
/// | 24..27 | reserved, 0 |
/// | 16..23 | bus |
/// | 8..15 | devfn |
/// | 0..7 | register bits 0..7 |
///
/// ```
/// use vfio_eeh::addr::{ConfigAddr, Devfn};
/// let c = ConfigAddr::new(0x12, Devfn::new(3, 1)?, 0x104)?;
/// assert_eq!(c.raw(), 0x1012_1904);
/// assert_eq!((c.bus(), c.devfn().slot(), c.devfn().func(), c.register()), (0x12, 3, 1, 0x104));
/// assert!(ConfigAddr::from_raw(0x0100_0000).is_err()); // reserved bits
/// # Ok::<(), vfio_eeh::addr::AddrError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ConfigAddr(u32);

impl ConfigAddr {
    const RESERVED: u32 = 0x0f00_0000;

    /// Packs bus, devfn and a register offset (0..=0xfff).
    pub fn new(bus: u8, devfn: Devfn, register: u16) -> Result<Self, AddrError> {
        if register > MAX_REGISTER {
            return Err(AddrError::RegisterOutOfRange(register));
        }
        let register = u32::from(register);
        Ok(ConfigAddr((register >> 8) << 28 | u32::from(bus) << 16 | u32::from(devfn.raw()) << 8 | (register & 0xff)))
    }

    /// The address of a function with register 0, the form EEH calls use.
    pub const fn of_function(bus: u8, devfn: Devfn) -> Self {
        ConfigAddr((bus as u32) << 16 | (devfn.raw() as u32) << 8)
    }

    /// Reads a cell, refusing the reserved bits 24..27.
    pub const fn from_raw(raw: u32) -> Result<Self, AddrError> {
        if raw & Self::RESERVED != 0 {
            return Err(AddrError::ReservedBits(raw));
        }
        Ok(ConfigAddr(raw))
    }

    /// The cell.
    pub const fn raw(self) -> u32 {
        self.0
    }

    /// The bus number.
    #[allow(clippy::cast_possible_truncation)] // Field extraction.
    pub const fn bus(self) -> u8 {
        (self.0 >> 16) as u8
    }

    /// Device and function, packed.
    #[allow(clippy::cast_possible_truncation)] // Field extraction.
    pub const fn devfn(self) -> Devfn {
        Devfn((self.0 >> 8) as u8)
    }

    /// The register offset, extended bits included.
    #[allow(clippy::cast_possible_truncation)] // 12 bits fit.
    pub const fn register(self) -> u16 {
        ((self.0 >> 28) << 8 | (self.0 & 0xff)) as u16
    }
}

impl fmt::Display for ConfigAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#010x}", self.0)
    }
}

/// A host PE (partitionable endpoint), named by its IOMMU group number.
///
/// VFIO reaches a PE only through the IOMMU group that holds its devices, one
/// group per PE on PowerNV, so the group number names the PE host-wide.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PeId(pub u32);

impl fmt::Display for PeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn pci_addr_parses_both_spellings() {
        let full: PciAddr = "0000:01:00.0".parse().unwrap();
        let short: PciAddr = "01:00.0".parse().unwrap();
        assert_eq!(full, short);
        assert_eq!("abcd:ff:1f.7".parse::<PciAddr>().unwrap(), PciAddr::new(0xabcd, 0xff, 31, 7).unwrap());
        assert_eq!("10000:00:00.0".parse::<PciAddr>().unwrap().to_string(), "10000:00:00.0");
    }

    #[test]
    fn pci_addr_refuses_bad_text_with_typed_errors() {
        assert_eq!("0000:00:20.0".parse::<PciAddr>(), Err(AddrError::SlotOutOfRange(0x20)));
        assert_eq!("0000:00:00.8".parse::<PciAddr>(), Err(AddrError::FuncOutOfRange(8)));
        for bad in [
            "",
            "0000",
            "0000:00",
            "0000:00:00",
            "x:00:00.0",
            "0000:100:00.0",
            "0:0:0:0.0",
            "00:00.",
            "00:00.00",
            ":00.0",
            "0000:00:0g.0",
            "123456789:00:00.0",
        ] {
            assert!(matches!(bad.parse::<PciAddr>(), Err(AddrError::Malformed { .. })), "{bad:?} accepted");
        }
    }

    #[test]
    fn guest_addr_parses_and_refuses() {
        let g: GuestAddr = "0x800000020000000:00:01.0".parse().unwrap();
        assert_eq!(g.buid(), Buid::SPAPR_BASE);
        assert_eq!((g.bus(), g.slot(), g.func()), (0, 1, 0));
        assert_eq!("1:00:1f.8".parse::<GuestAddr>(), Err(AddrError::FuncOutOfRange(8)));
        assert_eq!("1:00:20.0".parse::<GuestAddr>(), Err(AddrError::SlotOutOfRange(0x20)));
        assert!(matches!("zz:00:00.0".parse::<GuestAddr>(), Err(AddrError::Malformed { .. })));
        assert!(matches!("0x:00:00.0".parse::<GuestAddr>(), Err(AddrError::Malformed { .. })));
        assert!(matches!("11112222333344445:00:00.0".parse::<GuestAddr>(), Err(AddrError::Malformed { .. })));
    }

    #[test]
    fn config_addr_layout_matches_papr() {
        let devfn = Devfn::new(0x1f, 7).unwrap();
        assert_eq!(devfn.raw(), 0xff);
        assert_eq!(ConfigAddr::of_function(0xab, devfn).raw(), 0x00ab_ff00);
        assert_eq!(ConfigAddr::new(1, Devfn::from_raw(0), 0xfff).unwrap().raw(), 0xf001_00ff);
        assert_eq!(ConfigAddr::new(1, Devfn::from_raw(0), 0x1000), Err(AddrError::RegisterOutOfRange(0x1000)));
        assert_eq!(ConfigAddr::from_raw(0x0800_0000), Err(AddrError::ReservedBits(0x0800_0000)));
        let guest = GuestAddr::new(Buid(7), 2, 3, 4).unwrap();
        assert_eq!(
            GuestAddr::from_config(Buid(7), ConfigAddr::from_raw(guest.config_addr().raw() | 0x40).unwrap()),
            guest
        );
    }

    #[test]
    fn serde_uses_the_text_forms() {
        let host = PciAddr::new(0, 1, 2, 3).unwrap();
        assert_eq!(serde_json::to_string(&host).unwrap(), "\"0000:01:02.3\"");
        assert!(serde_json::from_str::<PciAddr>("\"0000:01:22.3\"").is_err());
        let guest = GuestAddr::new(Buid(0x10), 1, 2, 3).unwrap();
        assert_eq!(serde_json::to_string(&guest).unwrap(), "\"0x10:01:02.3\"");
        assert_eq!(serde_json::from_str::<GuestAddr>("\"0x10:01:02.3\"").unwrap(), guest);
    }

    proptest! {
        #[test]
        fn pci_addr_round_trips(domain: u32, bus: u8, slot in 0u8..32, func in 0u8..8) {
            let addr = PciAddr::new(domain, bus, slot, func).unwrap();
            prop_assert_eq!(addr.to_string().parse::<PciAddr>().unwrap(), addr);
            let json = serde_json::to_string(&addr).unwrap();
            prop_assert_eq!(serde_json::from_str::<PciAddr>(&json).unwrap(), addr);
        }

        #[test]
        fn guest_addr_round_trips(buid: u64, bus: u8, slot in 0u8..32, func in 0u8..8) {
            let addr = GuestAddr::new(Buid(buid), bus, slot, func).unwrap();
            prop_assert_eq!(addr.to_string().parse::<GuestAddr>().unwrap(), addr);
            prop_assert_eq!(Buid::from_cells(addr.buid().hi(), addr.buid().lo()), addr.buid());
            prop_assert_eq!(GuestAddr::from_config(addr.buid(), addr.config_addr()), addr);
        }

        #[test]
        fn config_addr_round_trips(bus: u8, devfn: u8, register in 0u16..=0xfff) {
            let c = ConfigAddr::new(bus, Devfn::from_raw(devfn), register).unwrap();
            prop_assert_eq!(ConfigAddr::from_raw(c.raw()).unwrap(), c);
            prop_assert_eq!((c.bus(), c.devfn().raw(), c.register()), (bus, devfn, register));
        }

        #[test]
        fn parsers_never_panic(text in "\\PC{0,24}") {
            let _ = text.parse::<PciAddr>();
            let _ = text.parse::<GuestAddr>();
            let _ = text.parse::<Buid>();
        }
    }
}
