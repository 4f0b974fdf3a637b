//! A VMM on the simulated host: one VM's virtual PHBs and passed-through
//! devices, its RTAS EEH firmware and its memory — what the guest model runs
//! against.
//!
//! Both models of serving EEH are here ([`EehModel`]): the seed's, where the
//! host keeps the address mapping and serves RTAS onto its PEs directly, and
//! upstream's, where the VMM keeps the mapping and reaches the host only with
//! `VFIO_EEH_PE_OP` on one container per PE.

use std::sync::Arc;

use vfio_eeh::addr::{Buid, GuestAddr, PciAddr};
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

/// A VM's config and MMIO accesses to its passed-through functions, routed
/// through its address map onto the simulated host. A function that is not
/// there reads all-ones and drops writes, as on a real bus.
pub(crate) struct GuestBus<'a> {
    pub(crate) host: &'a SimHost,
    pub(crate) maps: &'a AddrMaps,
    pub(crate) vm: VmId,
}

impl GuestBus<'_> {
    fn host_of(&self, dev: GuestAddr) -> Option<PciAddr> {
        self.maps.vm(self.vm).ok()?.host_of(dev).map(|m| m.host)
    }

    pub(crate) fn config_read32(&self, dev: GuestAddr, offset: u16) -> u32 {
        self.host_of(dev).and_then(|h| self.host.config_read(h, offset, 4).ok()).unwrap_or(u32::MAX)
    }

    pub(crate) fn config_write32(&self, dev: GuestAddr, offset: u16, value: u32) {
        if let Some(h) = self.host_of(dev) {
            let _ = self.host.config_write(h, offset, 4, value);
        }
    }

    pub(crate) fn mmio_read32(&self, dev: GuestAddr, bar: u8, offset: u64) -> u32 {
        let value = self.host_of(dev).and_then(|h| self.host.bar_read(h, bar, offset, 4).ok());
        value.map_or(u32::MAX, |v| u32::try_from(v).unwrap_or(u32::MAX))
    }

    pub(crate) fn mmio_write32(&self, dev: GuestAddr, bar: u8, offset: u64, value: u32) {
        if let Some(h) = self.host_of(dev) {
            let _ = self.host.bar_write(h, bar, offset, 4, value.into());
        }
    }
}

/// Guest memory for RTAS buffers: 2 MiB at guest address 0.
const GUEST_MEMORY_BYTES: usize = 2 << 20;

/// One VM on the simulated host.
pub struct SimVmm {
    host: Arc<SimHost>,
    vm: VmId,
    maps: AddrMaps,
    rtas: EehRtas,
    memory: FlatMemory,
    model: EehModel,
    outcomes: Vec<RtasOutcome>,
}

impl SimVmm {
    /// A VM with no devices, whose firmware answers with `policy`.
    pub fn new(host: Arc<SimHost>, vm: VmId, model: EehModel, policy: RtasPolicy) -> Self {
        let mut maps = AddrMaps::default();
        maps.add_vm(vm).expect("a new table has no VMs");
        SimVmm {
            host,
            vm,
            maps,
            rtas: EehRtas::new(vm, TokenTable::default(), policy),
            memory: FlatMemory::new(0, GUEST_MEMORY_BYTES),
            model,
            outcomes: Vec::new(),
        }
    }

    /// Adds a virtual PHB.
    pub fn add_phb(&mut self, buid: Buid) -> Result<(), VmmError> {
        Ok(self.maps.add_phb(self.vm, buid)?)
    }

    /// Passes host function `host` through at guest address `guest`; its PE
    /// is handed to this VM.
    pub fn pass_through(&mut self, host: PciAddr, guest: GuestAddr) -> Result<(), VmmError> {
        let pe = self.host.pe_of(host)?;
        self.maps.assign_pe(self.vm, pe)?;
        self.maps.insert(self.vm, host, pe, guest)?;
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

    /// Guest memory (RTAS buffers, error logs, errinjct work buffers).
    pub fn memory_mut(&mut self) -> &mut FlatMemory {
        &mut self.memory
    }

    /// Every RTAS call served so far, with its status.
    pub fn rtas_outcomes(&self) -> &[RtasOutcome] {
        &self.outcomes
    }

    fn bus(&self) -> GuestBus<'_> {
        GuestBus { host: &self.host, maps: &self.maps, vm: self.vm }
    }
}

impl GuestPlatform for SimVmm {
    fn tokens(&self) -> &TokenTable {
        self.rtas.tokens()
    }

    fn rtas(&mut self, buf: &mut [u8]) -> bool {
        let container;
        let backend: &dyn EehBackend = match self.model {
            EehModel::HostMapping => &self.host,
            EehModel::Container => {
                let pes = self.maps.vm(self.vm).map(|m| m.pes()).unwrap_or_default();
                container = ContainerPath::new(self.host.clone(), pes);
                &container
            }
        };
        let mut ctx = RtasContext { maps: &self.maps, backend, memory: &mut self.memory };
        match self.rtas.serve(buf, &mut ctx) {
            Ok(outcome) => {
                self.outcomes.push(outcome);
                true
            }
            Err(_) => false,
        }
    }

    fn config_read32(&mut self, dev: GuestAddr, offset: u16) -> u32 {
        self.bus().config_read32(dev, offset)
    }

    fn config_write32(&mut self, dev: GuestAddr, offset: u16, value: u32) {
        self.bus().config_write32(dev, offset, value);
    }

    fn mmio_read32(&mut self, dev: GuestAddr, bar: u8, offset: u64) -> u32 {
        self.bus().mmio_read32(dev, bar, offset)
    }

    fn mmio_write32(&mut self, dev: GuestAddr, bar: u8, offset: u64, value: u32) {
        self.bus().mmio_write32(dev, bar, offset, value);
    }

    fn clock(&self) -> &dyn Clock {
        self.host.clock().as_ref()
    }
}
