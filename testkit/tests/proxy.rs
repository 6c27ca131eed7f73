//! FaultProxy against a tiny in-process echo server: every mode, the drop
//! control and the counters, asserted on content and error kinds (never on
//! durations).

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use tributary_testkit::{FaultProxy, Mode, ProxyStats, Step, schedule, wait_until};

/// Generous: only reached when something is broken, and then the test
/// fails instead of hanging.
const DEADLINE: Duration = Duration::from_secs(20);
/// How long a read must stay silent to count as "nothing arrives" in a
/// black hole. Only a lower bound on silence; no assert depends on it
/// being precise.
const SILENCE: Duration = Duration::from_millis(300);

/// An echo server on a free port; each connection is echoed by its own
/// thread until EOF, then closed. Threads end with the test process.
fn echo_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                loop {
                    match conn.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => {
                            if conn.write_all(&buf[..n]).is_err() {
                                return;
                            }
                        }
                    }
                }
            });
        }
    });
    addr
}

fn connect(proxy: &FaultProxy) -> TcpStream {
    let s = TcpStream::connect(proxy.addr()).unwrap();
    s.set_read_timeout(Some(DEADLINE)).unwrap();
    s
}

/// Bytes that differ along their length, so a reordering, loss or
/// duplication inside the proxy would change them.
fn pattern(len: usize, salt: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(salt))
        .collect()
}

/// Sends `data` and reads back exactly as many bytes.
fn round_trip(s: &mut TcpStream, data: &[u8]) -> Vec<u8> {
    s.write_all(data).unwrap();
    let mut back = vec![0u8; data.len()];
    s.read_exact(&mut back).unwrap();
    back
}

/// The connection was closed by the proxy: a read ends with EOF or a reset,
/// not with data and not by the read timeout.
fn assert_closed(s: &mut TcpStream) {
    let mut buf = [0u8; 64];
    match s.read(&mut buf) {
        Ok(0) => {}
        Ok(n) => panic!("expected a closed connection, read {n} bytes"),
        Err(e) => assert!(
            !matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
            "expected a closed connection, the read timed out"
        ),
    }
}

fn wait_stats(proxy: &FaultProxy, what: &str, cond: impl Fn(&ProxyStats) -> bool) {
    assert!(
        wait_until(DEADLINE, what, || cond(&proxy.stats())),
        "{what}: {:?}",
        proxy.stats()
    );
}

#[test]
fn pass_through_echoes_and_counts_bytes() {
    let proxy = FaultProxy::start(echo_server()).unwrap();
    assert_eq!(proxy.mode(), Mode::Pass);
    let mut a = connect(&proxy);
    let mut b = connect(&proxy);
    let big = pattern(200_000, 1);
    assert_eq!(round_trip(&mut a, &big), big);
    assert_eq!(round_trip(&mut b, b"hello"), b"hello");
    let total = (big.len() + 5) as u64;
    // The to-client counter is bumped after the write the client already
    // read from, hence a wait rather than a plain assert.
    wait_stats(&proxy, "all bytes counted", |s| {
        s.bytes_to_upstream == total && s.bytes_to_client == total
    });
    let s = proxy.stats();
    assert_eq!(
        (s.accepted, s.refused, s.dropped, s.upstream_failed),
        (2, 0, 0, 0)
    );
    assert_eq!(proxy.open_connections(), 2);
}

#[test]
fn half_close_is_passed_on() {
    let proxy = FaultProxy::start(echo_server()).unwrap();
    let mut c = connect(&proxy);
    c.write_all(b"last words").unwrap();
    // The echo server sees EOF only if the proxy forwards the FIN; it then
    // closes, and that FIN must come back too for read_to_end to finish.
    c.shutdown(Shutdown::Write).unwrap();
    let mut back = Vec::new();
    c.read_to_end(&mut back).unwrap();
    assert_eq!(back, b"last words");
    assert!(wait_until(DEADLINE, "connection unregistered", || proxy
        .open_connections()
        == 0));
    // Closed by the endpoints, not by the proxy.
    assert_eq!(proxy.stats().dropped, 0);
}

