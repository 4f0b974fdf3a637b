//! Bad input hurts only the client that sends it: the daemon and every
//! other client carry on.

mod common;

use std::time::Duration;

use common::Daemon;
use eehd::client::{Client, ClientError};

use eehd::protocol::{Answer, ErrorKind, InjectTarget, PeAction, Request, MAX_FRAME};
use eehd::seqpacket::{self, Received};
use vfio_eeh::addr::PeId;

fn refusal(result: Result<Answer, ClientError>) -> ErrorKind {
    match result {
        Err(ClientError::Refused(error)) => error.kind,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

/// A well-behaved VM that must keep getting answers.
fn still_served(bystander: &mut Client) {
    let Answer::State { pes } = bystander.request(&Request::State).unwrap() else { panic!() };
    assert_eq!(pes.len(), 1);
}

#[test]
fn bad_frames_get_errors_and_the_connection_lives_on() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(dir.path(), &[]);
    let mut bystander = daemon.client(Some("bystander"));
    bystander.request(&Request::Claim { group: PeId(0) }).unwrap();

    let mut bad = daemon.client(Some("bad"));
    bad.send_raw(&vec![b' '; MAX_FRAME + 100]).unwrap();
    assert_eq!(refusal(bad.answer()), ErrorKind::FrameTooLarge);
    bad.send_raw(b"{\"op\":\"claim\",").unwrap();
    assert_eq!(refusal(bad.answer()), ErrorKind::BadRequest);
    bad.send_raw(b"\xff\xfe not json").unwrap();
    assert_eq!(refusal(bad.answer()), ErrorKind::BadRequest);
    bad.send_raw(br#"{"op":"format_all_disks"}"#).unwrap();
    assert_eq!(refusal(bad.answer()), ErrorKind::BadRequest);
    assert_eq!(refusal(bad.request(&Request::Hello { version: 1, vm: Some("bad".into()) })), ErrorKind::HelloRequired);
    still_served(&mut bystander);
    assert!(matches!(bad.request(&Request::MapList), Ok(Answer::Maps(_))));
}

#[test]
fn requests_before_hello_and_wrong_versions_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(dir.path(), &[]);
    let mut bystander = daemon.client(Some("bystander"));
    bystander.request(&Request::Claim { group: PeId(0) }).unwrap();
    let mut buf = vec![0; MAX_FRAME];

    let early = seqpacket::connect(&daemon.socket).unwrap();
    seqpacket::send(&early, br#"{"op":"state"}"#).unwrap();
    let Received::Frame(n) = seqpacket::recv(&early, &mut buf).unwrap() else { panic!() };
    assert!(String::from_utf8_lossy(&buf[..n]).contains("hello_required"));

    let future = seqpacket::connect(&daemon.socket).unwrap();
    seqpacket::send(&future, br#"{"op":"hello","version":99,"vm":"x"}"#).unwrap();
    let Received::Frame(n) = seqpacket::recv(&future, &mut buf).unwrap() else { panic!() };
    assert!(String::from_utf8_lossy(&buf[..n]).contains("\"kind\":\"version\""));
    assert_eq!(seqpacket::recv(&future, &mut buf).unwrap(), Received::Closed);
    still_served(&mut bystander);
}

#[test]
fn vanished_and_slow_clients_and_thousands_of_idle_connections_hurt_no_one() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(dir.path(), &[]);
    let mut bystander = daemon.client(Some("bystander"));
    bystander.request(&Request::Claim { group: PeId(0) }).unwrap();

    // Vanished: a request sent, the connection gone before the answer.
    for _ in 0..50 {
        let mut gone = daemon.client(Some("gone"));
        gone.send_raw(br#"{"op":"claims"}"#).unwrap();
    }

    // A slow reader: subscribed, then never reads, while its PE keeps
    // freezing and being thawed. It is cut off; its queued events end in a
    // close.
    let mut slow = daemon.client(Some("slow"));
    slow.request(&Request::Claim { group: PeId(1) }).unwrap();
    let reader = seqpacket::connect(&daemon.socket).unwrap();
    let mut buf = vec![0; MAX_FRAME];
    for request in [r#"{"op":"hello","version":1,"vm":"slow"}"#, r#"{"op":"subscribe"}"#] {
        seqpacket::send(&reader, request.as_bytes()).unwrap();
        assert!(matches!(seqpacket::recv(&reader, &mut buf).unwrap(), Received::Frame(_)));
    }
    let mut operator = daemon.client(None);
    // Each round is two events: frozen, then recovered.
    const INJECTIONS: usize = 600;
    for _ in 0..INJECTIONS / 2 {
        operator.request(&Request::Inject { target: InjectTarget::PeFreeze { pe: PeId(1) } }).unwrap();
        slow.request(&Request::PeOp { group: PeId(1), action: PeAction::Enable }).unwrap();
    }
    still_served(&mut bystander);
    seqpacket::set_timeouts(&reader, Some(Duration::from_secs(5)), None).unwrap();
    let mut queued = 0;
    while let Received::Frame(_) = seqpacket::recv(&reader, &mut buf).unwrap() {
        queued += 1;
    }
    assert!(queued < INJECTIONS, "{queued} events were queued for a reader that never read");

    // Idle connections, never saying hello: the daemon holds them, keeps
    // serving, and drops them after the hello timeout.
    let idle: Vec<_> = (0..2000).map(|_| seqpacket::connect(&daemon.socket).unwrap()).collect();
    still_served(&mut bystander);
    let mut fresh = daemon.client(Some("fresh"));
    fresh.request(&Request::Claim { group: PeId(2) }).unwrap();
    std::thread::sleep(Duration::from_millis(2600));
    let mut buf = vec![0; MAX_FRAME];
    seqpacket::set_timeouts(&idle[0], Some(Duration::from_secs(5)), None).unwrap();
    assert_eq!(seqpacket::recv(&idle[0], &mut buf).unwrap(), Received::Closed);
    still_served(&mut bystander);
}
