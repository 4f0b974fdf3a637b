//! The preload library under a hostile or unlucky program
//! (tests/c/shim_hardening.c) and hostile control clients: closed and
//! replaced descriptors, many idle connections under a descriptor limit,
//! fork under load, descriptor races, bad ioctl pointers, another user's
//! connection, and what is already at the socket's path.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Builds the C program once per test binary.
fn program() -> PathBuf {
    static PROGRAM: OnceLock<PathBuf> = OnceLock::new();
    PROGRAM
        .get_or_init(|| {
            let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("shim_hardening");
            let status = Command::new("gcc")
                .args(["-O2", "-Wall", "-Wextra", "-Werror", "-pthread", "-o"])
                .arg(&out)
                .arg(common::repo().join("tests/c/shim_hardening.c"))
                .status()
                .expect("gcc runs");
            assert!(status.success(), "building tests/c/shim_hardening.c failed");
            out
        })
        .clone()
}

/// The program under the preload library with its control socket in `dir`.
fn command(dir: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(program());
    command
        .args(args)
        .env("LD_PRELOAD", common::preload_library())
        .env("VFIO_EEH_SHIM_SOCKET", dir.join("control.sock"))
        // Its own group: a hang kills its forked children too.
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

/// Waits for `child` (a process group leader) at most `limit`; a hang
/// kills its group and fails the test.
fn finish(mut child: Child, limit: Duration) -> Output {
    let deadline = Instant::now() + limit;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let group = rustix::process::Pid::from_child(&child);
            rustix::process::kill_process_group(group, rustix::process::Signal::KILL).unwrap();
            let out = child.wait_with_output().unwrap();
            panic!("hangs: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    // Children it left behind would hold its output open.
    let _ =
        rustix::process::kill_process_group(rustix::process::Pid::from_child(&child), rustix::process::Signal::KILL);
    child.wait_with_output().unwrap()
}

fn run(args: &[&str], limit: Duration) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let out = finish(command(dir.path(), args).spawn().unwrap(), limit);
    assert!(
        out.status.success(),
        "{args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

#[test]
fn a_daemon_closing_every_descriptor_leaves_the_control_socket_working() {
    run(&["closeall"], Duration::from_secs(60));
}

#[test]
fn idle_connections_take_no_descriptor_the_program_needs() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = command(dir.path(), &["irqs"]).stdin(Stdio::piped()).spawn().unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap()).read_line(&mut line).unwrap();
    assert_eq!(line, "ready\n");
    let socket = dir.path().join("control.sock");
    let idle: Vec<UnixStream> = (0..200).filter_map(|_| UnixStream::connect(&socket).ok()).collect();
    std::thread::sleep(Duration::from_millis(500));
    let status = std::fs::read_to_string(format!("/proc/{}/status", child.id())).unwrap();
    let threads: usize = status.lines().find_map(|l| l.strip_prefix("Threads:")).unwrap().trim().parse().unwrap();
    assert!(threads <= 20, "{threads} threads for {} idle connections", idle.len());
    child.stdin.as_mut().unwrap().write_all(b"go\n").unwrap();
    let out = finish(child, Duration::from_secs(30));
    assert!(out.status.success(), "{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
}

#[test]
fn a_child_forked_under_load_never_hangs() {
    run(&["fork", "400"], Duration::from_secs(120));
}

#[test]
fn the_descriptor_table_is_exact_under_concurrent_close_and_dup() {
    run(&["fdrace", "3"], Duration::from_secs(60));
}

#[test]
fn bad_ioctl_pointers_answer_efault() {
    run(&["efault"], Duration::from_secs(30));
}

/// Starts the emulation (and its socket) in a shell under the library.
fn vmm(dir: &Path, socket: &Path) -> Child {
    Command::new("sh")
        .args(["-c", "exec 3<>/dev/vfio/vfio; sleep 30"])
        .env("LD_PRELOAD", common::preload_library())
        .env("VFIO_EEH_SHIM_SOCKET", socket)
        .current_dir(dir)
        .process_group(0)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn wait_for_socket(socket: &Path) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !std::fs::symlink_metadata(socket).is_ok_and(|m| m.file_type().is_socket()) {
        assert!(Instant::now() < deadline, "no socket at {}", socket.display());
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn hello(socket: &Path) -> std::io::Result<String> {
    let mut stream = UnixStream::connect(socket)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.write_all(b"{\"request\":\"hello\"}\n")?;
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line)?;
    Ok(line)
}

/// Kills a process group leader's group (the shell and its `sleep`).
fn stop(child: Child) -> String {
    let group = rustix::process::Pid::from_child(&child);
    let _ = rustix::process::kill_process_group(group, rustix::process::Signal::KILL);
    let out = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn the_socket_replaces_only_a_stale_socket_of_its_user() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("control.sock");

    // A regular file stays, and the emulation does not start.
    std::fs::write(&socket, "keep me").unwrap();
    let out = Command::new("sh")
        .args(["-c", "exec 3<>/dev/vfio/vfio"])
        .env("LD_PRELOAD", common::preload_library())
        .env("VFIO_EEH_SHIM_SOCKET", &socket)
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("exists and is not a socket"), "{out:?}");
    assert_eq!(std::fs::read_to_string(&socket).unwrap(), "keep me");
    std::fs::remove_file(&socket).unwrap();

    // A stale socket is replaced; the new one is 0600 whatever the umask.
    drop(UnixListener::bind(&socket).unwrap());
    let first = Command::new("sh")
        .args(["-c", "umask 000; exec 3<>/dev/vfio/vfio; sleep 30"])
        .env("LD_PRELOAD", common::preload_library())
        .env("VFIO_EEH_SHIM_SOCKET", &socket)
        .process_group(0)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while hello(&socket).is_err() {
        assert!(Instant::now() < deadline, "the stale socket was not replaced");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(std::fs::metadata(&socket).unwrap().permissions().mode() & 0o777, 0o600);

    // A live socket of another VMM is left to it.
    let second = Command::new("sh")
        .args(["-c", "exec 3<>/dev/vfio/vfio"])
        .env("LD_PRELOAD", common::preload_library())
        .env("VFIO_EEH_SHIM_SOCKET", &socket)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(stderr.contains("is in use by a running process"), "{stderr}");
    assert!(hello(&socket).unwrap().contains("\"pid\":"), "the first VMM still answers");
    stop(first);
}

#[test]
fn another_users_connection_is_refused() {
    if !rustix::process::geteuid().is_root() {
        // Connecting as another user needs root (setpriv); CI runs as root.
        eprintln!("skipped: needs root to connect as another user");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let socket = dir.path().join("control.sock");
    let child = vmm(dir.path(), &socket);
    wait_for_socket(&socket);
    // Even with the socket opened up, the peer check refuses nobody.
    std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o777)).unwrap();
    let client = dir.path().join("client");
    std::fs::copy(program(), &client).unwrap();
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(&client)
        .arg("hello")
        .arg(&socket)
        .output()
        .unwrap();
    let answer = String::from_utf8_lossy(&out.stdout);
    assert_eq!(answer, "not answered\n", "{out:?}");
    assert!(hello(&socket).unwrap().contains("hello"), "the owner is answered");
    stop(child);
}
