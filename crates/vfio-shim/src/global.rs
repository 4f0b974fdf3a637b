//! The process-wide emulator of the preload library, created on the first
//! open below `/dev/vfio/` from the environment ([`crate::config`]): on a
//! simulated host in this process, or on eehd's (`VFIO_EEH_SHIM_CONNECT`).

use std::sync::{Arc, OnceLock};

use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use vfio_eeh_sim::clock::MonotonicClock;
use vfio_eeh_sim::config::{DeactivatePolicy, InjectionMode, SimConfig};
use vfio_eeh_sim::spec::{TopologyError, TopologySpec};
use vfio_eeh_sim::SimHost;

use crate::config::{ConfigError, Injection, ResetMode, ShimConfig};
use crate::vfio::Emulator;

/// Why the emulation could not start.
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    /// The environment holds an invalid value.
    #[error("Bad configuration")]
    Config(#[from] ConfigError),
    /// The topology file could not be loaded.
    #[error("Cannot load the simulated topology")]
    Topology(#[from] TopologyError),
    /// The control socket could not be served.
    #[error("Cannot serve the control socket")]
    Control(#[source] crate::control::ControlError),
}

/// The simulated host a configuration describes, on the monotonic clock.
pub fn simulated_host(config: &ShimConfig) -> Result<SimHost, TopologyError> {
    let spec = topology(config)?;
    let injection = match config.injection {
        Injection::Immediate => InjectionMode::Immediate,
        Injection::OnAccess => InjectionMode::OnAccess,
    };
    let deactivate = match config.reset {
        ResetMode::Blocking => DeactivatePolicy::Blocking,
        ResetMode::ReportUnavailable => DeactivatePolicy::Reporting,
    };
    let sim = SimConfig { injection, deactivate, ..SimConfig::default() };
    Ok(SimHost::new(&spec, sim, Arc::new(MonotonicClock::new())))
}

/// The configured topology, or the built-in one.
fn topology(config: &ShimConfig) -> Result<TopologySpec, TopologyError> {
    match &config.topology {
        Some(path) => TopologySpec::from_toml_file(path),
        None => Ok(TopologySpec::builtin()),
    }
}

/// The log filter a [`ShimConfig::log`] value spells: comma-separated
/// `level` and `target=level` directives. A directive that does not parse is
/// left out, with a message on stderr, and the others still apply.
fn log_filter(spec: &str) -> Targets {
    let valid: Vec<&str> = spec
        .split(',')
        .filter(|directive| !directive.trim().is_empty())
        .filter(|directive| match directive.parse::<Targets>() {
            Ok(_) => true,
            Err(e) => {
                eprintln!("vfio-eeh-shim: Ignoring the log directive {directive:?}: {e}");
                false
            }
        })
        .collect();
    if valid.is_empty() {
        // `Targets` would read an empty string as "everything".
        return Targets::new();
    }
    valid.join(",").parse().unwrap_or_default()
}

static EMULATOR: OnceLock<Option<(Arc<Emulator>, ShimConfig)>> = OnceLock::new();

/// The emulator, if it was started.
pub(crate) fn get() -> Option<&'static Emulator> {
    EMULATOR.get().and_then(Option::as_ref).map(|(emu, _)| &**emu)
}

/// Starts the emulator once; `None` (and a message on stderr) if it cannot.
pub(crate) fn init() -> Option<&'static Emulator> {
    EMULATOR
        .get_or_init(|| match start() {
            Ok(started) => Some(started),
            Err(e) => {
                eprintln!("vfio-eeh-shim: {}", vfio_eeh::error_chain(&e));
                None
            }
        })
        .as_ref()
        .map(|(emu, _)| &**emu)
}

fn start() -> Result<(Arc<Emulator>, ShimConfig), InitError> {
    let config = ShimConfig::from_env()?;
    let filter = log_filter(config.log.as_deref().unwrap_or("warn"));
    let subscriber = tracing_subscriber::fmt().with_writer(std::io::stderr).finish().with(filter);
    // Another subscriber may already be installed (a Rust host program).
    let _ = subscriber.try_init();
    crate::fork::register();
    let emu = match &config.connect {
        Some(socket) => {
            // The topology describes eehd's host (as for the sysfs tree).
            let groups = topology(&config)?.phbs().iter().map(|phb| phb.pes.len()).sum();
            let host = crate::daemon::EehdHost::new(socket.clone(), config.vm_name(), config.virtual_phbs(groups));
            Arc::new(Emulator::on_eehd(Arc::new(host), config.clone()))
        }
        None => Arc::new(Emulator::new(Arc::new(simulated_host(&config)?), config.clone())),
    };
    if let Some(path) = &config.socket {
        crate::control::serve(path, Arc::clone(&emu)).map_err(InitError::Control)?;
    }
    #[cfg(feature = "preload")]
    crate::preload::register_exit_hook();
    tracing::info!(?config, "VFIO emulation started");
    Ok((emu, config))
}

/// Writes the op log to the configured path, if any.
#[cfg(feature = "preload")]
pub(crate) fn write_oplog() {
    let Some((emu, config)) = EMULATOR.get().and_then(Option::as_ref) else { return };
    let Some(path) = &config.oplog else { return };
    let written = serde_json::to_vec_pretty(&emu.log().dump())
        .map_err(std::io::Error::other)
        .and_then(|json| std::fs::write(path, json));
    if let Err(e) = written {
        eprintln!("vfio-eeh-shim: Cannot write the op log to {}: {e}", path.display());
    }
}

#[cfg(test)]
mod tests {
    use tracing::Level;

    use super::*;

    #[test]
    fn log_filter_keeps_the_directives_that_parse() {
        let filter = log_filter("warn,vfio_eeh_shim=trace");
        assert!(filter.would_enable("vfio_eeh_shim::vfio", &Level::TRACE));
        assert!(filter.would_enable("other", &Level::WARN));
        assert!(!filter.would_enable("other", &Level::INFO));

        let filter = log_filter("info,vfio_eeh_shim=loud");
        assert!(filter.would_enable("vfio_eeh_shim", &Level::INFO), "the bad directive is left out");
        assert!(!filter.would_enable("vfio_eeh_shim", &Level::DEBUG));
        assert!(!log_filter("").would_enable("any", &Level::ERROR), "an empty filter enables nothing");
    }
}
