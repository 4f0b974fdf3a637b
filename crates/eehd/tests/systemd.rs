//! eehd under systemd, as systemd runs it: readiness, watchdog and stopping
//! through `NOTIFY_SOCKET`, and a listening socket passed by socket
//! activation (`LISTEN_FDS`/`LISTEN_PID`, fd 3), as `eehd.socket` does.

mod common;

use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use eehd::client::Client;
use eehd::protocol::{Answer, Request};

/// Everything the daemon told the notify socket within `wait`, until a
/// message containing `until` arrived.
fn notifications_until(socket: &UnixDatagram, until: &str, wait: Duration) -> Vec<String> {
    socket.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    let deadline = Instant::now() + wait;
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        if let Ok(n) = socket.recv(&mut buf) {
            let message = String::from_utf8_lossy(&buf[..n]).into_owned();
            let done = message.lines().any(|line| line == until);
            seen.push(message);
            if done {
                return seen;
            }
        }
    }
    panic!("no {until} within {wait:?}; got {seen:?}");
}

#[test]
fn tells_systemd_ready_watchdog_and_stopping() {
    let dir = tempfile::tempdir().unwrap();
    let notify_path = dir.path().join("notify");
    let notify = UnixDatagram::bind(&notify_path).unwrap();
    let daemon = common::Daemon::start_with_env(
        dir.path(),
        &[],
        &[("NOTIFY_SOCKET", notify_path.as_os_str()), ("WATCHDOG_USEC", "200000".as_ref())],
    );
    notifications_until(&notify, "READY=1", Duration::from_secs(20));
    // WatchdogSec=200ms: pinged at least every half of it.
    notifications_until(&notify, "WATCHDOG=1", Duration::from_secs(5));
    notifications_until(&notify, "WATCHDOG=1", Duration::from_secs(5));
    daemon.signal(rustix::process::Signal::TERM);
    notifications_until(&notify, "STOPPING=1", Duration::from_secs(20));
    assert!(daemon.wait().success());
}

/// A socket unit's listening socket: bound and listening before eehd
/// starts, handed over as fd 3 with `LISTEN_FDS=1` and `LISTEN_PID` set to
/// eehd's own pid (a small Python launcher binds it and `exec`s eehd, so
/// the pid is the same). eehd is given no `--socket`: it must serve the
/// socket it was passed, and leave its path alone on the way out.
#[test]
fn serves_the_socket_systemd_passes() {
    let dir = tempfile::tempdir().unwrap();
    let topology = dir.path().join("topology.toml");
    std::fs::write(&topology, common::topology()).unwrap();
    let socket = dir.path().join("activated.sock");
    const LAUNCHER: &str = "
import os, socket, sys
path, eehd = sys.argv[1], sys.argv[2]
s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
s.bind(path)
s.listen(16)
if s.fileno() != 3:
    os.dup2(s.fileno(), 3)
os.set_inheritable(3, True)
os.environ['LISTEN_FDS'] = '1'
os.environ['LISTEN_PID'] = str(os.getpid())
os.execv(eehd, [eehd] + sys.argv[3:])
";
    let mut child = Command::new("python3")
        .args(["-c", LAUNCHER])
        .arg(&socket)
        .arg(env!("CARGO_BIN_EXE_eehd"))
        .args(["--host", "sim", "--sim-clock", "virtual", "--topology"])
        .arg(&topology)
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("python3 runs the launcher");
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut client = loop {
        match Client::connect(&socket, None) {
            Ok(client) => break client,
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => {
                let _ = child.kill();
                panic!("eehd did not serve the passed socket: {e}");
            }
        }
    };
    assert!(matches!(client.request(&Request::Claims).unwrap(), Answer::Claims { .. }));
    drop(client);
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(i32::try_from(child.id()).unwrap()).unwrap(),
        rustix::process::Signal::TERM,
    )
    .unwrap();
    assert!(child.wait().unwrap().success());
    // The socket unit owns the path: eehd did not remove it.
    assert!(socket.exists());
}
