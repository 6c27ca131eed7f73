//! Per-node MQTT credentials and topic ACL for the embedded broker
//! (issue #5, docs/security.md).
//!
//! rumqttd 0.20 can check a username and password, but it has no topic
//! ACL: any client it lets in may publish on any topic, so node A could
//! speak on node B's topics and the hub would take it as B's. The gate is a
//! small MQTT-aware TCP relay in front of it. It listens where the broker
//! would, and for each connection:
//!
//! 1. reads the first packet, which must be a CONNECT whose username is a
//!    node id (16 hex digits) with that node's configured password
//!    (compared in constant time); otherwise it answers CONNACK "bad user
//!    name or password" (or "not authorized" for a packet that is not a
//!    CONNECT) and closes;
//! 2. opens a connection to rumqttd on a loopback port and relays the
//!    bytes both ways, parsing every packet the client sends: a PUBLISH
//!    must name `tributary/v1/{node}/{hello|delta|alert|config}` and a SUBSCRIBE
//!    only `tributary/v1/{node}/ack`, where `{node}` is the username. Any
//!    other topic closes the connection (MQTT 3.1.1 cannot refuse a single
//!    QoS 1 publish), before the packet reaches the broker.
//!
//! The hub's sync shell then checks that each message names the node of
//! its topic, so a node can only ever write its own entries. Every refusal
//! is counted in `tributary_hub_broker_refused_total{reason}` and logged.
//! Only the fixed header, CONNECT, PUBLISH's topic and SUBSCRIBE's filters
//! are decoded; a malformed packet is a refusal, never a panic.
//!
//! rumqttd itself checks the same node passwords plus one random internal
//! account for the hub's own client, so its loopback port is no back door
//! for a process without credentials (it would only skip the topic check).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tributary_core::ids::NodeId;

/// Label set of the refusal counter.
pub type RefusedFamily = Family<Vec<(&'static str, &'static str)>, Counter>;

/// MQTT control packet types (the high nibble of the first byte).
const CONNECT: u8 = 1;
const PUBLISH: u8 = 3;
const SUBSCRIBE: u8 = 8;

/// A client has this long to send its CONNECT.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// What the gate needs to know about one packet from a client.
#[derive(Debug, PartialEq, Eq)]
pub enum Packet {
    /// CONNECT, with its login.
    Connect {
        /// The username, if any.
        username: Option<String>,
        /// The password, if any.
        password: Option<Vec<u8>>,
    },
    /// PUBLISH, with its topic.
    Publish {
        /// The topic name.
        topic: String,
    },
    /// SUBSCRIBE, with its filters.
    Subscribe {
        /// The topic filters.
        filters: Vec<String>,
    },
    /// Anything else (PUBACK, PINGREQ, DISCONNECT…): relayed as is.
    Other,
}

/// Why a client's bytes were refused: the reason label.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Malformed(pub &'static str);

/// The first complete packet in `buf`: `Ok(None)` if more bytes are
/// needed, else the packet and its length in bytes. A packet longer than
/// `max_len` is refused before it is buffered.
pub fn parse(buf: &[u8], max_len: usize) -> Result<Option<(Packet, usize)>, Malformed> {
    let Some(&first) = buf.first() else {
        return Ok(None);
    };
    // Remaining length: 1–4 bytes, 7 bits each, least significant first.
    let mut len: usize = 0;
    let mut header = 1;
    loop {
        let Some(&b) = buf.get(header) else {
            return Ok(None);
        };
        len |= usize::from(b & 0x7f) << (7 * (header - 1));
        header += 1;
        if b & 0x80 == 0 {
            break;
        }
        if header > 4 {
            return Err(Malformed("bad_remaining_length"));
        }
    }
    if len > max_len {
        return Err(Malformed("oversized"));
    }
    let total = header + len;
    let Some(body) = buf.get(header..total) else {
        return Ok(None);
    };
    let packet = match first >> 4 {
        CONNECT => connect(body)?,
        PUBLISH => {
            let (topic, _) = string(body)?;
            Packet::Publish { topic }
        }
        SUBSCRIBE => {
            let mut rest = body.get(2..).ok_or(Malformed("truncated"))?;
            let mut filters = Vec::new();
            while !rest.is_empty() {
                let (f, after) = string(rest)?;
                // Each filter is followed by its requested QoS byte.
                rest = after.get(1..).ok_or(Malformed("truncated"))?;
                filters.push(f);
            }
            if filters.is_empty() {
                return Err(Malformed("empty_subscribe"));
            }
            Packet::Subscribe { filters }
        }
        _ => Packet::Other,
    };
    Ok(Some((packet, total)))
}

