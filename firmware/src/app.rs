//! The device's application logic, free of hardware: the board feeds it
//! samples, incoming messages and the time, and it hands back the messages
//! to send. Everything here runs (and is tested) on the host.
//!
//! # Data path
//!
//! A sample of sensor *k* at wall time *t* goes into the open window of
//! that sensor (a [`Summary`] of the bucket of `config.window` containing
//! *t*) and through the sensor's detector ([`EwmaZScore`] with an
//! [`AlertState`]; alerts are counted in [`Stats`], the wire format has no
//! device alert message and the gateway runs its own ensemble). When a
//! sample falls in a later bucket, or [`App::poll`] finds the bucket over,
//! the window closes and is queued in the ring.
//!
//! # The ring and sequence numbers
//!
//! The ring holds closed windows oldest first: a prefix that is *in
//! flight* (sent with a sequence number, not acknowledged yet) and the rest,
//! *pending*, not sent yet. A window gets its `seq` only when it is first
//! sent, at most `config.in_flight` at a time, so the seqs of one boot are
//! contiguous and the gateway's cumulative acknowledgement can move past
//! all of them. An in-flight window never changes (the gateway may have
//! stored it: resending it under the same seq is a harmless duplicate);
//! pending windows have never left the device, so they may be merged.
//!
//! When the ring is full, two pending windows of the same sensor that are
//! adjacent in it merge ([`Summary::combine`]) into one window at the finest
//! resolution whose bucket holds both, preferring the pair that needs the
//! finest resolution, then the oldest: precision is lost, not samples
//! ([`Stats::merges`]). Only when no pair can merge (different days, or
//! everything in flight) is the oldest pending window dropped
//! ([`Stats::dropped_windows`], [`Stats::dropped_samples`]).
//!
//! # Link protocol (device side; gateway side: edge-node `sources::serial`)
//!
//! - At start the device says [`DeviceHello`]. The gateway answers every
//!   hello with a [`TimeSync`].
//! - [`TimeSync`] sets the clock (`wall = uptime + offset`). If the device
//!   was waiting for the answer to its hello, that is all; otherwise the
//!   gateway is asking for a hello (it restarted, or missed the last one):
//!   the device says hello again.
//! - Right after every hello the device resends its in-flight windows,
//!   oldest first, because the gateway takes the first data frame after a
//!   hello as the oldest unacknowledged one.
//! - [`DeviceAck`] `{boot, upto}` is cumulative: every window with
//!   `seq ≤ upto` leaves the ring. Acks of another boot are ignored.
//! - When acknowledgements stop moving for `config.retry_ms` while windows
//!   are in flight (the gateway is gone, or frames were lost), the device
//!   says hello again and resends them; a gateway that came back answers
//!   and acknowledges. A hello left unanswered for `config.retry_ms` is
//!   repeated too (the gateway may start after the device), so the device
//!   keeps asking until a [`TimeSync`] answers; a lost answer thus costs
//!   one retry period.
//! - Samples taken before the first [`TimeSync`] have no wall time: they
//!   are counted ([`Stats::unsynced_samples`]) and dropped.

use heapless::Vec;
use tributary_core::codec::v1::{DeviceAck, DeviceHello, DeviceMessage, TimeSync, Window};
use tributary_core::detect::{AlertEvent, AlertPolicy, AlertState, Detector, EwmaZScore};
use tributary_core::ids::{Bucket, DeviceId, Resolution, SensorId, Timestamp};
use tributary_core::summary::Summary;

/// What the application is configured with.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Config {
    /// This device.
    pub device: DeviceId,
    /// Firmware version sent in the hello.
    pub firmware: u16,
    /// Width of the windows the device closes (the gateway's finest
    /// resolution is one second).
    pub window: Resolution,
    /// Most windows sent and not yet acknowledged.
    pub in_flight: usize,
    /// Time without acknowledgement progress after which the device says
    /// hello again and resends what is in flight.
    pub retry_ms: u64,
    /// When the detector's alerts open and resolve.
    pub alerts: AlertPolicy,
}

impl Config {
    /// One-second windows, 8 windows in flight, retry after 2 s.
    pub const fn new(device: DeviceId, firmware: u16) -> Config {
        Config {
            device,
            firmware,
            window: Resolution::Second,
            in_flight: 8,
            retry_ms: 2_000,
            alerts: AlertPolicy::DEFAULT,
        }
    }
}

