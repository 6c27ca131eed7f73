//! A seeded, lossy, reordering, duplicating in-memory network between fleet
//! replicas, and the sync loop that drives them to quiescence.

use tributary_fleet::{FleetConfig, Peer};

/// splitmix64: small, seedable, good enough to pick drops and orders.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// True with probability `percent` / 100.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// How the network misbehaves while "faulty"; afterwards it heals.
#[derive(Clone, Copy, Debug)]
pub struct Faults {
    /// Percent of messages lost.
    pub loss: u64,
    /// Percent of delivered messages delivered twice.
    pub duplicate: u64,
    /// Rounds during which faults apply (then the network is perfect).
    pub faulty_rounds: usize,
}

/// Seed for a test: `SIM_SEED` replays a failure.
// Each test binary compiles this module; the property test draws its seeds
// from proptest instead.
#[allow(dead_code)]
pub fn seed(default: u64) -> u64 {
    std::env::var("SIM_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// Syncs `replicas` over `links` (pairs of indices) until no replica has
/// anything to send. Messages in flight are delivered in random order, some
/// lost or duplicated. When the network goes quiet with replicas still
/// waiting for an answer that was lost, every link "reconnects": each side
/// replaces its `Peer` by its persisted form (`encode`/`decode`), which is
/// what a gateway does on an MQTT reconnect. Returns the rounds used.
pub fn sync_to_quiescence(
    replicas: &mut [FleetConfig],
    links: &[(usize, usize)],
    rng: &mut Rng,
    faults: Faults,
) -> usize {
    // peers[l].0 is a's view of b, peers[l].1 is b's view of a.
    let mut peers: Vec<(Peer, Peer)> = links.iter().map(|_| (Peer::new(), Peer::new())).collect();
    // (link, towards b?, bytes)
    let mut in_flight: Vec<(usize, bool, Vec<u8>)> = Vec::new();
    for round in 0..10_000 {
        let faulty = round < faults.faulty_rounds;
        for (l, &(a, b)) in links.iter().enumerate() {
            if let Some(m) = replicas[a].generate(&mut peers[l].0) {
                in_flight.push((l, true, m));
            }
            if let Some(m) = replicas[b].generate(&mut peers[l].1) {
                in_flight.push((l, false, m));
            }
        }
        if in_flight.is_empty() {
            // Quiet: either everyone holds the same history, or a lost
            // message left a side waiting for an answer: reconnect.
            let first = replicas[0].heads();
            if replicas.iter_mut().all(|r| r.heads() == first) {
                return round;
            }
            for p in &mut peers {
                p.0 = Peer::decode(&p.0.encode()).expect("own encoding decodes");
                p.1 = Peer::decode(&p.1.encode()).expect("own encoding decodes");
            }
            continue;
        }
        // Deliver a random subset in random order; the rest stay in flight
        // (reordered behind later messages).
        let mut keep = Vec::new();
        while !in_flight.is_empty() {
            let (l, to_b, m) = in_flight.swap_remove(rng.below(in_flight.len()));
            if faulty && rng.chance(30) {
                keep.push((l, to_b, m));
                continue;
            }
            if faulty && rng.chance(faults.loss) {
                continue;
            }
            let copies = if faulty && rng.chance(faults.duplicate) {
                2
            } else {
                1
            };
            let (a, b) = links[l];
            for _ in 0..copies {
                let result = if to_b {
                    replicas[b].receive(&mut peers[l].1, &m)
                } else {
                    replicas[a].receive(&mut peers[l].0, &m)
                };
                let _changed = result.expect("messages between honest replicas apply");
            }
        }
        in_flight = keep;
    }
    panic!("no quiescence after 10000 rounds");
}
