//! What stops eehd from starting, and how it says so; metrics over HTTP.

mod common;

use std::io::{Read, Write};
use std::process::Command;

use common::Daemon;
use eehd::protocol::{InjectTarget, Request};
use vfio_eeh::addr::PeId;

/// Runs eehd expecting it to refuse to start; returns its stderr.
fn refused(dir: &std::path::Path, args: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_eehd"))
        .args(["--host", "sim", "--sim-clock", "virtual", "--socket"])
        .arg(dir.join("eehd.sock"))
        .arg("--state-dir")
        .arg(dir.join("state"))
        .args(args)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    String::from_utf8(output.stderr).unwrap()
}

#[test]
fn bad_policy_topology_or_state_files_stop_startup_naming_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.toml");
    std::fs::write(&policy, "[operators]\nuids = [0]\n\n[[vm]]\nnames = [\"a\"]\nuidz = [5]\n").unwrap();
    let stderr = refused(dir.path(), &["--policy", policy.to_str().unwrap()]);
    assert!(stderr.contains(&format!("{}:6: ", policy.display())), "{stderr}");

    let topology = dir.path().join("topology.toml");
    std::fs::write(&topology, "[[phb]]\ndomain = 0\n\n[[phb.pe]]\ngroup = \"one\"\n").unwrap();
    let stderr = refused(dir.path(), &["--topology", topology.to_str().unwrap()]);
    assert!(stderr.contains(&format!("{}:5: ", topology.display())), "{stderr}");

    let state = dir.path().join("state");
    std::fs::create_dir_all(&state).unwrap();
    std::fs::write(state.join("state.json"), "{\"schema_version\":1,\"crc32\":0,\"len\":2}\n{}").unwrap();
    let stderr = refused(dir.path(), &[]);
    assert!(stderr.contains("corrupt") && stderr.contains("mv "), "{stderr}");
    std::fs::write(state.join("state.json"), "{\"schema_version\":7,\"crc32\":0,\"len\":2}\n{}").unwrap();
    let stderr = refused(dir.path(), &[]);
    assert!(stderr.contains("schema version 7") && stderr.contains("mv "), "{stderr}");
}

#[test]
fn metrics_are_served_over_http() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let addr = format!("127.0.0.1:{port}");
    let daemon = Daemon::start(dir.path(), &["--metrics", &addr]);
    let mut vm = daemon.client(Some("a"));
    vm.request(&Request::Claim { group: PeId(0) }).unwrap();
    daemon.client(None).request(&Request::Inject { target: InjectTarget::PeFreeze { pe: PeId(0) } }).unwrap();
    let mut http = std::net::TcpStream::connect(&addr).unwrap();
    http.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").unwrap();
    let mut text = String::new();
    http.read_to_string(&mut text).unwrap();
    assert!(text.starts_with("HTTP/1.0 200 OK"), "{text}");
    for needle in ["eehd_connected_vms 1", "eehd_pe_freezes_total 1", "eehd_request_seconds_count{op=\"claim\"} 1"] {
        assert!(text.contains(needle), "{needle} missing from\n{text}");
    }
}
