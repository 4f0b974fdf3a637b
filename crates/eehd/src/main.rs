//! `eehd`: serve one EEH host (simulated or Linux) to VMMs and operators on
//! a Unix socket. See docs/protocol.md for the protocol and
//! contrib/systemd/ for the units.

use std::net::TcpListener;
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Parser;
use eehd::core::Core;
use eehd::host::DaemonHost;
use eehd::metrics::Metrics;
use eehd::policy::Policy;
use eehd::seqpacket;
use eehd::server::{Limits, Server};
use eehd::shared::SharedMemory;
use eehd::store::Store;
use sd_notify::NotifyState;
use vfio_eeh_linux::sysfs::Sysfs;
use vfio_eeh_linux::VfioHost;
use vfio_eeh_sim::clock::{Clock, MonotonicClock, VirtualClock};
use vfio_eeh_sim::config::SimConfig;
use vfio_eeh_sim::spec::TopologySpec;
use vfio_eeh_sim::SimHost;

/// Serve one EEH host to VMMs (one VM each) and operators.
#[derive(Debug, Parser)]
#[command(name = "eehd", version)]
struct Args {
    /// The host to own.
    #[arg(long, value_enum, default_value_t = HostChoice::Auto)]
    host: HostChoice,
    /// The simulated host's topology file [default: the built-in host].
    #[arg(long, value_name = "FILE")]
    topology: Option<PathBuf>,
    /// The simulated host's clock: real time, or virtual time (resets take
    /// no wall time; for tests and benchmarks).
    #[arg(long, value_enum, default_value_t = ClockChoice::Monotonic)]
    sim_clock: ClockChoice,
    /// The Linux host's sysfs root.
    #[arg(long, value_name = "DIR", default_value = "/sys")]
    sysfs: PathBuf,
    /// The Linux host's VFIO device directory.
    #[arg(long, value_name = "DIR", default_value = "/dev/vfio")]
    dev_vfio: PathBuf,
    /// The socket [default: /run/eehd/eehd.sock as root, $XDG_RUNTIME_DIR/eehd.sock otherwise].
    /// Ignored under systemd socket activation.
    #[arg(long, value_name = "PATH")]
    socket: Option<PathBuf>,
    /// The state directory [default: /var/lib/eehd as root, $XDG_STATE_HOME/eehd otherwise].
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
    /// Who may act as which VM, and who is an operator [default: root only].
    #[arg(long, value_name = "FILE")]
    policy: Option<PathBuf>,
    /// Serve Prometheus metrics over HTTP on this address (e.g. 127.0.0.1:9464).
    #[arg(long, value_name = "ADDR")]
    metrics: Option<String>,
    /// Most connections at once.
    #[arg(long, default_value_t = Limits::default().max_clients)]
    max_clients: usize,
    /// Seconds a connection may take to say hello.
    #[arg(long, value_name = "SECS", default_value_t = Limits::default().hello_timeout.as_secs_f64())]
    hello_timeout: f64,
    /// Seconds a connection may stay silent (subscribed ones may always).
    #[arg(long, value_name = "SECS", default_value_t = Limits::default().idle_timeout.as_secs_f64())]
    idle_timeout: f64,
    /// More logging on stderr (-v debug, -vv trace).
    #[arg(short, long, action = clap::ArgAction::Count)]
    verbose: u8,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum HostChoice {
    /// The simulated PowerNV host.
    Sim,
    /// The real Linux host (sysfs and VFIO).
    Linux,
    /// Linux where VFIO EEH is present, else the simulator.
    Auto,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum ClockChoice {
    Monotonic,
    Virtual,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let level = match args.verbose {
        0 => tracing::Level::INFO,
        1 => tracing::Level::DEBUG,
        _ => tracing::Level::TRACE,
    };
    tracing_subscriber::fmt().with_writer(std::io::stderr).with_max_level(level).with_target(false).init();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error:#}");
            eprintln!("eehd: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> anyhow::Result<()> {
    let policy = match &args.policy {
        Some(path) => Policy::from_file(path)?,
        None => Policy::default(),
    };
    let linux = VfioHost::new(Sysfs::new(args.sysfs.clone()), &args.dev_vfio);
    let use_linux = match args.host {
        HostChoice::Sim => false,
        HostChoice::Linux => true,
        HostChoice::Auto => match linux.eeh_support() {
            Ok(()) => true,
            Err(why) => {
                tracing::info!("host: sim (no VFIO EEH: {})", vfio_eeh::error_chain(&why));
                false
            }
        },
    };
    if use_linux && args.topology.is_some() {
        bail!("--topology describes the simulated host; it does not apply to --host linux");
    }
    let root = rustix::process::getuid().is_root();
    let state_dir = match &args.state_dir {
        Some(dir) => dir.clone(),
        None => default_state_dir(root)?,
    };
    if use_linux {
        return serve(args, linux, policy, &state_dir, Extras::default());
    }
    let virtual_clock = (args.sim_clock == ClockChoice::Virtual).then(|| Arc::new(VirtualClock::new()));
    let clock: Arc<dyn Clock> = match &virtual_clock {
        Some(clock) => clock.clone(),
        None => Arc::new(MonotonicClock::new()),
    };
    let spec = match &args.topology {
        Some(path) => TopologySpec::from_toml_file(path)?,
        None => TopologySpec::builtin(),
    };
    // Device memory lives in files VMMs map (docs/shared-host.md).
    let shared = SharedMemory::open(&state_dir.join("shared"), &spec)?;
    let sim = SimHost::with_bar_memory(&spec, SimConfig::default(), clock, |device| shared.bar_memory(device));
    serve(args, sim, policy, &state_dir, Extras { virtual_clock, shared: Some(shared) })
}

/// What only the simulated host brings to the core.
#[derive(Default)]
struct Extras {
    virtual_clock: Option<Arc<VirtualClock>>,
    shared: Option<Arc<SharedMemory>>,
}

fn serve<H: DaemonHost + 'static>(
    args: &Args,
    host: H,
    policy: Policy,
    state_dir: &Path,
    extras: Extras,
) -> anyhow::Result<()> {
    raise_fd_limit();
    let root = rustix::process::getuid().is_root();
    let store = Store::open(state_dir)?;
    let metrics = Arc::new(Metrics::default());
    let mut core = Core::start(host, policy, store, Arc::clone(&metrics))?;
    if let Some(clock) = extras.virtual_clock {
        core = core.with_virtual_clock(clock);
    }
    if let Some(shared) = extras.shared {
        core = core.with_shared_memory(shared);
    }
    let core = Arc::new(core);
    tracing::info!("host: {}; state in {}", core.host().kind(), state_dir.display());

    let (listener, bound) = listener(args, root)?;
    if let Some(addr) = &args.metrics {
        let tcp = TcpListener::bind(addr).with_context(|| format!("Cannot listen for metrics on {addr}"))?;
        tracing::info!("metrics on http://{}/metrics", tcp.local_addr()?);
        std::thread::Builder::new().name("metrics".into()).spawn(move || eehd::metrics::serve(tcp, metrics))?;
    }

    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(signal, Arc::clone(&stop))?;
    }
    let limits = Limits {
        max_clients: args.max_clients,
        hello_timeout: Duration::from_secs_f64(args.hello_timeout),
        idle_timeout: Duration::from_secs_f64(args.idle_timeout),
        ..Limits::default()
    };
    let server = Server::new(Arc::clone(&core), limits, stop);
    notify(&[NotifyState::Ready]);
    tracing::info!("ready");
    let watchdog = sd_notify::watchdog_enabled().map(|usec| usec / 2);
    let mut last_ping = Instant::now();
    server.run(
        &listener,
        Duration::from_secs(10),
        || {
            if watchdog.is_some_and(|every| last_ping.elapsed() >= every) {
                notify(&[NotifyState::Watchdog]);
                last_ping = Instant::now();
            }
        },
        || {
            tracing::info!("stopping: refusing new requests, finishing those in progress");
            notify(&[NotifyState::Stopping]);
        },
    )?;
    core.persist().context("Cannot save the state on the way out")?;
    if let Some(path) = bound {
        let _ = std::fs::remove_file(path);
    }
    tracing::info!("stopped");
    Ok(())
}

/// Tells systemd, when run under it.
fn notify(states: &[NotifyState<'_>]) {
    if let Err(error) = sd_notify::notify(states) {
        tracing::debug!("sd_notify: {error}");
    }
}

/// The socket systemd passed (`LISTEN_FDS`), or one bound at the path;
/// with the path to remove on the way out.
fn listener(args: &Args, root: bool) -> anyhow::Result<(OwnedFd, Option<PathBuf>)> {
    let mut passed = sd_notify::listen_fds().context("Bad LISTEN_FDS / LISTEN_PID")?;
    if let Some(raw) = passed.next() {
        // SAFETY: systemd passes listening sockets from fd 3 on (LISTEN_FDS,
        // checked against LISTEN_PID by `listen_fds`); nothing else in this
        // process owns fd `raw`, so taking ownership once is sound.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        if !seqpacket::is_seqpacket(&fd) {
            bail!("The socket systemd passed (fd {raw}) is not SOCK_SEQPACKET; set ListenSequentialPacket= in eehd.socket");
        }
        tracing::info!("listening on the socket systemd passed (fd {raw})");
        return Ok((fd, None));
    }
    let path = match &args.socket {
        Some(path) => path.clone(),
        None if root => PathBuf::from("/run/eehd/eehd.sock"),
        None => {
            PathBuf::from(std::env::var_os("XDG_RUNTIME_DIR").context("XDG_RUNTIME_DIR is not set; give --socket")?)
                .join("eehd.sock")
        }
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("Cannot create {}", dir.display()))?;
    }
    remove_stale(&path)?;
    let fd = seqpacket::listen(&path, 1024).with_context(|| format!("Cannot listen on {}", path.display()))?;
    // Anyone may connect; what a peer may do is the policy's decision (SO_PEERCRED).
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666))?;
    tracing::info!("listening on {}", path.display());
    Ok((fd, Some(path)))
}