/// Counters of what the application did, for a debug console or a test.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Samples recorded into a window.
    pub samples: u64,
    /// Samples dropped because the clock was not set yet.
    pub unsynced_samples: u64,
    /// Samples refused as non-finite.
    pub rejected_samples: u64,
    /// Windows closed.
    pub windows: u64,
    /// Pairs of pending windows merged into a coarser one.
    pub merges: u64,
    /// Pending windows dropped because nothing could merge.
    pub dropped_windows: u64,
    /// Samples in the dropped windows.
    pub dropped_samples: u64,
    /// Data frames sent for the first time.
    pub frames_sent: u64,
    /// Data frames sent again (after a hello).
    pub frames_resent: u64,
    /// Windows acknowledged by the gateway.
    pub acked_windows: u64,
    /// Samples in the acknowledged windows: durable at the gateway.
    pub acked_samples: u64,
    /// Hellos sent.
    pub hellos: u64,
    /// Acks for another boot, or for seqs never sent.
    pub ignored_acks: u64,
    /// Detector alerts opened.
    pub alerts: u64,
}

/// Bytes of RAM one buffered window takes in the ring.
pub const WINDOW_BYTES: usize = core::mem::size_of::<Entry>();

/// A closed window in the ring.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Entry {
    /// `Some` once sent (in flight).
    seq: Option<u32>,
    sensor: SensorId,
    resolution: Resolution,
    bucket: Bucket,
    summary: Summary,
}

impl Entry {
    fn message(&self, seq: u32) -> DeviceMessage {
        DeviceMessage::Window(Window {
            seq,
            sensor: self.sensor,
            resolution: self.resolution,
            bucket: self.bucket,
            summary: self.summary,
        })
    }
}

/// The open window and detector of one sensor.
#[derive(Clone, Copy, Debug)]
struct Channel {
    sensor: SensorId,
    bucket: Bucket,
    summary: Summary,
    detector: EwmaZScore,
    alert: AlertState,
}

/// The sensor index given is not one of the configured sensors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnknownSensor;

/// The application: `S` sensors, a ring of `N` windows.
#[derive(Debug)]
pub struct App<const S: usize, const N: usize> {
    config: Config,
    boot: u32,
    /// `wall − uptime` in ms, once a [`TimeSync`] arrived.
    offset: Option<i64>,
    channels: [Channel; S],
    ring: Vec<Entry, N>,
    /// How many ring entries (a prefix) are in flight.
    in_flight: usize,
    next_seq: u32,
    /// A hello was sent and its [`TimeSync`] has not arrived.
    hello_pending: bool,
    /// Uptime of the last hello.
    last_hello: u64,
    /// Uptime of the last acknowledgement progress (or of the send that
    /// started the wait).
    last_progress: u64,
    stats: Stats,
}

impl<const S: usize, const N: usize> App<S, N> {
    /// An application for `sensors` in boot `boot` (a boot counter or a
    /// random number: the gateway keys sequence numbers on it).
    pub fn new(config: Config, boot: u32, sensors: [SensorId; S]) -> Self {
        let channels = sensors.map(|sensor| Channel {
            sensor,
            bucket: Bucket::new(0),
            summary: Summary::EMPTY,
            detector: EwmaZScore::default(),
            alert: AlertState::new(),
        });
        App {
            config,
            boot,
            offset: None,
            channels,
            ring: Vec::new(),
            in_flight: 0,
            next_seq: 0,
            hello_pending: false,
            last_hello: 0,
            last_progress: 0,
            stats: Stats::default(),
        }
    }

    /// The counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Windows in the ring (in flight and pending).
    pub fn buffered(&self) -> usize {
        self.ring.len()
    }

    /// Windows sent and not acknowledged.
    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// Wall time at `uptime_ms`, once the clock is set.
    pub fn wall_time(&self, uptime_ms: u64) -> Option<Timestamp> {
        let offset = self.offset?;
        let wall = i128::from(uptime_ms) + i128::from(offset);
        u64::try_from(wall).ok().map(Timestamp::from_millis)
    }

    /// Boots the link: says hello.
    pub fn start(&mut self, uptime_ms: u64, emit: &mut impl FnMut(&DeviceMessage)) {
        self.say_hello(uptime_ms, emit);
    }

