//! Seeded fault campaigns: from a seed, inject random errors across the
//! host's PEs, make each fire with a matching access, and recover each
//! frozen PE the way a VFIO owner does (read the log, hot reset, deactivate,
//! configure). On a fresh host with a [`VirtualClock`](crate::clock::VirtualClock)
//! the same seed gives the same event sequence every time; PEs frozen too
//! often fail permanently, as the freeze policy says.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use vfio_eeh::addr::{ConfigAddr, PciAddr, PeId};
use vfio_eeh::backend::{BackendError, EehBackend};
use vfio_eeh::ops::{AccessKind, EehOp, ErrFunc, ErrInjection, ErrType, PeState, ResetKind};

use crate::access::DmaDir;
use crate::event::SimEvent;
use crate::spec::{BarKind, DeviceInfo};
use crate::SimHost;

/// A campaign's parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaultCampaign {
    /// The seed.
    pub seed: u64,
    /// How many errors to inject.
    pub faults: u32,
    /// Mean time between errors (uniform in 0..2×mean).
    pub mean_gap: Duration,
}

/// What a campaign did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CampaignReport {
    /// Errors injected.
    pub injected: u32,
    /// Frozen PEs brought back to normal.
    pub recovered: u32,
    /// PEs that failed permanently.
    pub failed: Vec<PeId>,
    /// The events the campaign caused, in order.
    pub events: Vec<SimEvent>,
}

/// One planned error: where it fires and the access that fires it.
struct Target {
    func: ErrFunc,
    addr: u64,
    access: Access,
}

enum Access {
    Bar { bar: u8, offset: u64, load: bool },
    Config { offset: u16, load: bool },
    Dma(DmaDir, u64),
}

fn pick_target(rng: &mut fastrand::Rng, dev: &DeviceInfo) -> Target {
    let has = |io: bool| dev.bars.iter().any(|b| (b.kind == BarKind::Io) == io);
    let funcs: Vec<ErrFunc> = ErrFunc::all()
        .filter(|f| match f.access() {
            AccessKind::IoLoad | AccessKind::IoStore => has(true),
            AccessKind::MemLoad | AccessKind::MemStore => has(false),
            _ => true,
        })
        .collect();
    let func = funcs[rng.usize(..funcs.len())];
    let kind = func.access();
    let load = matches!(kind, AccessKind::MemLoad | AccessKind::IoLoad | AccessKind::ConfigLoad);
    match kind {
        AccessKind::MemLoad | AccessKind::MemStore | AccessKind::IoLoad | AccessKind::IoStore => {
            let io = matches!(kind, AccessKind::IoLoad | AccessKind::IoStore);
            let bars: Vec<_> = dev.bars.iter().filter(|b| (b.kind == BarKind::Io) == io).collect();
            let bar = bars[rng.usize(..bars.len())];
            let offset = rng.u64(..bar.size / 4) * 4;
            Target { func, addr: bar.addr + offset, access: Access::Bar { bar: bar.index, offset, load } }
        }
        AccessKind::ConfigLoad | AccessKind::ConfigStore => {
            let offset = rng.u16(..1024) * 4;
            let addr = ConfigAddr::new(dev.addr.bus(), dev.addr.devfn(), offset).expect("Offset below 4096");
            Target { func, addr: u64::from(addr.raw()), access: Access::Config { offset, load } }
        }
        AccessKind::DmaRead | AccessKind::DmaWrite => {
            let iova = rng.u64(..) & !0xfff;
            let dir = if kind == AccessKind::DmaRead { DmaDir::Read } else { DmaDir::Write };
            Target { func, addr: iova, access: Access::Dma(dir, iova) }
        }
    }
}

fn perform(host: &SimHost, dev: PciAddr, access: &Access) {
    // The access is expected to fire the injection; its result is all-ones
    // or a refusal, which the campaign does not need.
    let _ = match *access {
        Access::Bar { bar, offset, load: true } => host.bar_read(dev, bar, offset, 4).map(drop),
        Access::Bar { bar, offset, load: false } => host.bar_write(dev, bar, offset, 4, 0x5a5a),
        Access::Config { offset, load: true } => host.config_read(dev, offset, 4).map(drop),
        Access::Config { offset, load: false } => host.config_write(dev, offset, 4, 0),
        Access::Dma(dir, iova) => host.dma(dev, dir, iova),
    };
}

fn permanently_failed(host: &SimHost, pe: PeId) -> Result<bool, BackendError> {
    Ok(host.status(pe)?.unavailable_for == Some(Duration::ZERO))
}

/// Recovers a frozen PE as a VFIO owner does; waits out a reporting host.
fn recover(host: &SimHost, pe: PeId) -> Result<(), BackendError> {
    host.error_log(pe)?;
    host.reset(pe, ResetKind::Hot)?;
    host.pe_op(pe, EehOp::ResetDeactivate)?;
    loop {
        let status = host.status(pe)?;
        match status.unavailable_for {
            Some(wait) if status.state == PeState::Unavailable && !wait.is_zero() => host.clock().sleep(wait),
            _ => break,
        }
    }
    host.pe_op(pe, EehOp::Configure).map(drop)
}

impl FaultCampaign {
    /// Runs the campaign on `host`, enabling EEH on every PE first.
    pub fn run(&self, host: &SimHost) -> Result<CampaignReport, BackendError> {
        let mut rng = fastrand::Rng::with_seed(self.seed);
        let start = host.events().last().map_or(0, |e| e.seq);
        let pes: Vec<PeId> = host.pe_ids().collect();
        for &pe in &pes {
            if !permanently_failed(host, pe)? {
                host.enable(pe)?;
            }
        }
        let mean = u64::try_from(self.mean_gap.as_nanos()).unwrap_or(u64::MAX / 2);
        let (mut injected, mut recovered) = (0, 0);
        for _ in 0..self.faults {
            host.clock().sleep(Duration::from_nanos(rng.u64(..=mean.saturating_mul(2))));
            let mut live = Vec::with_capacity(pes.len());
            for &pe in &pes {
                if !permanently_failed(host, pe)? {
                    live.push(pe);
                }
            }
            if live.is_empty() {
                break;
            }
            let pe = live[rng.usize(..live.len())];
            let devices = host.devices_of(pe)?;
            let dev = devices[rng.usize(..devices.len())];
            let target = pick_target(&mut rng, host.device(dev).map_err(|_| BackendError::NoDevice(dev))?);
            host.inject(
                pe,
                ErrInjection { kind: ErrType::Bus64, func: target.func, addr: target.addr, mask: u64::MAX },
            )?;
            injected += 1;
            perform(host, dev, &target.access);
            if host.status(pe)?.state == PeState::Stopped {
                recover(host, pe)?;
                recovered += 1;
            }
        }
        let mut failed = Vec::new();
        for &pe in &pes {
            if permanently_failed(host, pe)? {
                failed.push(pe);
            }
        }
        Ok(CampaignReport { injected, recovered, failed, events: host.events_after(start) })
    }
}
