//! The preload library's configuration, read from the environment of the
//! process it is loaded into.
//!
//! | variable | values | default |
//! |---|---|---|
//! | [`ENV_TOPOLOGY`] `VFIO_EEH_SHIM_TOPOLOGY` | path of a simulator topology TOML file | the simulator's built-in host |
//! | [`ENV_IOMMU`] `VFIO_EEH_SHIM_IOMMU` | `spapr-tce-v2` (the POWER host path), `type1v2` (type1 as Linux has it: no EEH once set) or `type1v2-with-eeh` (a test mode no kernel has: EEH on a type1 container) | `spapr-tce-v2` |
//! | [`ENV_RESET`] `VFIO_EEH_SHIM_RESET` | `blocking` (like Linux: a reset sleeps its 250 ms hold, a deactivate its 1800 ms settle) or `report-unavailable` (both return at once; `GET_STATE` answers 5, unavailable, with the true remaining delay until the PE is usable) | `blocking` |
//! | [`ENV_PLATFORM`] `VFIO_EEH_SHIM_PLATFORM` | `none` (the address-mapping ioctl answers `ENOTTY`) or `powernv` (it maps devices in this VM's address table, which the exported RTAS entry point resolves through) | `none` |
//! | [`ENV_PHBS`] `VFIO_EEH_SHIM_PHBS` | the VM's virtual PHBs: comma-separated BUIDs (`0x800000020000001,0x800000020000002`) | QEMU's sPAPR PHBs 0 to N, N the host's group count: `0x800000020000000` + index, every PHB `eehctl shim --print qemu-args` can name |
//! | [`ENV_FIRMWARE`] `VFIO_EEH_SHIM_FIRMWARE` | `phb4` (like skiboot on POWER9: only config-space injection, other functions `EIO`) or `any` | `phb4` |
//! | [`ENV_INJECTION`] `VFIO_EEH_SHIM_INJECTION` | `immediate` (an accepted injection freezes the PE at once) or `on-access` (the first matching access does) | `immediate` |
//! | [`ENV_CONNECT`] `VFIO_EEH_SHIM_CONNECT` | path of eehd's socket: serve the devices of eehd's shared host (docs/shared-host.md) instead of a simulated host in this process; the simulator settings (topology, injection, reset) are then eehd's | the host in this process |
//! | [`ENV_VM`] `VFIO_EEH_SHIM_VM` | with `VFIO_EEH_SHIM_CONNECT`: the VM this VMM acts for (1 to 64 of `A-Z a-z 0-9 . _ -`; eehd's policy must allow this user to act as it) | `vmm-<pid>` |
//! | [`ENV_SOCKET`] `VFIO_EEH_SHIM_SOCKET` | path of the control socket to serve (under eehd it answers only `hello` and `oplog`) | no socket |
//! | [`ENV_OPLOG`] `VFIO_EEH_SHIM_OPLOG` | path where the JSON op log is written at exit | not written |
//! | [`ENV_LOG`] `VFIO_EEH_SHIM_LOG` | comma-separated `level` and `target=level` directives (`info`, `warn,vfio_eeh_shim=trace`, ...; `tracing_subscriber`'s `Targets` syntax), logs go to stderr | `warn` |
//!
//! The simulator runs on the real monotonic clock.

use std::path::PathBuf;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use vfio_eeh::addr::Buid;

/// Topology file of the simulated host.
pub const ENV_TOPOLOGY: &str = "VFIO_EEH_SHIM_TOPOLOGY";
/// Which IOMMU the emulated container advertises.
pub const ENV_IOMMU: &str = "VFIO_EEH_SHIM_IOMMU";
/// Platform hook for the address-mapping ioctl.
pub const ENV_PLATFORM: &str = "VFIO_EEH_SHIM_PLATFORM";
/// Which injection functions the emulated firmware accepts.
pub const ENV_FIRMWARE: &str = "VFIO_EEH_SHIM_FIRMWARE";
/// When an accepted injection freezes the PE.
pub const ENV_INJECTION: &str = "VFIO_EEH_SHIM_INJECTION";
/// How the host's PE resets wait.
pub const ENV_RESET: &str = "VFIO_EEH_SHIM_RESET";
/// The VM's virtual PHBs (BUIDs).
pub const ENV_PHBS: &str = "VFIO_EEH_SHIM_PHBS";
/// eehd's socket: the host is eehd's.
pub const ENV_CONNECT: &str = "VFIO_EEH_SHIM_CONNECT";
/// The VM acted for under eehd.
pub const ENV_VM: &str = "VFIO_EEH_SHIM_VM";
/// Control socket path.
pub const ENV_SOCKET: &str = "VFIO_EEH_SHIM_SOCKET";
/// Op-log JSON path, written at exit.
pub const ENV_OPLOG: &str = "VFIO_EEH_SHIM_OPLOG";
/// Log filter.
pub const ENV_LOG: &str = "VFIO_EEH_SHIM_LOG";