    /// Records one sample of sensor number `index` (in the order given to
    /// [`App::new`]) taken at `uptime_ms`.
    pub fn record(
        &mut self,
        index: usize,
        uptime_ms: u64,
        value: f32,
    ) -> Result<(), UnknownSensor> {
        if index >= S {
            return Err(UnknownSensor);
        }
        let Some(t) = self.wall_time(uptime_ms) else {
            self.stats.unsynced_samples += 1;
            return Ok(());
        };
        let x = f64::from(value);
        if !x.is_finite() {
            self.stats.rejected_samples += 1;
            return Ok(());
        }
        let bucket = Bucket::containing(t, self.config.window);
        let open_elsewhere = self
            .channels
            .get(index)
            .is_some_and(|c| !c.summary.is_empty() && c.bucket != bucket);
        if open_elsewhere {
            self.close(index);
        }
        let policy = self.config.alerts;
        let Some(channel) = self.channels.get_mut(index) else {
            return Err(UnknownSensor);
        };
        if channel.summary.is_empty() {
            channel.bucket = bucket;
        }
        if channel.summary.record(t, x).is_err() {
            self.stats.rejected_samples += 1;
            return Ok(());
        }
        self.stats.samples += 1;
        let score = channel.detector.step(t, x);
        if let Some(AlertEvent::Opened { .. }) = channel.alert.step(&policy, t, score) {
            self.stats.alerts += 1;
        }
        Ok(())
    }

    /// Closes windows whose bucket is over, sends what the in-flight limit
    /// allows, and retries when acknowledgements stalled. Call it often
    /// (every sample period at least).
    pub fn poll(&mut self, uptime_ms: u64, emit: &mut impl FnMut(&DeviceMessage)) {
        if let Some(t) = self.wall_time(uptime_ms) {
            let now = Bucket::containing(t, self.config.window);
            for index in 0..S {
                let over = self
                    .channels
                    .get(index)
                    .is_some_and(|c| !c.summary.is_empty() && c.bucket < now);
                if over {
                    self.close(index);
                }
            }
        }
        let retry = self.config.retry_ms;
        let stalled = self.in_flight > 0 && uptime_ms.saturating_sub(self.last_progress) >= retry;
        let unanswered = self.hello_pending && uptime_ms.saturating_sub(self.last_hello) >= retry;
        if stalled || unanswered {
            self.say_hello(uptime_ms, emit);
        }
        self.send_pending(uptime_ms, emit);
    }

    /// Handles a message from the gateway.
    pub fn on_message(
        &mut self,
        msg: &DeviceMessage,
        uptime_ms: u64,
        emit: &mut impl FnMut(&DeviceMessage),
    ) {
        match msg {
            DeviceMessage::TimeSync(TimeSync { now }) => {
                let offset = i128::from(now.as_millis()) - i128::from(uptime_ms);
                self.offset = i64::try_from(offset).ok();
                if self.hello_pending {
                    self.hello_pending = false;
                } else {
                    self.say_hello(uptime_ms, emit);
                }
            }
            DeviceMessage::Ack(DeviceAck { boot, upto }) => {
                self.on_ack(*boot, *upto, uptime_ms);
                self.send_pending(uptime_ms, emit);
            }
            // Device → gateway messages echoed back: nothing to do.
            DeviceMessage::Hello(_) | DeviceMessage::Readings(_) | DeviceMessage::Window(_) => {}
        }
    }

    fn on_ack(&mut self, boot: u32, upto: u32, uptime_ms: u64) {
        let acked = self
            .ring
            .iter()
            .take(self.in_flight)
            .take_while(|e| e.seq.is_some_and(|s| s <= upto))
            .count();
        if boot != self.boot || acked == 0 {
            // An old ack again (the watermark resent) is no progress either.
            if boot != self.boot {
                self.stats.ignored_acks += 1;
            }
            return;
        }
        for e in self.ring.iter().take(acked) {
            self.stats.acked_windows += 1;
            self.stats.acked_samples += e.summary.count;
        }
        // In place, oldest first: N is small.
        let len = self.ring.len();
        self.ring.rotate_left(acked);
        self.ring.truncate(len - acked);
        self.in_flight -= acked;
        self.last_progress = uptime_ms;
    }

