//! eehd against a bare `SOCK_SEQPACKET` echo between two processes, in one
//! run: request latency (p50, p99), throughput with 8 clients, and the cost
//! of a durable commit on its own.
//!
//! `cargo bench -p eehd --bench daemon` (add `-- --quick` for a short run).
//! The echo server is this binary run again with `EEHD_BENCH_ECHO=PATH`.

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use eehd::client::Client;
use eehd::protocol::{Answer, PeAction, Request, MAX_FRAME};
use eehd::seqpacket::{self, Received};
use vfio_eeh::addr::{Buid, GuestAddr, PeId};
use vfio_eeh::rtas::{RtasArgs, RtasCall, TokenTable};

const ECHO_ENV: &str = "EEHD_BENCH_ECHO";
const BUID: u64 = 0x0800_0000_2000_0000;
const CLIENTS: usize = 8;

fn echo_server(path: &Path) -> ! {
    let listener = seqpacket::listen(path, 64).expect("echo socket");
    loop {
        let fd = seqpacket::accept(&listener).expect("accept");
        std::thread::spawn(move || {
            let mut buf = vec![0; MAX_FRAME];
            while let Ok(Received::Frame(n)) = seqpacket::recv(&fd, &mut buf) {
                if seqpacket::send(&fd, &buf[..n]).is_err() {
                    break;
                }
            }
        });
    }
}

struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_for(path: &Path) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while seqpacket::connect(path).is_err() {
        assert!(Instant::now() < deadline, "{} did not come up", path.display());
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The RTAS call a guest makes most: read-slot-reset-state2 on its device.
fn rtas_request() -> Request {
    let token = TokenTable::default().token(RtasCall::ReadSlotResetState2).unwrap();
    let config = GuestAddr::new(Buid(BUID), 0, 1, 0).unwrap().config_addr().raw();
    let buf = RtasArgs::new(token, &[config, 0x0800_0000, 0x2000_0000], 4).encode();
    Request::Rtas {
        cells: buf.chunks_exact(4).map(|c| u32::from_be_bytes(c.try_into().unwrap())).collect(),
        memory: None,
    }
}

/// A VM with PE `pe`'s first function at slot 1.
fn vm(socket: &Path, name: &str, pe: u32) -> Client {
    let mut client = Client::connect(socket, Some(name)).unwrap();
    client.request(&Request::Claim { group: PeId(pe) }).unwrap();
    client.request(&Request::PhbAdd { buid: Buid(BUID) }).unwrap();
    let Answer::State { pes } = client.request(&Request::State).unwrap() else { panic!() };
    let guest = GuestAddr::new(Buid(BUID), 0, 1, 0).unwrap();
    client.request(&Request::MapSet { host: pes[0].devices[0], guest }).unwrap();
    client
}

/// The value at `permille`/1000 of a sorted sample.
fn percentile(sorted: &[Duration], permille: usize) -> Duration {
    sorted[(sorted.len() - 1) * permille / 1000]
}

fn latencies(rounds: usize, mut once: impl FnMut()) -> (Duration, Duration) {
    for _ in 0..rounds / 10 {
        once();
    }
    let mut all: Vec<Duration> = (0..rounds)
        .map(|_| {
            let start = Instant::now();
            once();
            start.elapsed()
        })
        .collect();
    all.sort();
    (percentile(&all, 500), percentile(&all, 990))
}

/// Round trips per second with `CLIENTS` threads for `span`.
fn throughput<C: Send + 'static>(span: Duration, clients: Vec<C>, once: fn(&mut C)) -> f64 {
    let start = Arc::new(std::sync::Barrier::new(clients.len() + 1));
    let threads: Vec<_> = clients
        .into_iter()
        .map(|mut client| {
            let start = Arc::clone(&start);
            std::thread::spawn(move || {
                start.wait();
                let began = Instant::now();
                let mut n = 0u64;
                while began.elapsed() < span {
                    once(&mut client);
                    n += 1;
                }
                n
            })
        })
        .collect();
    start.wait();
    let total: u64 = threads.into_iter().map(|t| t.join().unwrap()).sum();
    total as f64 / span.as_secs_f64()
}

fn echo_once(fd: &mut (OwnedFd, Vec<u8>, Vec<u8>)) {
    seqpacket::send(&fd.0, &fd.1).unwrap();
    assert!(matches!(seqpacket::recv(&fd.0, &mut fd.2).unwrap(), Received::Frame(_)));
}

