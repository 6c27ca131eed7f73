//! The Mosquitto helper against the real broker: it speaks MQTT on the
//! port it reports, restarts on the same port, and applies its options.
//! Skipped (with a message) when mosquitto is not installed, except under
//! CI.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use tributary_testkit::{FaultProxy, Mosquitto, MosquittoOptions};

/// MQTT 3.1.1 CONNECT, clean session, keep-alive 60 s, client id "tk".
const CONNECT: [u8; 16] = [
    0x10, 14, 0, 4, b'M', b'Q', b'T', b'T', 4, 0x02, 0, 60, 0, 2, b't', b'k',
];
/// CONNACK, no session present, return code 0 (accepted).
const CONNACK_OK: [u8; 4] = [0x20, 2, 0, 0];

fn start(options: MosquittoOptions) -> Option<Mosquitto> {
    let broker = Mosquitto::start_with(options).unwrap_or_else(|e| panic!("{e}"));
    if broker.is_none() {
        eprintln!("skipped: mosquitto not installed");
    }
    broker
}

/// Performs an MQTT handshake with whatever listens at `addr`.
fn mqtt_connack(addr: std::net::SocketAddr) -> [u8; 4] {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(&CONNECT).unwrap();
    let mut ack = [0u8; 4];
    s.read_exact(&mut ack).unwrap();
    ack
}

#[test]
fn speaks_mqtt_and_restarts_on_the_same_port() {
    let Some(mut broker) = start(MosquittoOptions::default()) else {
        return;
    };
    assert_eq!(broker.addr().port(), broker.port());
    assert_eq!(mqtt_connack(broker.addr()), CONNACK_OK);
    let first_pid = broker.pid().unwrap();

    broker.kill9();
    assert_eq!(broker.pid(), None);
    assert!(TcpStream::connect(broker.addr()).is_err());

    broker.restart().unwrap();
    assert_ne!(broker.pid(), Some(first_pid));
    assert_eq!(mqtt_connack(broker.addr()), CONNACK_OK);
    // Both runs are in the one log.
    let log = broker.log_tail(1000);
    assert_eq!(
        log.matches("=== mosquitto starting ===").count(),
        2,
        "{log}"
    );
}

#[test]
fn options_reach_the_config_file() {
    let options = MosquittoOptions {
        max_inflight_messages: 1,
        extra_config: vec!["max_keepalive 100".into()],
        ..MosquittoOptions::default()
    };
    let Some(broker) = start(options) else {
        return;
    };
    let conf = std::fs::read_to_string(broker.dir().join("mosquitto.conf")).unwrap();
    assert!(conf.contains(&format!("listener {} 127.0.0.1\n", broker.port())));
    assert!(conf.contains("max_inflight_messages 1\n"));
    assert!(conf.contains("max_keepalive 100\n"));
    assert!(conf.contains("allow_anonymous true\n"));
    assert_eq!(mqtt_connack(broker.addr()), CONNACK_OK);
}

#[test]
fn a_taken_fixed_port_is_a_clear_error() {
    if tributary_testkit::find_binary("mosquitto").is_none() {
        eprintln!("skipped: mosquitto not installed");
        return;
    }
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let err = Mosquitto::start_with(MosquittoOptions {
        port: Some(port),
        ..MosquittoOptions::default()
    })
    .unwrap_err();
    assert!(err.contains(&format!("127.0.0.1:{port}")), "{err}");
}

#[test]
fn mqtt_handshake_through_the_fault_proxy() {
    let Some(broker) = start(MosquittoOptions::default()) else {
        return;
    };
    let proxy = FaultProxy::start(broker.addr()).unwrap();
    assert_eq!(mqtt_connack(proxy.addr()), CONNACK_OK);
    assert_eq!(proxy.stats().bytes_to_upstream, CONNECT.len() as u64);
}