#[test]
fn partition_closes_and_refuses_then_pass_works_again() {
    let proxy = FaultProxy::start(echo_server()).unwrap();
    let mut before = connect(&proxy);
    assert_eq!(round_trip(&mut before, b"one"), b"one");

    proxy.set_mode(Mode::Partition);
    assert_closed(&mut before);
    assert_eq!(proxy.stats().dropped, 1);
    assert_eq!(proxy.open_connections(), 0);

    // The kernel may complete the handshake, but the proxy closes at once.
    match TcpStream::connect(proxy.addr()) {
        Ok(mut during) => {
            during.set_read_timeout(Some(DEADLINE)).unwrap();
            assert_closed(&mut during);
            wait_stats(&proxy, "refusal counted", |s| s.refused == 1);
        }
        Err(e) => assert_eq!(e.kind(), ErrorKind::ConnectionRefused),
    }
    assert_eq!(proxy.stats().accepted, 1);

    proxy.set_mode(Mode::Pass);
    let mut after = connect(&proxy);
    assert_eq!(round_trip(&mut after, b"two"), b"two");
    assert_eq!(proxy.stats().accepted, 2);
}

#[test]
fn drop_connections_closes_clients_who_can_reconnect() {
    let proxy = FaultProxy::start(echo_server()).unwrap();
    let mut a = connect(&proxy);
    let mut b = connect(&proxy);
    assert_eq!(round_trip(&mut a, b"a"), b"a");
    assert_eq!(round_trip(&mut b, b"b"), b"b");

    proxy.drop_connections();
    assert_closed(&mut a);
    assert_closed(&mut b);
    assert_eq!(proxy.stats().dropped, 2);
    assert_eq!(proxy.mode(), Mode::Pass);

    let mut again = connect(&proxy);
    assert_eq!(round_trip(&mut again, b"again"), b"again");
    assert_eq!(proxy.open_connections(), 1);
}

#[test]
fn blackhole_stalls_both_ways_and_ends_by_closing() {
    let proxy = FaultProxy::start(echo_server()).unwrap();
    let mut old = connect(&proxy);
    assert_eq!(round_trip(&mut old, b"before"), b"before");
    wait_stats(&proxy, "first echo counted", |s| s.bytes_to_client == 6);

    proxy.set_mode(Mode::Blackhole);
    old.write_all(b"into the void").unwrap();
    old.set_read_timeout(Some(SILENCE)).unwrap();
    let mut buf = [0u8; 64];
    let err = old
        .read(&mut buf)
        .expect_err("a black hole forwards nothing");
    assert!(
        matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
        "silence, not a close: {err:?}"
    );
    // New connections are accepted and stall the same way.
    let mut born_in_hole = TcpStream::connect(proxy.addr()).unwrap();
    born_in_hole.set_read_timeout(Some(SILENCE)).unwrap();
    born_in_hole.write_all(b"hello?").unwrap();
    let err = born_in_hole.read(&mut buf).expect_err("nothing comes back");
    assert!(matches!(
        err.kind(),
        ErrorKind::WouldBlock | ErrorKind::TimedOut
    ));
    // Nothing crossed the proxy during the black hole.
    let s = proxy.stats();
    assert_eq!((s.bytes_to_upstream, s.bytes_to_client), (6, 6));
    assert_eq!(s.accepted, 2);

    // The path comes back: what lived through the black hole is closed
    // (documented choice), new connections work.
    proxy.set_mode(Mode::Pass);
    old.set_read_timeout(Some(DEADLINE)).unwrap();
    born_in_hole.set_read_timeout(Some(DEADLINE)).unwrap();
    assert_closed(&mut old);
    assert_closed(&mut born_in_hole);
    assert_eq!(proxy.stats().dropped, 2);
    let mut fresh = connect(&proxy);
    assert_eq!(round_trip(&mut fresh, b"after"), b"after");
    assert_eq!(proxy.stats().bytes_to_upstream, 6 + 5);
}

#[test]
fn throttle_delivers_every_byte_intact() {
    let proxy = FaultProxy::start(echo_server()).unwrap();
    proxy.set_mode(Mode::Throttle {
        bytes_per_sec: 50_000,
    });
    let mut c = connect(&proxy);
    let data = pattern(20_000, 7);
    // Written from another thread: a throttled echo of 20 kB would not fit
    // in socket buffers if the test wrote everything before reading.
    let mut writer = c.try_clone().unwrap();
    let sent = data.clone();
    let w = std::thread::spawn(move || writer.write_all(&sent).unwrap());
    let mut back = vec![0u8; data.len()];
    c.read_exact(&mut back).unwrap();
    w.join().unwrap();
    assert_eq!(back, data);
    wait_stats(&proxy, "throttled bytes counted", |s| {
        s.bytes_to_upstream == 20_000 && s.bytes_to_client == 20_000
    });

    // Back to full speed on the same connection.
    proxy.set_mode(Mode::Pass);
    assert_eq!(round_trip(&mut c, b"fast"), b"fast");
    assert_eq!(proxy.stats().dropped, 0);
}

