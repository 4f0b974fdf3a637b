//! A VMM on the simulated host: one VM's virtual PHBs and passed-through
//! devices, its RTAS EEH firmware and its memory — what the guest model runs
//! against.
//!
//! Both models of serving EEH are here ([`EehModel`]): the seed's, where the
//! host keeps the address mapping and serves RTAS onto its PEs directly, and
//! upstream's, where the VMM keeps the mapping and reaches the host only with
//! `VFIO_EEH_PE_OP` on one container per PE.

use std::sync::Arc;

use vfio_eeh::addr::{Buid, GuestAddr, PciAddr, PeId};
use vfio_eeh::backend::{BackendError, EehBackend};
use vfio_eeh::container::ContainerPath;
use vfio_eeh::mapping::{AddrMaps, MapError, VmId};
use vfio_eeh::rtas::{EehRtas, FlatMemory, RtasContext, RtasOutcome, RtasPolicy, TokenTable};

use crate::clock::Clock;
use crate::guest::GuestPlatform;
use crate::SimHost;

/// How the VMM reaches the host for EEH.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EehModel {
    /// The seed's: the host holds the mapping and serves RTAS itself.
    HostMapping,
    /// Upstream's: `VFIO_EEH_PE_OP` on a container per PE.
    Container,
}

/// Why a VMM could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum VmmError {
    /// The host refused (no such device).
    #[error("Host: {0}")]
    Host(#[from] BackendError),
    /// The address map refused.
    #[error("Mapping: {0}")]
    Map(#[from] MapError),
}

/// Where a VM's RTAS firmware sends the EEH ops it carries out. Every
/// [`EehBackend`] is one (the host itself, or a backend wrapping it), and
/// [`ModelPath`] follows an [`EehModel`].
pub trait HostPath {
    /// The backend the next RTAS call reaches.
    fn backend(&self) -> &dyn EehBackend;

    /// The VM has been handed a PE; `pes` are all it now holds. A plain
    /// backend has nothing to do.
    fn hold_pes(&mut self, pes: Vec<PeId>) {
        let _ = pes;
    }
}

impl<B: EehBackend> HostPath for B {
    fn backend(&self) -> &dyn EehBackend {
        self
    }
}

/// How a [`SimVmm`] reaches the host under an [`EehModel`].
pub enum ModelPath {
    /// The seed's model: the host itself.
    HostMapping(Arc<SimHost>),
    /// Upstream's: `VFIO_EEH_PE_OP` on a container for each PE the VM holds.
    Container {
        /// The host the containers are on.
        host: Arc<SimHost>,
        /// The VMM's containers.
        containers: ContainerPath<Arc<SimHost>>,
    },
}

impl ModelPath {
    /// The path of `model` to `host`, for a VM that holds no PE yet.
    pub fn new(model: EehModel, host: Arc<SimHost>) -> Self {
        match model {
            EehModel::HostMapping => ModelPath::HostMapping(host),
            EehModel::Container => ModelPath::Container { containers: ContainerPath::new(host.clone(), []), host },
        }
    }
}

impl HostPath for ModelPath {
    fn backend(&self) -> &dyn EehBackend {
        match self {
            ModelPath::HostMapping(host) => host,
            ModelPath::Container { containers, .. } => containers,
        }
    }

    fn hold_pes(&mut self, pes: Vec<PeId>) {
        if let ModelPath::Container { host, containers } = self {
            *containers = ContainerPath::new(host.clone(), pes);
        }
    }
}

/// Guest memory for RTAS buffers: 2 MiB at guest address 0.
const GUEST_MEMORY_BYTES: usize = 2 << 20;

/// One VM on the simulated host: its virtual PHBs and passed-through
/// functions (its address map), its RTAS EEH firmware, which reaches the
/// host through `P`, and its memory.
///
/// The default, made by [`SimVmm::new`], follows an [`EehModel`] and keeps
/// every RTAS outcome. [`SimVmm::with_path`] runs the same guest platform
/// over any backend and keeps no per-call record, so a loop of millions of
/// calls stays flat in memory.
pub struct SimVmm<P = ModelPath> {
    host: Arc<SimHost>,
    path: P,
    vm: VmId,
    maps: AddrMaps,
    rtas: EehRtas,
    memory: FlatMemory,
    /// Every RTAS call served, when they are kept.
    outcomes: Option<Vec<RtasOutcome>>,
}

impl SimVmm {
    /// A VM with no devices, reaching the host under `model`, whose firmware
    /// answers with `policy`; it keeps every RTAS outcome.
    pub fn new(host: Arc<SimHost>, vm: VmId, model: EehModel, policy: RtasPolicy) -> Self {
        let path = ModelPath::new(model, host.clone());
        let mut vmm = SimVmm::with_path(host, path, vm, policy);
        vmm.outcomes = Some(Vec::new());
        vmm
    }
}

impl<P: HostPath> SimVmm<P> {
    /// A VM with no devices on `host`, whose firmware answers with `policy`
    /// and reaches the host through `path`; it keeps no RTAS outcomes.
    pub fn with_path(host: Arc<SimHost>, path: P, vm: VmId, policy: RtasPolicy) -> Self {
        let mut maps = AddrMaps::default();
        maps.add_vm(vm).expect("a new table has no VMs");
        SimVmm {
            host,
            path,
            vm,
            maps,
            rtas: EehRtas::new(vm, TokenTable::default(), policy),
            memory: FlatMemory::new(0, GUEST_MEMORY_BYTES),
            outcomes: None,
        }
    }

    /// Adds a virtual PHB.
    pub fn add_phb(&mut self, buid: Buid) -> Result<(), VmmError> {
        Ok(self.maps.add_phb(self.vm, buid)?)
    }

    /// Passes host function `host` through at guest address `guest`; its PE
    /// is handed to this VM. The VMM opens the device as QEMU's vfio-pci
    /// does, so the host marks its PE passed ([`SimHost::dev_open`]); it is
    /// released when the VMM goes away.
    pub fn pass_through(&mut self, host: PciAddr, guest: GuestAddr) -> Result<(), VmmError> {
        let pe = self.host.pe_of(host)?;
        self.maps.assign_pe(self.vm, pe)?;
        self.maps.insert(self.vm, host, pe, guest)?;
        self.path.hold_pes(self.maps.vm(self.vm)?.pes());
        self.host.dev_open(host)?;
        Ok(())
    }

    /// The address map (the VM's table).
    pub fn maps(&self) -> &AddrMaps {
        &self.maps
    }

    /// The VM.
    pub fn vm(&self) -> VmId {
        self.vm
    }

    /// The host.
    pub fn host(&self) -> &Arc<SimHost> {
        &self.host
    }

    /// How the firmware reaches the host.
    pub fn path(&self) -> &P {
        &self.path
    }

    /// Guest memory (RTAS buffers, error logs, errinjct work buffers).
    pub fn memory_mut(&mut self) -> &mut FlatMemory {
        &mut self.memory
    }

    /// Every RTAS call served so far, with its status (none when the VM
    /// keeps no record).
    pub fn rtas_outcomes(&self) -> &[RtasOutcome] {
        self.outcomes.as_deref().unwrap_or_default()
    }

    /// The host function at guest address `dev`, if one is passed through
    /// there.
    fn host_of(&self, dev: GuestAddr) -> Option<PciAddr> {
        self.maps.vm(self.vm).ok()?.host_of(dev).map(|m| m.host)
    }
}

/// The VMM closes its device fds: each passed-through device is released
/// ([`SimHost::dev_release`]).
impl<P> Drop for SimVmm<P> {
    fn drop(&mut self) {
        for mapped in self.maps.vm(self.vm).map(|vm| vm.entries()).unwrap_or_default() {
            // The device was opened by `pass_through`, so it exists.
            let _ = self.host.dev_release(mapped.host);
        }
    }
}

/// Config and MMIO accesses are routed through the VM's address map onto
/// the simulated host. A function that is not there reads all-ones and drops
/// writes, as on a real bus.
impl<P: HostPath> GuestPlatform for SimVmm<P> {
    fn tokens(&self) -> &TokenTable {
        self.rtas.tokens()
    }

    fn rtas(&mut self, buf: &mut [u8]) -> bool {
        let mut ctx = RtasContext { maps: &self.maps, backend: self.path.backend(), memory: &mut self.memory };
        match self.rtas.serve(buf, &mut ctx) {
            Ok(outcome) => {
                if let Some(outcomes) = &mut self.outcomes {
                    outcomes.push(outcome);
                }
                true
            }
            Err(_) => false,
        }
    }

    fn config_read32(&mut self, dev: GuestAddr, offset: u16) -> u32 {
        self.host_of(dev).and_then(|h| self.host.config_read(h, offset, 4).ok()).unwrap_or(u32::MAX)
    }

    fn config_write32(&mut self, dev: GuestAddr, offset: u16, value: u32) {
        if let Some(h) = self.host_of(dev) {
            let _ = self.host.config_write(h, offset, 4, value);
        }
    }

    fn mmio_read32(&mut self, dev: GuestAddr, bar: u8, offset: u64) -> u32 {
        let value = self.host_of(dev).and_then(|h| self.host.bar_read(h, bar, offset, 4).ok());
        value.map_or(u32::MAX, |v| u32::try_from(v).unwrap_or(u32::MAX))
    }

    fn mmio_write32(&mut self, dev: GuestAddr, bar: u8, offset: u64, value: u32) {
        if let Some(h) = self.host_of(dev) {
            let _ = self.host.bar_write(h, bar, offset, 4, value.into());
        }
    }

    fn clock(&self) -> &dyn Clock {
        self.host.clock().as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::VirtualClock;
    use crate::guest::{GuestConfig, GuestEeh};

    /// A VM on `vmm` with the built-in NVMe at slot 1, probed by the guest
    /// model (which makes RTAS calls); returns the guest address.
    fn probed<P: HostPath>(vmm: &mut SimVmm<P>) -> GuestAddr {
        let guest = GuestAddr::new(Buid::SPAPR_BASE, 0, 1, 0).unwrap();
        vmm.add_phb(Buid::SPAPR_BASE).unwrap();
        vmm.pass_through("0000:01:00.0".parse().unwrap(), guest).unwrap();
        GuestEeh::new(GuestConfig::default()).probe(vmm, &[guest]);
        guest
    }

    #[test]
    fn the_model_vm_keeps_rtas_outcomes_and_a_plain_backend_vm_does_not() {
        let host = Arc::new(SimHost::builtin(Arc::new(VirtualClock::new())));
        for model in [EehModel::HostMapping, EehModel::Container] {
            let mut vmm = SimVmm::new(host.clone(), VmId(1), model, RtasPolicy::default());
            let guest = probed(&mut vmm);
            // Every call reached the PE (under the container model, through
            // the container the pass-through opened).
            let outcomes = vmm.rtas_outcomes();
            assert!(!outcomes.is_empty() && outcomes.iter().all(|o| o.status == 0), "{model:?}: {outcomes:?}");
            assert_eq!(vmm.config_read32(guest, 0) & 0xffff, 0x144d, "{model:?}");
        }
        let mut plain = SimVmm::with_path(host.clone(), host, VmId(2), RtasPolicy::default());
        let guest = probed(&mut plain);
        assert!(plain.rtas_outcomes().is_empty());
        assert_eq!(plain.config_read32(guest, 0) & 0xffff, 0x144d);
        assert_eq!(plain.config_read32(GuestAddr::new(Buid::SPAPR_BASE, 0, 2, 0).unwrap(), 0), u32::MAX);
    }
}