/// Removes a socket left by a daemon that died; refuses if one answers.
fn remove_stale(path: &Path) -> anyhow::Result<()> {
    if std::fs::symlink_metadata(path).is_err() {
        return Ok(());
    }
    if seqpacket::connect(path).is_ok() {
        bail!("Another eehd is serving {}", path.display());
    }
    std::fs::remove_file(path).with_context(|| format!("Cannot remove the stale socket {}", path.display()))
}

fn default_state_dir(root: bool) -> anyhow::Result<PathBuf> {
    if root {
        return Ok(PathBuf::from("/var/lib/eehd"));
    }
    let base = match std::env::var_os("XDG_STATE_HOME") {
        Some(dir) => PathBuf::from(dir),
        None => {
            PathBuf::from(std::env::var_os("HOME").context("Neither XDG_STATE_HOME nor HOME is set; give --state-dir")?)
                .join(".local/state")
        }
    };
    Ok(base.join("eehd"))
}

/// One thread and one fd per connection: take every fd the hard limit allows.
fn raise_fd_limit() {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let limit = getrlimit(Resource::Nofile);
    if limit.current < limit.maximum {
        let raised = rustix::process::Rlimit { current: limit.maximum, maximum: limit.maximum };
        if let Err(error) = setrlimit(Resource::Nofile, raised) {
            tracing::debug!("cannot raise the fd limit: {error}");
        }
    }
}