/// The IOMMU the emulated container offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum IommuMode {
    /// sPAPR TCE (v1 and v2) and `VFIO_EEH`, as a POWER host.
    #[default]
    SpaprTceV2,
    /// Type1 (v1 and v2), as Linux's `vfio_iommu_type1` has it: QEMU keeps
    /// its own TCE emulation and maps guest RAM with `MAP_DMA`. EEH lives in
    /// the sPAPR TCE driver only, so once `SET_IOMMU` chose type1,
    /// `CHECK_EXTENSION(VFIO_EEH)` answers 0 and `VFIO_EEH_PE_OP` fails with
    /// `ENOTTY` (research Q1). A bare container still answers 1: the VFIO
    /// core asks every registered IOMMU driver, and this emulated host is a
    /// PowerNV host with EEH on.
    Type1V2,
    /// A test mode no kernel has: type1 as [`IommuMode::Type1V2`], but
    /// `VFIO_EEH` answered 1 and `VFIO_EEH_PE_OP` served after
    /// `SET_IOMMU(type1)`, so that QEMU's type1 path can be driven through a
    /// guest's EEH recovery.
    Type1V2WithEeh,
}

impl IommuMode {
    /// Whether the container offers type1 rather than sPAPR TCE.
    pub const fn is_type1(self) -> bool {
        matches!(self, IommuMode::Type1V2 | IommuMode::Type1V2WithEeh)
    }
}

/// How the emulated host's PE resets wait (the simulator's
/// [`DeactivatePolicy`](vfio_eeh_sim::config::DeactivatePolicy)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ResetMode {
    /// Like Linux (`eeh_pe_reset`): `RESET_HOT`/`RESET_FUNDAMENTAL` sleep the
    /// 250 ms hold time and `RESET_DEACTIVATE` the 1800 ms settle time
    /// before returning, with the PE usable.
    #[default]
    Blocking,
    /// Every reset op returns at once; until the PE is usable `GET_STATE`
    /// answers 5 (unavailable) with the true remaining delay.
    ReportUnavailable,
}

/// What the address-mapping ioctl on device fds does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Platform {
    /// No platform support: `ENOTTY`, like every upstream kernel.
    #[default]
    None,
    /// PowerNV with the seed's hook: the mapping is validated and stored.
    Powernv,
}

/// Which error-injection functions the emulated firmware carries out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Firmware {
    /// skiboot on POWER9 (PHB4): only config-space functions (4, 5, 10, 11);
    /// the others fail in OPAL, which Linux reports as `EIO`.
    #[default]
    Phb4,
    /// Every function 0..=19.
    Any,
}

/// When an injected error takes effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Injection {
    /// The PE freezes as soon as the injection is accepted.
    #[default]
    Immediate,
    /// The injection is armed; the first matching access freezes the PE.
    OnAccess,
}

/// A configuration value that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Invalid {variable}={value:?}: expected one of {expected}")]
pub struct ConfigError {
    /// The variable.
    pub variable: &'static str,
    /// Its value.
    pub value: String,
    /// The accepted values.
    pub expected: &'static str,
}

/// The whole configuration (see the module docs for the variables).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShimConfig {
    /// Topology file; `None` is the built-in host.
    pub topology: Option<PathBuf>,
    /// Advertised IOMMU.
    pub iommu: IommuMode,
    /// Address-mapping hook.
    pub platform: Platform,
    /// The VM's virtual PHBs; `None` is QEMU's sPAPR PHBs 0 to N, N the
    /// host's group count.
    pub phbs: Option<Vec<Buid>>,
    /// Injection functions the firmware accepts.
    pub firmware: Firmware,
    /// When injections freeze.
    pub injection: Injection,
    /// How resets wait.
    pub reset: ResetMode,
    /// eehd's socket; `None` is the simulated host in this process.
    pub connect: Option<PathBuf>,
    /// The VM acted for under eehd; `None` is `vmm-<pid>`.
    pub vm: Option<String>,
    /// Control socket.
    pub socket: Option<PathBuf>,
    /// Op-log file.
    pub oplog: Option<PathBuf>,
    /// Log filter; `None` is `warn`.
    pub log: Option<String>,
}