/// A length-prefixed byte string and what follows it.
fn bytes(b: &[u8]) -> Result<(&[u8], &[u8]), Malformed> {
    let n = match b {
        [hi, lo, ..] => usize::from(u16::from_be_bytes([*hi, *lo])),
        _ => return Err(Malformed("truncated")),
    };
    let s = b.get(2..2 + n).ok_or(Malformed("truncated"))?;
    Ok((s, &b[2 + n..]))
}

/// A length-prefixed UTF-8 string and what follows it.
fn string(b: &[u8]) -> Result<(String, &[u8]), Malformed> {
    let (s, rest) = bytes(b)?;
    let s = std::str::from_utf8(s).map_err(|_| Malformed("not_utf8"))?;
    Ok((s.to_owned(), rest))
}

fn connect(body: &[u8]) -> Result<Packet, Malformed> {
    let (protocol, rest) = bytes(body)?;
    if protocol != b"MQTT" && protocol != b"MQIsdp" {
        return Err(Malformed("not_mqtt"));
    }
    // Level (1), flags (1), keep-alive (2).
    let (flags, mut rest) = match rest {
        [_level, flags, _, _, rest @ ..] => (*flags, rest),
        _ => return Err(Malformed("truncated")),
    };
    let (_client_id, r) = bytes(rest)?;
    rest = r;
    if flags & 0x04 != 0 {
        // Will topic and will message.
        let (_, r) = bytes(rest)?;
        let (_, r) = bytes(r)?;
        rest = r;
    }
    let mut username = None;
    if flags & 0x80 != 0 {
        let (u, r) = string(rest)?;
        username = Some(u);
        rest = r;
    }
    let mut password = None;
    if flags & 0x40 != 0 {
        let (p, _) = bytes(rest)?;
        password = Some(p.to_vec());
    }
    Ok(Packet::Connect { username, password })
}

/// The topics node `node` may publish on.
fn may_publish(node: &str, topic: &str) -> bool {
    topic
        .strip_prefix("tributary/v1/")
        .and_then(|t| t.strip_prefix(node))
        .is_some_and(|t| matches!(t, "/hello" | "/delta" | "/alert" | "/config"))
}

/// Equality whose time depends only on the lengths.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The gate's settings.
#[derive(Clone)]
pub struct GateConfig {
    /// Each node's password, by node id. Empty: no login check and no
    /// topic rule (the gate then only terminates TLS).
    pub nodes: Arc<HashMap<NodeId, String>>,
    /// Terminate TLS with this configuration (MQTT over TLS, port 8883 by
    /// convention); `None`: plain TCP.
    pub tls: Option<tokio_rustls::TlsAcceptor>,
    /// rumqttd's loopback address.
    pub upstream: SocketAddr,
    /// Largest packet a client may send, in bytes.
    pub max_packet_bytes: usize,
    /// Refusals by reason.
    pub refused: RefusedFamily,
}

impl std::fmt::Debug for GateConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GateConfig")
            .field("nodes", &self.nodes.len())
            .field("upstream", &self.upstream)
            .field("tls", &self.tls.is_some())
            .finish_non_exhaustive()
    }
}