    fn say_hello(&mut self, uptime_ms: u64, emit: &mut impl FnMut(&DeviceMessage)) {
        emit(&DeviceMessage::Hello(DeviceHello {
            device: self.config.device,
            boot: self.boot,
            firmware: self.config.firmware,
        }));
        self.stats.hellos += 1;
        self.hello_pending = true;
        self.last_hello = uptime_ms;
        for e in self.ring.iter().take(self.in_flight) {
            if let Some(seq) = e.seq {
                emit(&e.message(seq));
                self.stats.frames_resent += 1;
            }
        }
        self.last_progress = uptime_ms;
    }

    fn send_pending(&mut self, uptime_ms: u64, emit: &mut impl FnMut(&DeviceMessage)) {
        while self.in_flight < self.config.in_flight {
            let seq = self.next_seq;
            let Some(e) = self.ring.get_mut(self.in_flight) else {
                break;
            };
            e.seq = Some(seq);
            emit(&e.message(seq));
            if self.in_flight == 0 {
                // The wait for an acknowledgement starts now.
                self.last_progress = uptime_ms;
            }
            self.in_flight += 1;
            self.next_seq = seq.wrapping_add(1);
            self.stats.frames_sent += 1;
        }
    }

    /// Moves sensor `index`'s open window into the ring.
    fn close(&mut self, index: usize) {
        let Some(channel) = self.channels.get_mut(index) else {
            return;
        };
        let entry = Entry {
            seq: None,
            sensor: channel.sensor,
            resolution: self.config.window,
            bucket: channel.bucket,
            summary: channel.summary,
        };
        channel.summary = Summary::EMPTY;
        self.stats.windows += 1;
        if self.ring.is_full() && !self.make_room(entry) {
            return;
        }
        // Not full: either it was not, or make_room freed a slot.
        let _ = self.ring.push(entry);
    }

    /// Called with a full ring and the window about to enter it. Merges the
    /// best pair of adjacent same-sensor pending windows — the incoming one
    /// counts as the newest pending window — or, if none can merge, drops
    /// the oldest pending window. Returns whether `incoming` still needs a
    /// slot (false when it was merged into a window in the ring, or could
    /// not be kept at all).
    fn make_room(&mut self, incoming: Entry) -> bool {
        let mut best: Option<(usize, usize, Resolution)> = None;
        for i in self.in_flight..self.ring.len() {
            let Some(a) = self.ring.get(i) else { break };
            let next = self
                .ring
                .iter()
                .enumerate()
                .skip(i + 1)
                .find(|(_, b)| b.sensor == a.sensor);
            // `len` stands for the incoming window.
            let (j, b) = match next {
                Some((j, b)) => (j, b),
                None if incoming.sensor == a.sensor => (self.ring.len(), &incoming),
                None => continue,
            };
            let Some(r) = common_resolution(a, b) else {
                continue;
            };
            if best.is_none_or(|(_, _, best_r)| r < best_r) {
                best = Some((i, j, r));
            }
        }
        let Some((i, j, r)) = best else {
            if self.in_flight < self.ring.len() {
                let e = self.ring.remove(self.in_flight);
                self.stats.dropped_windows += 1;
                self.stats.dropped_samples += e.summary.count;
                return true;
            }
            // Everything is in flight (a ring no larger than the in-flight
            // limit): the new window has nowhere to go.
            self.stats.dropped_windows += 1;
            self.stats.dropped_samples += incoming.summary.count;
            return false;
        };
        let (b, room) = if j < self.ring.len() {
            (self.ring.remove(j), true)
        } else {
            (incoming, false)
        };
        if let Some(a) = self.ring.get_mut(i) {
            a.summary.combine(&b.summary);
            a.resolution = r;
            a.bucket = Bucket::containing(a.summary.first_ts, r);
            self.stats.merges += 1;
        }
        room
    }
}
/// The finest resolution, no finer than either window's, whose bucket holds
/// both windows.
fn common_resolution(a: &Entry, b: &Entry) -> Option<Resolution> {
    let first = a.summary.first_ts.min(b.summary.first_ts);
    let last = a.summary.last_ts.max(b.summary.last_ts);
    let mut r = a.resolution.max(b.resolution);
    loop {
        if Bucket::containing(first, r) == Bucket::containing(last, r) {
            return Some(r);
        }
        r = r.coarser()?;
    }
}