/// The spellings of an enum's values, for parsing and for `to_env`.
trait EnvValue: Sized + Copy + 'static {
    const VALUES: &'static [(&'static str, Self)];
    const EXPECTED: &'static str;

    fn parse(variable: &'static str, value: &str) -> Result<Self, ConfigError> {
        Self::VALUES.iter().find(|(name, _)| *name == value).map(|(_, v)| *v).ok_or_else(|| ConfigError {
            variable,
            value: value.to_owned(),
            expected: Self::EXPECTED,
        })
    }
}

impl EnvValue for IommuMode {
    const VALUES: &'static [(&'static str, Self)] = &[
        ("spapr-tce-v2", IommuMode::SpaprTceV2),
        ("type1v2", IommuMode::Type1V2),
        ("type1v2-with-eeh", IommuMode::Type1V2WithEeh),
    ];
    const EXPECTED: &'static str = "spapr-tce-v2, type1v2, type1v2-with-eeh";
}

impl EnvValue for ResetMode {
    const VALUES: &'static [(&'static str, Self)] =
        &[("blocking", ResetMode::Blocking), ("report-unavailable", ResetMode::ReportUnavailable)];
    const EXPECTED: &'static str = "blocking, report-unavailable";
}

impl EnvValue for Platform {
    const VALUES: &'static [(&'static str, Self)] = &[("none", Platform::None), ("powernv", Platform::Powernv)];
    const EXPECTED: &'static str = "none, powernv";
}

impl EnvValue for Firmware {
    const VALUES: &'static [(&'static str, Self)] = &[("phb4", Firmware::Phb4), ("any", Firmware::Any)];
    const EXPECTED: &'static str = "phb4, any";
}

impl EnvValue for Injection {
    const VALUES: &'static [(&'static str, Self)] =
        &[("immediate", Injection::Immediate), ("on-access", Injection::OnAccess)];
    const EXPECTED: &'static str = "immediate, on-access";
}

fn name_of<T: EnvValue + PartialEq>(value: T) -> &'static str {
    T::VALUES.iter().find(|(_, v)| *v == value).map_or("", |(name, _)| name)
}

macro_rules! impl_from_str {
    ($($ty:ty => $var:expr),*) => {$(
        impl FromStr for $ty {
            type Err = ConfigError;
            fn from_str(s: &str) -> Result<Self, ConfigError> {
                <$ty as EnvValue>::parse($var, s)
            }
        }
    )*};
}
impl_from_str!(IommuMode => ENV_IOMMU, Platform => ENV_PLATFORM, Firmware => ENV_FIRMWARE, Injection => ENV_INJECTION, ResetMode => ENV_RESET);

impl ShimConfig {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the configuration through `lookup` (a variable's value, or
    /// `None` when unset). Empty values count as unset.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |name: &str| lookup(name).filter(|v| !v.is_empty());
        Ok(ShimConfig {
            topology: get(ENV_TOPOLOGY).map(PathBuf::from),
            iommu: get(ENV_IOMMU).map(|v| v.parse()).transpose()?.unwrap_or_default(),
            platform: get(ENV_PLATFORM).map(|v| v.parse()).transpose()?.unwrap_or_default(),
            phbs: get(ENV_PHBS).map(|v| parse_phbs(&v)).transpose()?,
            firmware: get(ENV_FIRMWARE).map(|v| v.parse()).transpose()?.unwrap_or_default(),
            injection: get(ENV_INJECTION).map(|v| v.parse()).transpose()?.unwrap_or_default(),
            reset: get(ENV_RESET).map(|v| v.parse()).transpose()?.unwrap_or_default(),
            connect: get(ENV_CONNECT).map(PathBuf::from),
            vm: get(ENV_VM),
            socket: get(ENV_SOCKET).map(PathBuf::from),
            oplog: get(ENV_OPLOG).map(PathBuf::from),
            log: get(ENV_LOG),
        })
    }

    /// The VM this VMM acts for under eehd.
    pub fn vm_name(&self) -> String {
        self.vm.clone().unwrap_or_else(|| format!("vmm-{}", std::process::id()))
    }