/// Serves clients on `listener` until the process ends (the broker it
/// guards has no shutdown either).
pub async fn serve(listener: TcpListener, cfg: GateConfig) {
    loop {
        match listener.accept().await {
            Ok((client, peer)) => {
                let cfg = cfg.clone();
                tokio::spawn(async move {
                    let _ = client.set_nodelay(true);
                    let res = match &cfg.tls {
                        None => relay(client, peer, &cfg).await,
                        Some(acceptor) => {
                            match tokio::time::timeout(CONNECT_TIMEOUT, acceptor.accept(client))
                                .await
                            {
                                Ok(Ok(tls)) => relay(tls, peer, &cfg).await,
                                Ok(Err(e)) => {
                                    tracing::warn!(%peer, error = %e, "MQTT TLS handshake failed");
                                    Err("tls_handshake")
                                }
                                Err(_) => Err("tls_handshake"),
                            }
                        }
                    };
                    if let Err(reason) = res {
                        cfg.refused.get_or_create(&vec![("reason", reason)]).inc();
                    }
                });
            }
            Err(e) => {
                // Out of file descriptors, say: back off rather than spin.
                tracing::warn!(error = %e, "MQTT gate accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// One client: authenticate, then relay with the topic check. `Err` is the
/// refusal reason (already logged).
async fn relay<S: AsyncRead + AsyncWrite + Unpin + Send + 'static>(
    mut client: S,
    peer: SocketAddr,
    cfg: &GateConfig,
) -> Result<(), &'static str> {
    let mut buf = Vec::with_capacity(4096);
    let first = tokio::time::timeout(CONNECT_TIMEOUT, next_packet(&mut client, &mut buf, cfg))
        .await
        .map_err(|_| "connect_timeout")?;
    let (node, connect_len) = match first {
        Ok(Some((Packet::Connect { username, password }, len))) => {
            match check_login(cfg, username.as_deref(), password.as_deref()) {
                Ok(node) => (node, len),
                Err(reason) => {
                    tracing::warn!(%peer, ?username, reason, "MQTT login refused");
                    // CONNACK, return code 4: bad user name or password.
                    let _ = client.write_all(&[0x20, 0x02, 0x00, 0x04]).await;
                    return Err(reason);
                }
            }
        }
        Ok(Some(_)) => {
            // CONNACK 5, not authorized: MQTT requires CONNECT first.
            let _ = client.write_all(&[0x20, 0x02, 0x00, 0x05]).await;
            tracing::warn!(%peer, "MQTT client spoke before CONNECT");
            return Err("no_connect");
        }
        Ok(None) => return Ok(()),
        Err(Malformed(reason)) => {
            tracing::warn!(%peer, reason, "malformed MQTT CONNECT");
            return Err(reason);
        }
    };
    let upstream = TcpStream::connect(cfg.upstream).await.map_err(|e| {
        tracing::error!(error = %e, "the embedded broker is unreachable from its gate");
        "upstream_unreachable"
    })?;
    let _ = upstream.set_nodelay(true);
    let (mut up_read, mut up_write) = upstream.into_split();
    // The CONNECT, as the client sent it.
    up_write
        .write_all(&buf[..connect_len])
        .await
        .map_err(|_| "upstream_closed")?;
    buf.drain(..connect_len);
    let (mut client_read, mut client_write) = tokio::io::split(client);
    // Broker → client: verbatim.
    let down = tokio::spawn(async move {
        let _ = tokio::io::copy(&mut up_read, &mut client_write).await;
        let _ = client_write.shutdown().await;
    });
    // Without logins (TLS only) there is no identity to hold a client to.
    let ack_topic = node.as_ref().map(|n| format!("tributary/v1/{n}/ack"));
    let result = async {
        loop {
            let Some((packet, len)) = next_packet(&mut client_read, &mut buf, cfg)
                .await
                .map_err(|m| m.0)?
            else {
                return Ok(());
            };
            match packet {
                Packet::Publish { topic }
                    if node.as_deref().is_some_and(|n| !may_publish(n, &topic)) =>
                {
                    tracing::warn!(?node, %topic, "MQTT publish on a foreign topic: connection closed");
                    return Err("foreign_topic");
                }
                Packet::Subscribe { filters }
                    if ack_topic
                        .as_ref()
                        .is_some_and(|ack| filters.iter().any(|f| f != ack)) =>
                {
                    tracing::warn!(?node, ?filters, "MQTT subscribe outside the node's ack topic: connection closed");
                    return Err("foreign_subscription");
                }
                // A second CONNECT is a protocol violation.
                Packet::Connect { .. } => return Err("second_connect"),
                _ => {}
            }
            up_write
                .write_all(&buf[..len])
                .await
                .map_err(|_| "upstream_closed")?;
            buf.drain(..len);
        }
    }
    .await;
    let _ = up_write.shutdown().await;
    down.abort();
    result
}

/// Reads until `buf` holds a complete packet; `Ok(None)` at EOF first.
async fn next_packet<S: AsyncRead + Unpin>(
    client: &mut S,
    buf: &mut Vec<u8>,
    cfg: &GateConfig,
) -> Result<Option<(Packet, usize)>, Malformed> {
    loop {
        if let Some(p) = parse(buf, cfg.max_packet_bytes)? {
            return Ok(Some(p));
        }
        let mut chunk = [0u8; 4096];
        let n = client
            .read(&mut chunk)
            .await
            .map_err(|_| Malformed("client_error"))?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// The node a login belongs to (its id as 16 hex digits, as in topics).
fn check_login(
    cfg: &GateConfig,
    username: Option<&str>,
    password: Option<&[u8]>,
) -> Result<Option<String>, &'static str> {
    if cfg.nodes.is_empty() {
        return Ok(None);
    }
    let username = username.ok_or("no_username")?;
    let node: NodeId = username
        .parse()
        .ok()
        .filter(|_| username.len() == 16)
        .ok_or("unknown_node")?;
    let expected = cfg.nodes.get(&node).ok_or("unknown_node")?;
    let given = password.ok_or("bad_password")?;
    if !constant_time_eq(expected.as_bytes(), given) {
        return Err("bad_password");
    }
    Ok(Some(node.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn with_len(first: u8, body: &[u8]) -> Vec<u8> {
        let mut v = vec![first];
        let mut n = body.len();
        loop {
            let b = (n % 128) as u8;
            n /= 128;
            v.push(if n > 0 { b | 0x80 } else { b });
            if n == 0 {
                break;
            }
        }
        v.extend_from_slice(body);
        v
    }

    fn s(x: &[u8]) -> Vec<u8> {
        let mut v = (x.len() as u16).to_be_bytes().to_vec();
        v.extend_from_slice(x);
        v
    }

    fn connect_packet(user: Option<&str>, pass: Option<&str>, will: bool) -> Vec<u8> {
        let mut flags = 0x02;
        if will {
            flags |= 0x04;
        }
        if user.is_some() {
            flags |= 0x80;
        }
        if pass.is_some() {
            flags |= 0x40;
        }
        let mut body = s(b"MQTT");
        body.extend([4, flags, 0, 15]);
        body.extend(s(b"client-1"));
        if will {
            body.extend(s(b"will/topic"));
            body.extend(s(b"bye"));
        }
        if let Some(u) = user {
            body.extend(s(u.as_bytes()));
        }
        if let Some(p) = pass {
            body.extend(s(p.as_bytes()));
        }
        with_len(0x10, &body)
    }

    #[test]
    fn parses_connect_publish_subscribe() {
        let c = connect_packet(Some("00000000000000ab"), Some("pw"), true);
        assert_eq!(
            parse(&c, 1 << 20),
            Ok(Some((
                Packet::Connect {
                    username: Some("00000000000000ab".into()),
                    password: Some(b"pw".to_vec())
                },
                c.len()
            )))
        );
        // Incomplete: more bytes needed, not an error.
        assert_eq!(parse(&c[..c.len() - 1], 1 << 20), Ok(None));
        let mut p = s(b"tributary/v1/00000000000000ab/delta");
        p.extend([0, 1, 0xde, 0xad]);
        let p = with_len(0x32, &p);
        assert_eq!(
            parse(&p, 1 << 20).unwrap().unwrap().0,
            Packet::Publish {
                topic: "tributary/v1/00000000000000ab/delta".into()
            }
        );
        let mut sub = vec![0, 7];
        sub.extend(s(b"a/b"));
        sub.push(1);
        sub.extend(s(b"c"));
        sub.push(0);
        let sub = with_len(0x82, &sub);
        assert_eq!(
            parse(&sub, 1 << 20).unwrap().unwrap().0,
            Packet::Subscribe {
                filters: vec!["a/b".into(), "c".into()]
            }
        );
        assert_eq!(parse(&[0xc0, 0x00], 10), Ok(Some((Packet::Other, 2))));
    }

    #[test]
    fn refuses_malformed_and_oversized() {
        assert_eq!(
            parse(&[0x30, 0xff, 0xff, 0xff, 0xff, 0x01], 1 << 30),
            Err(Malformed("bad_remaining_length"))
        );
        assert_eq!(parse(&[0x30, 0x80, 0x01], 100), Err(Malformed("oversized")));
        assert_eq!(parse(&[0x30, 0x01, 0x00], 100), Err(Malformed("truncated")));
        assert_eq!(
            parse(&with_len(0x82, &[0, 1]), 100),
            Err(Malformed("empty_subscribe"))
        );
        let mut bad = s(b"HTTP");
        bad.extend([4, 0, 0, 0]);
        assert_eq!(
            parse(&with_len(0x10, &bad), 100),
            Err(Malformed("not_mqtt"))
        );
    }

    #[test]
    fn topics_a_node_may_publish_on() {
        let n = "00000000000000ab";
        for ok in ["hello", "delta", "alert", "config"] {
            assert!(may_publish(n, &format!("tributary/v1/{n}/{ok}")));
        }
        for bad in [
            "tributary/v1/00000000000000ac/delta",
            "tributary/v1/00000000000000ab/ack",
            "tributary/v1/00000000000000ab/delta/x",
            "tributary/v1/00000000000000abc/delta",
            "other/topic",
        ] {
            assert!(!may_publish(n, bad), "{bad}");
        }
    }

    #[test]
    fn logins() {
        let cfg = GateConfig {
            nodes: Arc::new(HashMap::from([(
                NodeId(0xab),
                "secret-secret-16".to_owned(),
            )])),
            tls: None,
            upstream: "127.0.0.1:1".parse().unwrap(),
            max_packet_bytes: 1024,
            refused: RefusedFamily::default(),
        };
        let ok = check_login(&cfg, Some("00000000000000ab"), Some(b"secret-secret-16"));
        assert_eq!(ok, Ok(Some("00000000000000ab".to_owned())));
        assert_eq!(
            check_login(&cfg, Some("ab"), Some(b"secret-secret-16")),
            Err("unknown_node")
        );
        assert_eq!(
            check_login(&cfg, Some("00000000000000ac"), Some(b"x")),
            Err("unknown_node")
        );
        assert_eq!(
            check_login(&cfg, Some("00000000000000ab"), Some(b"secret-secret-17")),
            Err("bad_password")
        );
        assert_eq!(
            check_login(&cfg, Some("00000000000000ab"), None),
            Err("bad_password")
        );
        assert_eq!(check_login(&cfg, None, None), Err("no_username"));
        // Without node logins (TLS only) anyone gets in, as nobody.
        let open = GateConfig {
            nodes: Arc::default(),
            ..cfg
        };
        assert_eq!(check_login(&open, None, None), Ok(None));
    }

    proptest! {
        /// Any bytes: a packet, "need more", or a reason; never a panic,
        /// and a parsed length never exceeds the input.
        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
            if let Ok(Some((_, n))) = parse(&bytes, 256) {
                prop_assert!(n <= bytes.len());
            }
        }
    }
}