#[test]
fn a_zero_rate_throttle_still_moves_bytes() {
    let proxy = FaultProxy::start(echo_server()).unwrap();
    // 0 is treated as 1 byte/s rather than a division by zero or a stall.
    proxy.set_mode(Mode::Throttle { bytes_per_sec: 0 });
    let mut c = connect(&proxy);
    assert_eq!(round_trip(&mut c, b"z"), b"z");
}

#[test]
fn upstream_down_closes_the_client() {
    // A port nobody listens on (bound, then released).
    let dead = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let proxy = FaultProxy::start(dead).unwrap();
    let mut c = connect(&proxy);
    assert_closed(&mut c);
    wait_stats(&proxy, "upstream failure counted", |s| {
        s.upstream_failed == 1
    });
}

#[test]
fn dropping_the_proxy_closes_its_connections() {
    let proxy = FaultProxy::start(echo_server()).unwrap();
    let mut c = connect(&proxy);
    assert_eq!(round_trip(&mut c, b"x"), b"x");
    let addr = proxy.addr();
    drop(proxy);
    assert_closed(&mut c);
    // The listener is gone too.
    let refused = TcpStream::connect(addr).map(|_| ()).unwrap_err();
    assert_eq!(refused.kind(), ErrorKind::ConnectionRefused);
}

#[test]
fn a_schedule_plays_and_ends_in_pass() {
    let proxy = FaultProxy::start(echo_server()).unwrap();
    let mut c = connect(&proxy);
    assert_eq!(round_trip(&mut c, b"x"), b"x");
    let ms = Duration::from_millis;
    let steps = vec![
        Step {
            mode: Mode::Partition,
            drop_connections: false,
            hold: ms(30),
        },
        Step {
            mode: Mode::Pass,
            drop_connections: false,
            hold: ms(10),
        },
        Step {
            mode: Mode::Blackhole,
            drop_connections: true,
            hold: ms(30),
        },
    ];
    proxy.run_schedule(steps).join();
    assert_eq!(proxy.mode(), Mode::Pass);
    // The partition closed the connection.
    assert_closed(&mut c);
    let mut again = connect(&proxy);
    assert_eq!(round_trip(&mut again, b"y"), b"y");
}

#[test]
fn stopping_a_seeded_schedule_early_restores_pass() {
    let proxy = FaultProxy::start(echo_server()).unwrap();
    let steps = schedule(
        42,
        10,
        &[Mode::Partition, Mode::Blackhole],
        Duration::from_secs(60),
        Duration::from_secs(60),
    );
    assert_ne!(steps[0].mode, Mode::Pass);
    let runner = proxy.run_schedule(steps.clone());
    assert!(wait_until(DEADLINE, "first fault applied", || proxy.mode()
        == steps[0].mode));
    assert!(!runner.is_finished());
    runner.stop();
    assert_eq!(proxy.mode(), Mode::Pass);
    let mut c = connect(&proxy);
    assert_eq!(round_trip(&mut c, b"ok"), b"ok");
}

#[test]
fn dropping_the_proxy_mid_fault_does_not_hang() {
    let upstream = echo_server();
    // Threads parked in a black hole, in a throttle pause and in a read
    // must all notice the drop (the test would hang otherwise).
    let proxy = FaultProxy::start(upstream).unwrap();
    let mut stalled = connect(&proxy);
    assert_eq!(round_trip(&mut stalled, b"s"), b"s");
    proxy.set_mode(Mode::Blackhole);
    let mut born_in_hole = connect(&proxy);
    born_in_hole.write_all(b"?").unwrap();
    stalled.write_all(b"?").unwrap();
    drop(proxy);
    assert_closed(&mut stalled);
    assert_closed(&mut born_in_hole);

    let proxy = FaultProxy::start(upstream).unwrap();
    proxy.set_mode(Mode::Throttle { bytes_per_sec: 1 });
    let mut slow = connect(&proxy);
    // One byte goes through, then its pump pauses for a second per byte.
    assert_eq!(round_trip(&mut slow, b"a"), b"a");
    slow.write_all(b"bcdef").unwrap();
    drop(proxy);
    let mut rest = Vec::new();
    // Whatever got through before the drop, the stream then ends.
    if let Err(e) = slow.read_to_end(&mut rest) {
        assert!(!matches!(
            e.kind(),
            ErrorKind::WouldBlock | ErrorKind::TimedOut
        ));
    }
    assert!(b"bcdef".starts_with(&rest), "{rest:?}");
}