    /// The variables that reproduce this configuration in a child process.
    pub fn to_env(&self) -> Vec<(&'static str, String)> {
        let mut env = vec![
            (ENV_IOMMU, name_of(self.iommu).to_owned()),
            (ENV_PLATFORM, name_of(self.platform).to_owned()),
            (ENV_FIRMWARE, name_of(self.firmware).to_owned()),
            (ENV_INJECTION, name_of(self.injection).to_owned()),
            (ENV_RESET, name_of(self.reset).to_owned()),
        ];
        let paths = [
            (ENV_TOPOLOGY, &self.topology),
            (ENV_CONNECT, &self.connect),
            (ENV_SOCKET, &self.socket),
            (ENV_OPLOG, &self.oplog),
        ];
        env.extend(paths.into_iter().filter_map(|(k, v)| v.as_ref().map(|p| (k, p.display().to_string()))));
        env.extend(self.phbs.as_ref().map(|phbs| {
            let buids: Vec<String> = phbs.iter().map(ToString::to_string).collect();
            (ENV_PHBS, buids.join(","))
        }));
        env.extend(self.vm.clone().map(|vm| (ENV_VM, vm)));
        env.extend(self.log.clone().map(|l| (ENV_LOG, l)));
        env
    }

    /// The VM's virtual PHBs: the configured ones, or QEMU's sPAPR PHBs 0
    /// to `groups` (`SPAPR_PCI_BASE_BUID` + index, `spapr_phb_placement`),
    /// which covers the machine's default PHB and the one per PE that
    /// `eehctl shim --print qemu-args` adds for up to `groups` PEs.
    pub fn virtual_phbs(&self, groups: usize) -> Vec<Buid> {
        self.phbs.clone().unwrap_or_else(|| {
            (0..=u64::try_from(groups).unwrap_or(u64::MAX)).map(|index| Buid(Buid::SPAPR_BASE.0 + index)).collect()
        })
    }
}

/// Reads a comma-separated list of BUIDs.
fn parse_phbs(value: &str) -> Result<Vec<Buid>, ConfigError> {
    value.split(',').map(|buid| buid.trim().parse()).collect::<Result<_, _>>().map_err(|_| ConfigError {
        variable: ENV_PHBS,
        value: value.to_owned(),
        expected: "comma-separated hex BUIDs",
    })
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    #[test]
    fn defaults_are_the_power_host() {
        let config = ShimConfig::from_lookup(|_| None).unwrap();
        assert_eq!(config, ShimConfig::default());
        assert_eq!(config.iommu, IommuMode::SpaprTceV2);
        assert_eq!(config.platform, Platform::None);
        assert_eq!(config.firmware, Firmware::Phb4);
        assert_eq!(config.injection, Injection::Immediate);
        assert_eq!(config.reset, ResetMode::Blocking, "Linux-like resets by default");
    }

    #[test]
    fn round_trips_through_the_environment() {
        let config = ShimConfig {
            topology: Some("/t.toml".into()),
            iommu: IommuMode::Type1V2,
            platform: Platform::Powernv,
            phbs: Some(vec![Buid(0x800_0000_2000_0001), Buid(7)]),
            firmware: Firmware::Any,
            injection: Injection::OnAccess,
            reset: ResetMode::ReportUnavailable,
            connect: Some("/run/eehd/eehd.sock".into()),
            vm: Some("guest-a".into()),
            socket: Some("/run/s".into()),
            oplog: Some("/tmp/o.json".into()),
            log: Some("debug".into()),
        };
        let env: HashMap<_, _> = config.to_env().into_iter().collect();
        assert_eq!(ShimConfig::from_lookup(|k| env.get(k).cloned()).unwrap(), config);
    }

    #[test]
    fn the_virtual_phbs_default_to_qemus_spapr_phbs() {
        let config = ShimConfig::default();
        let phbs = config.virtual_phbs(2);
        assert_eq!(phbs, [Buid(0x800_0000_2000_0000), Buid(0x800_0000_2000_0001), Buid(0x800_0000_2000_0002)]);
        let chosen = ShimConfig::from_lookup(|k| (k == ENV_PHBS).then(|| "0x1, 0X800000020000005".to_owned())).unwrap();
        assert_eq!(chosen.virtual_phbs(2), [Buid(1), Buid(0x800_0000_2000_0005)]);
        let bad = ShimConfig::from_lookup(|k| (k == ENV_PHBS).then(|| "0x1,,zz".to_owned())).unwrap_err();
        assert_eq!(bad.variable, ENV_PHBS);
    }

    #[test]
    fn rejects_unknown_values_naming_the_variable() {
        let err = ShimConfig::from_lookup(|k| (k == ENV_IOMMU).then(|| "type9".to_owned())).unwrap_err();
        assert_eq!(
            err.to_string(),
            "Invalid VFIO_EEH_SHIM_IOMMU=\"type9\": expected one of spapr-tce-v2, type1v2, type1v2-with-eeh"
        );
    }
}
