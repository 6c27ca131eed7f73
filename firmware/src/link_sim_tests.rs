//! The application against a model of the gateway's serial source
//! (edge-node `sources/serial.rs` + `serial/acks.rs`, and the store's
//! dedup on (boot, seq)) over a lossy link, with gateway crashes, for many
//! seeds. Checks the end-to-end promise: every sample is stored exactly
//! once, and whatever the device saw acknowledged is stored.
//!
//! A seed that fails is printed; `LINK_SIM_SEED=n` replays it,
//! `LINK_SIM_SEEDS=n` runs seeds `0..n` (default 100).

use std::collections::{BTreeMap, BTreeSet};
use std::vec::Vec;

use tributary_core::codec::v1::{DeviceAck, DeviceMessage, TimeSync};
use tributary_core::ids::{DeviceId, SensorId, Timestamp};

use crate::app::{App, Config};

const T0: u64 = 1_700_000_000_000;
const BOOT: u32 = 42;

/// splitmix64: small, seedable, good enough to pick losses.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// True with probability `percent` %.
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

/// The gateway's per-session acknowledgement state (serial/acks.rs).
#[derive(Default)]
struct Session {
    next: Option<u32>,
    done: BTreeSet<u32>,
    tainted: bool,
}

/// The gateway: a durable store (survives crashes) and a session (does not).
#[derive(Default)]
struct Gateway {
    up: bool,
    /// seq → samples stored (dedup on seq, as the store's origin window).
    store: BTreeMap<u32, u64>,
    session: Option<Session>,
}

impl Gateway {
    fn stored(&self) -> u64 {
        self.store.values().sum()
    }

    /// A frame arrived corrupted (its bytes failed CRC/COBS).
    fn frame_lost(&mut self) {
        if let Some(s) = &mut self.session
            && s.next.is_none()
        {
            s.tainted = true;
        }
    }

    fn handle(&mut self, msg: &DeviceMessage, now: u64, out: &mut Vec<DeviceMessage>) {
        let sync = DeviceMessage::TimeSync(TimeSync {
            now: Timestamp::from_millis(T0 + now),
        });
        match msg {
            DeviceMessage::Hello(h) => {
                assert_eq!(h.boot, BOOT);
                match &mut self.session {
                    Some(s) => {
                        if s.next.is_none() {
                            s.tainted = false;
                        }
                    }
                    None => self.session = Some(Session::default()),
                }
                out.push(sync);
            }
            DeviceMessage::Window(w) => {
                let Some(s) = &mut self.session else {
                    // no_hello: dropped, a hello is asked for.
                    out.push(sync);
                    return;
                };
                if s.next.is_none() && !s.tainted {
                    s.next = Some(w.seq);
                }
                if s.next.is_none() {
                    out.push(sync);
                }
                // Durable (or a duplicate the store ignores).
                self.store.entry(w.seq).or_insert(w.summary.count);
                let Some(mut next) = s.next else { return };
                if w.seq >= next {
                    s.done.insert(w.seq);
                    while s.done.remove(&next) {
                        next += 1;
                    }
                    s.next = Some(next);
                }
                if let Some(upto) = next.checked_sub(1) {
                    out.push(DeviceMessage::Ack(DeviceAck { boot: BOOT, upto }));
                }
            }
            _ => panic!("the device sent {msg:?}"),
        }
    }
}

/// Runs one seed; returns the app's merges.
fn run(seed: u64) -> u64 {
    let mut rng = Rng(seed);
    let mut config = Config::new(DeviceId(1), 1);
    config.in_flight = 1 + (rng.next() % 8) as usize;
    let mut app: App<2, 24> = App::new(config, BOOT, [SensorId(1), SensorId(2)]);
    let mut gw = Gateway {
        up: rng.chance(50),
        ..Gateway::default()
    };
    let loss = rng.next() % 20; // % of frames lost each way while lossy
    let mut to_gw: Vec<DeviceMessage> = Vec::new();
    app.start(0, &mut |m| to_gw.push(m.clone()));
    let mut samples_before = 0;
    // 4 minutes of sampling every 100 ms with crashes and losses, then a
    // calm end with the gateway up, no losses and no new samples.
    let (noisy_end, end) = (240_000u64, 330_000u64);
    let mut now = 0u64;
    while now < end {
        let calm = now >= noisy_end;
        if calm {
            gw.up = true;
        } else if rng.chance(1) {
            // Crash or restart: the session is lost, the store is not.
            gw.up = !gw.up;
            gw.session = None;
        }
        if !calm {
            let x = (now % 7_000) as f32 / 100.0;
            app.record((now / 100 % 2) as usize, now, x).unwrap();
        }
        app.poll(now, &mut |m| to_gw.push(m.clone()));
        // Deliver both ways until quiet (a step's exchange is fast).
        let mut rounds = 0;
        while !to_gw.is_empty() {
            rounds += 1;
            assert!(rounds < 100, "seed {seed}: the link never goes quiet");
            let mut to_dev = Vec::new();
            for m in to_gw.drain(..) {
                if !gw.up {
                    continue;
                }
                if !calm && rng.chance(loss) {
                    gw.frame_lost();
                    continue;
                }
                gw.handle(&m, now, &mut to_dev);
            }
            for m in to_dev {
                if !calm && rng.chance(loss) {
                    continue;
                }
                app.on_message(&m, now, &mut |m| to_gw.push(m.clone()));
            }
        }
        // Invariants at every step.
        let st = app.stats();
        assert!(
            gw.stored() <= st.samples,
            "seed {seed}: stored {} > sampled {} (counted twice)",
            gw.stored(),
            st.samples
        );
        assert!(
            st.acked_samples <= gw.stored(),
            "seed {seed}: acknowledged {} > stored {}",
            st.acked_samples,
            gw.stored()
        );
        assert!(st.acked_samples >= samples_before, "seed {seed}");
        samples_before = st.acked_samples;
        now += 100;
    }
    let st = app.stats();
    assert_eq!(app.buffered(), 0, "seed {seed}: {st:?}");
    assert_eq!(
        gw.stored() + st.dropped_samples,
        st.samples,
        "seed {seed}: {st:?}"
    );
    assert_eq!(st.acked_samples, gw.stored(), "seed {seed}");
    assert_eq!(
        st.dropped_samples, 0,
        "seed {seed}: merging always had a pair"
    );
    st.merges
}

#[test]
fn every_sample_is_stored_once_through_losses_and_gateway_crashes() {
    if let Some(seed) = std::env::var("LINK_SIM_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        run(seed);
        return;
    }
    let seeds = std::env::var("LINK_SIM_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(100);
    let merges: u64 = (0..seeds).map(run).sum();
    // Outages long enough to fill the ring happened: merging was exercised.
    assert!(merges > 0);
}
