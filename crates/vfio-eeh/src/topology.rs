//! A host's PCI topology as the tools show it: PHBs, the IOMMU groups (PEs)
//! under them, their devices, and whether each group can be passed through.
//!
//! Both hosts produce it: the simulator from its model, the Linux backend
//! from sysfs. Problems found while reading (a dangling link, an unreadable
//! file) are kept as [`Topology::problems`] so the rest is still listed.

use serde::{Deserialize, Serialize};

use crate::addr::{PciAddr, PeId};

/// The driver a device must be bound to for passthrough.
pub const VFIO_DRIVER: &str = "vfio-pci";

/// A whole host.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Topology {
    /// The PHBs (PCI domains), by domain.
    pub phbs: Vec<Phb>,
    /// Devices in no IOMMU group (cannot be passed through).
    pub ungrouped: Vec<Device>,
    /// What could not be read, each naming the path or item.
    pub problems: Vec<String>,
}

/// A PCI host bridge: one PCI domain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Phb {
    /// The PCI domain.
    pub domain: u32,
    /// The groups with devices in this domain, by group number.
    pub groups: Vec<Group>,
}

/// An IOMMU group, which is one PE on PowerNV.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Group {
    /// The group (and PE) number.
    pub pe: PeId,
    /// Its devices, by address.
    pub devices: Vec<Device>,
}

/// A PCI function.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Device {
    /// Its address.
    pub addr: PciAddr,
    /// PCI vendor id.
    pub vendor: u16,
    /// PCI device id.
    pub device: u16,
    /// 24-bit class code.
    pub class: u32,
    /// The bound driver, if any.
    pub driver: Option<String>,
}

/// Whether a group can be handed to a VM, and why not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "ready")]
pub enum Readiness {
    /// Every device of the group is bound to vfio-pci.
    Yes,
    /// Not ready, with the reason.
    No {
        /// Why.
        why: String,
    },
}

impl Group {
    /// Passthrough readiness: all devices of the group bound to vfio-pci.
    pub fn readiness(&self) -> Readiness {
        if self.devices.is_empty() {
            return Readiness::No { why: "the group has no devices".into() };
        }
        let blockers: Vec<String> = self
            .devices
            .iter()
            .filter(|d| d.driver.as_deref() != Some(VFIO_DRIVER))
            .map(|d| format!("{} is bound to {}", d.addr, d.driver.as_deref().unwrap_or("no driver")))
            .collect();
        if blockers.is_empty() {
            Readiness::Yes
        } else {
            Readiness::No { why: blockers.join("; ") }
        }
    }
}

impl Topology {
    /// Every grouped device with its group.
    pub fn devices(&self) -> impl Iterator<Item = (&Group, &Device)> {
        self.phbs.iter().flat_map(|phb| phb.groups.iter()).flat_map(|g| g.devices.iter().map(move |d| (g, d)))
    }

    /// The group holding a device.
    pub fn group_of(&self, addr: PciAddr) -> Option<&Group> {
        self.devices().find(|(_, d)| d.addr == addr).map(|(g, _)| g)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device(addr: &str, driver: Option<&str>) -> Device {
        Device {
            addr: addr.parse().unwrap(),
            vendor: 0x1014,
            device: 0x0001,
            class: 0x020000,
            driver: driver.map(Into::into),
        }
    }

    #[test]
    fn readiness_needs_every_device_on_vfio_pci() {
        let mut group = Group { pe: PeId(4), devices: vec![device("0000:01:00.0", Some("vfio-pci"))] };
        assert_eq!(group.readiness(), Readiness::Yes);
        group.devices.push(device("0000:01:00.1", Some("e1000e")));
        group.devices.push(device("0000:01:00.2", None));
        let Readiness::No { why } = group.readiness() else { panic!("ready with an e1000e device") };
        assert!(why.contains("0000:01:00.1 is bound to e1000e"), "{why}");
        assert!(why.contains("0000:01:00.2 is bound to no driver"), "{why}");
        assert!(matches!(Group { pe: PeId(5), devices: vec![] }.readiness(), Readiness::No { .. }));
    }

    #[test]
    fn finds_the_group_of_a_device() {
        let group = Group { pe: PeId(4), devices: vec![device("0000:01:00.0", None)] };
        let topo = Topology { phbs: vec![Phb { domain: 0, groups: vec![group] }], ..Default::default() };
        assert_eq!(topo.group_of("0000:01:00.0".parse().unwrap()).map(|g| g.pe), Some(PeId(4)));
        assert!(topo.group_of("0000:02:00.0".parse().unwrap()).is_none());
    }
}
