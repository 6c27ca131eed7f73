//! The embedded broker carries a QoS 1 publish from one real MQTT client to
//! another over TCP.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use rumqttc::{Client, Event, MqttOptions, Packet, QoS};
use tributary_hub::broker::{BrokerConfig, EmbeddedBroker};

fn client(id: &str, addr: SocketAddr) -> (Client, rumqttc::Connection) {
    let mut opts = MqttOptions::new(id, addr.ip().to_string(), addr.port());
    opts.set_keep_alive(Duration::from_secs(5));
    Client::new(opts, 16)
}

/// Polls `conn` until `want` matches an incoming packet or the deadline.
fn wait_for(
    conn: &mut rumqttc::Connection,
    deadline: Instant,
    mut want: impl FnMut(&Packet) -> bool,
) -> Packet {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "deadline passed");
        match conn.recv_timeout(left) {
            Ok(Ok(Event::Incoming(p))) if want(&p) => return p,
            Ok(Ok(_)) => {}
            Ok(Err(e)) => panic!("connection error: {e}"),
            Err(_) => panic!("deadline passed"),
        }
    }
}

#[test]
fn qos1_publish_goes_through_the_embedded_broker() {
    let broker = EmbeddedBroker::start(&BrokerConfig {
        listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
        ..BrokerConfig::default()
    })
    .unwrap();
    assert_ne!(broker.addr().port(), 0);
    assert!(broker.is_running());
    let deadline = Instant::now() + Duration::from_secs(20);

    let (sub, mut sub_conn) = client("hub-test-sub", broker.addr());
    wait_for(&mut sub_conn, deadline, |p| matches!(p, Packet::ConnAck(_)));
    sub.subscribe("tributary/v1/+/delta", QoS::AtLeastOnce)
        .unwrap();
    wait_for(&mut sub_conn, deadline, |p| matches!(p, Packet::SubAck(_)));

    let (publisher, mut pub_conn) = client("hub-test-pub", broker.addr());
    let payload = vec![0xa5u8, 0, 1, 2, 3];
    publisher
        .publish(
            "tributary/v1/0000000000000001/delta",
            QoS::AtLeastOnce,
            false,
            payload.clone(),
        )
        .unwrap();
    // The broker acknowledges the QoS 1 publish to the sender…
    wait_for(&mut pub_conn, deadline, |p| matches!(p, Packet::PubAck(_)));
    // …and delivers it at QoS 1 to the subscriber.
    let Packet::Publish(p) = wait_for(&mut sub_conn, deadline, |p| matches!(p, Packet::Publish(_)))
    else {
        unreachable!()
    };
    assert_eq!(p.topic, "tributary/v1/0000000000000001/delta");
    assert_eq!(p.qos, QoS::AtLeastOnce);
    assert_eq!(p.payload.as_ref(), payload.as_slice());
}

#[test]
fn a_taken_port_is_an_error_not_a_hang() {
    let taken = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let addr = taken.local_addr().unwrap();
    let err = EmbeddedBroker::start(&BrokerConfig {
        listen: addr,
        ready_timeout: Duration::from_secs(10),
        ..BrokerConfig::default()
    });
    assert!(
        matches!(err, Err(tributary_hub::broker::BrokerError::Bind { .. })),
        "{err:?}"
    );
}
