//! TLS on the hub's two listeners (issue #5, docs/security.md), with a
//! throwaway CA made by the test: HTTPS for the API, and MQTT over TLS on
//! the embedded broker (terminated by its gate). A client trusting the CA
//! gets in; plain TCP on a TLS port, or a client trusting another CA, does
//! not.

mod common;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use rumqttc::{
    Client, ConnectReturnCode, Event, MqttOptions, Packet, QoS, TlsConfiguration, Transport,
};
use tributary_hub::broker::{BrokerConfig, EmbeddedBroker};
use tributary_service::tls::{client_config, server_config};
use tributary_testkit::TestCa;

fn ca(name: &str) -> Option<TestCa> {
    match TestCa::generate(name) {
        Ok(Some(ca)) => Some(ca),
        Ok(None) => {
            eprintln!("skipped: openssl is not installed");
            None
        }
        Err(e) => panic!("{e}"),
    }
}

/// `GET path` over TLS trusting `ca_file`: the status line, or the error.
fn https_get(addr: SocketAddr, ca_file: &std::path::Path, path: &str) -> Result<String, String> {
    let config = Arc::new(client_config(ca_file).unwrap());
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let conn = rustls::ClientConnection::new(config, name).map_err(|e| e.to_string())?;
    let tcp = TcpStream::connect(addr).map_err(|e| e.to_string())?;
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    tls.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    // A peer closing without close_notify is an error rustls reports after
    // the data; what was read is what matters.
    let _ = tls.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out);
    text.lines()
        .next()
        .map(str::to_owned)
        .filter(|l| !l.is_empty())
        .ok_or_else(|| "no response".into())
}

#[test]
fn the_api_serves_https_and_only_https() {
    let (Some(ca), Some(other)) = (ca("hub"), ca("other")) else {
        return;
    };
    let tls = server_config(&ca.cert, &ca.key).unwrap();
    let (hub, _, _) = common::serve_tls(tls, |_, _| ());
    assert_eq!(
        https_get(hub.addr, &ca.ca, "/healthz").as_deref(),
        Ok("HTTP/1.1 200 OK")
    );
    let r = https_get(hub.addr, &ca.ca, "/api/v1/nodes").unwrap();
    assert!(r.ends_with("200 OK"), "{r}");
    // A client that does not trust the hub's CA refuses the handshake.
    let e = https_get(hub.addr, &other.ca, "/healthz").unwrap_err();
    assert!(
        e.to_lowercase().contains("certificate") || e.contains("no response"),
        "{e}"
    );
    // Plain HTTP on the TLS port gets no HTTP answer.
    let plain = tributary_testkit::http::get(hub.addr, "/healthz");
    assert!(
        plain.map_or(true, |r| r.status != 200),
        "plain HTTP answered on the TLS port"
    );
}

fn mqtt(
    addr: SocketAddr,
    id: &str,
    tls: Option<&std::path::Path>,
) -> Result<(Client, rumqttc::Connection), String> {
    let mut opts = MqttOptions::new(id, "127.0.0.1", addr.port());
    opts.set_keep_alive(Duration::from_secs(30));
    if let Some(ca) = tls {
        let cfg = client_config(ca).unwrap();
        opts.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
            Arc::new(cfg),
        )));
    }
    let (client, mut conn) = Client::new(opts, 16);
    match conn.recv_timeout(Duration::from_secs(10)) {
        Ok(Ok(Event::Incoming(Packet::ConnAck(a)))) if a.code == ConnectReturnCode::Success => {
            Ok((client, conn))
        }
        other => Err(format!("{other:?}")),
    }
}

#[test]
fn the_embedded_broker_speaks_mqtt_over_tls() {
    let (Some(ca), Some(other)) = (ca("broker"), ca("other")) else {
        return;
    };
    let broker = EmbeddedBroker::start(&BrokerConfig {
        listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
        tls: Some(server_config(&ca.cert, &ca.key).unwrap()),
        ..BrokerConfig::default()
    })
    .unwrap();
    let addr = broker.addr();
    // Through TLS, a publish reaches a subscriber (also through TLS).
    let (sub, mut sub_conn) = mqtt(addr, "tls-sub", Some(&ca.ca)).unwrap();
    sub.subscribe("tributary/v1/+/delta", QoS::AtLeastOnce)
        .unwrap();
    let (publisher, mut pub_conn) = mqtt(addr, "tls-pub", Some(&ca.ca)).unwrap();
    std::thread::spawn(move || for _ in pub_conn.iter() {});
    let mut got = None;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let mut published = false;
    while got.is_none() && std::time::Instant::now() < deadline {
        match sub_conn.recv_timeout(Duration::from_millis(500)) {
            Ok(Ok(Event::Incoming(Packet::SubAck(_)))) if !published => {
                publisher
                    .publish(
                        "tributary/v1/0000000000000001/delta",
                        QoS::AtLeastOnce,
                        false,
                        vec![7u8, 7],
                    )
                    .unwrap();
                published = true;
            }
            Ok(Ok(Event::Incoming(Packet::Publish(p)))) => got = Some(p.payload.to_vec()),
            _ => {}
        }
    }
    assert_eq!(got, Some(vec![7u8, 7]));
    // Plain MQTT on the TLS port, or a client trusting another CA: no.
    assert!(mqtt(addr, "plain", None).is_err());
    assert!(mqtt(addr, "wrong-ca", Some(&other.ca)).is_err());
}