fn rtas_once(client: &mut (Client, Request)) {
    assert!(matches!(client.0.request(&client.1), Ok(Answer::Rtas { status: 0, .. })));
}

fn us(d: Duration) -> String {
    format!("{:.1} µs", d.as_secs_f64() * 1e6)
}

fn main() {
    if let Some(path) = std::env::var_os(ECHO_ENV) {
        echo_server(Path::new(&path));
    }
    let quick = std::env::args().any(|a| a == "--quick");
    let (rounds, span) = if quick { (2_000, Duration::from_millis(500)) } else { (20_000, Duration::from_secs(2)) };
    let dir = tempfile::tempdir().unwrap();
    let echo_path = dir.path().join("echo.sock");
    let _echo = Process(
        Command::new(std::env::current_exe().unwrap()).env(ECHO_ENV, &echo_path).stdin(Stdio::null()).spawn().unwrap(),
    );
    let socket: PathBuf = dir.path().join("eehd.sock");
    let _daemon = Process(
        Command::new(env!("CARGO_BIN_EXE_eehd"))
            .args(["--host", "sim", "--sim-clock", "virtual", "--socket"])
            .arg(&socket)
            .arg("--state-dir")
            .arg(dir.path().join("state"))
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_for(&echo_path);
    wait_for(&socket);

    let request = rtas_request();
    // The echo carries a frame of the request's size.
    let frame = serde_json::to_vec(&request).unwrap();
    let mut echo = (seqpacket::connect(&echo_path).unwrap(), frame.clone(), vec![0; MAX_FRAME]);
    let mut daemon = (vm(&socket, "bench-0", 0), request.clone());

    let (echo_p50, echo_p99) = latencies(rounds, || echo_once(&mut echo));
    let (rtas_p50, rtas_p99) = latencies(rounds, || rtas_once(&mut daemon));

    let echoes = (0..CLIENTS).map(|_| (seqpacket::connect(&echo_path).unwrap(), frame.clone(), vec![0; MAX_FRAME]));
    let echo_rate = throughput(span, echoes.collect(), echo_once);
    // The built-in host has five PEs: five VMs (bench-0 is set up above),
    // each with its PE mapped at slot 1, and three more sessions of them.
    let vms: Vec<_> = (0..CLIENTS)
        .map(|i| {
            let name = format!("bench-{}", i % 5);
            let client = if (1..5).contains(&i) {
                vm(&socket, &name, u32::try_from(i).unwrap())
            } else {
                Client::connect(&socket, Some(&name)).unwrap()
            };
            (client, request.clone())
        })
        .collect();
    let rtas_rate = throughput(span, vms, rtas_once);

    // A durable commit: an acknowledged PE op (state change) is fsynced
    // before its answer; get-state is the same round trip without one.
    let commits = rounds / 20;
    let (commit_p50, commit_p99) = latencies(commits, || {
        daemon.0.request(&Request::PeOp { group: PeId(0), action: PeAction::Enable }).unwrap();
    });
    let (read_p50, _) = latencies(commits, || {
        daemon.0.request(&Request::PeOp { group: PeId(0), action: PeAction::GetState }).unwrap();
    });

    println!("eehd vs a bare SOCK_SEQPACKET echo ({}-byte frames), {rounds} round trips each", frame.len());
    println!("| measure | echo | eehd (rtas read-slot-reset-state2) | ratio |");
    println!("|---|---|---|---|");
    let ratio = |a: Duration, b: Duration| b.as_secs_f64() / a.as_secs_f64();
    println!("| p50 | {} | {} | {:.2}× |", us(echo_p50), us(rtas_p50), ratio(echo_p50, rtas_p50));
    println!("| p99 | {} | {} | {:.2}× |", us(echo_p99), us(rtas_p99), ratio(echo_p99, rtas_p99));
    println!("| {CLIENTS} clients, round trips/s | {echo_rate:.0} | {rtas_rate:.0} | {:.2}× |", rtas_rate / echo_rate);
    println!(
        "durable commit (pe_op enable, fsync before the answer): p50 {}, p99 {}; the same round trip without a commit (get-state): p50 {}",
        us(commit_p50),
        us(commit_p99),
        us(read_p50)
    );
}
