//! A fault-injecting TCP proxy: put it between MQTT clients (edge
//! gateways) and the broker and break the network on command.

use std::collections::HashMap;
use std::io::{self, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::schedule::Step;

/// How long a pump blocks in `read` before re-checking the mode and the
/// stop flag: bounds how late a mode change or a drop is noticed.
const READ_TICK: Duration = Duration::from_millis(20);
/// How often idle loops (black-holed connections, the non-blocking accept
/// loop, throttle pauses) look at the shared state.
const IDLE_TICK: Duration = Duration::from_millis(5);
/// Upstream is a local process: a connect that takes longer is a failure,
/// and the bound keeps `Drop` from waiting long on a half-open connect.
const UPSTREAM_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const BUF_SIZE: usize = 16 * 1024;

/// What the proxy does with traffic. Change it any time with
/// [`FaultProxy::set_mode`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// Forward everything as fast as it comes.
    #[default]
    Pass,
    /// A network partition the endpoints notice: every current connection
    /// is closed (both sides), new ones are accepted and closed at once
    /// without reaching upstream (the client sees EOF / reset right away).
    Partition,
    /// A stall the endpoints do not notice: connections stay open (new ones
    /// are accepted too) but no byte is forwarded in either direction.
    /// Peers see silence and only their own timeouts (MQTT keep-alive)
    /// can tell.
    ///
    /// Leaving `Blackhole` (to any other mode) closes every connection that
    /// lived through it instead of delivering what was held back: that is
    /// what a NAT or a firewall that silently dropped its state does when
    /// the path comes back (the next segment gets a RST), it is simpler, and
    /// it is the harsher case for the client. New connections then behave
    /// according to the new mode.
    Blackhole,
    /// Forward, but at most `bytes_per_sec` per direction per connection
    /// (0 is treated as 1). Content is unchanged; only pacing differs.
    Throttle {
        /// The rate limit for each direction of each connection.
        bytes_per_sec: u64,
    },
}

/// Counters since the proxy started; see [`FaultProxy::stats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ProxyStats {
    /// Connections accepted and proxied (including black-holed ones).
    pub accepted: u64,
    /// Connections accepted and closed at once because of `Partition`.
    pub refused: u64,
    /// Connections whose upstream connect failed (closed at once).
    pub upstream_failed: u64,
    /// Connections the proxy closed itself: [`FaultProxy::drop_connections`],
    /// entering `Partition`, leaving `Blackhole`, proxy drop. Closes by an
    /// endpoint are not counted.
    pub dropped: u64,
    /// Bytes written to upstream (client to upstream direction).
    pub bytes_to_upstream: u64,
    /// Bytes written to clients (upstream to client direction).
    pub bytes_to_client: u64,
}

/// A TCP proxy from a free loopback port ([`FaultProxy::addr`]) to an
/// upstream address, with injectable faults ([`Mode`],
/// [`FaultProxy::drop_connections`]).
///
/// Each accepted connection gets its own upstream connection and two
/// threads pumping bytes (TCP_NODELAY on all sockets, so small MQTT packets
/// are not delayed by the proxy). Controls can be called from any thread.
///
/// Dropping the proxy stops the listener, closes every connection and joins
/// every thread it started.
#[derive(Debug)]
pub struct FaultProxy {
    shared: Arc<Shared>,
    addr: SocketAddr,
    acceptor: Option<JoinHandle<()>>,
}

#[derive(Debug, Default)]
struct Counters {
    accepted: AtomicU64,
    refused: AtomicU64,
    upstream_failed: AtomicU64,
    dropped: AtomicU64,
    bytes_to_upstream: AtomicU64,
    bytes_to_client: AtomicU64,
}

#[derive(Debug)]
struct Shared {
    upstream: SocketAddr,
    /// Mode and connection table under one lock: a mode change and the
    /// closing it implies happen atomically with respect to new
    /// connections being registered.
    state: Mutex<State>,
    stop: AtomicBool,
    counters: Counters,
}

#[derive(Debug, Default)]
struct State {
    mode: Mode,
    conns: HashMap<u64, Arc<Conn>>,
    next_id: u64,
    /// Every thread started for connections; joined on drop, pruned of
    /// finished ones as new ones are added.
    threads: Vec<JoinHandle<()>>,
}

#[derive(Debug)]
struct Conn {
    /// A clone of the client socket, kept only to shut it down.
    client: TcpStream,
    /// A clone of the upstream socket once connected.
    upstream: Mutex<Option<TcpStream>>,
    closed: AtomicBool,
    /// Lived through a `Blackhole`: closed when the black hole ends.
    blackholed: AtomicBool,
}

impl Conn {
    /// Closes both sockets; blocked reads return EOF and blocked writes
    /// fail, so both pumps end promptly. Returns whether this call closed
    /// it (false if it was already closed).
    fn close(&self) -> bool {
        if self.closed.swap(true, Ordering::SeqCst) {
            return false;
        }
        let _ = self.client.shutdown(Shutdown::Both);
        if let Some(up) = lock(&self.upstream).as_ref() {
            let _ = up.shutdown(Shutdown::Both);
        }
        true
    }

    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }
}

/// Poisoning only means a test thread panicked while holding the lock; the
/// data (a mode, a table of sockets) is still consistent, and the proxy
/// must keep working so that drop can clean up.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl FaultProxy {
    /// Starts a proxy to `upstream` on a free port of 127.0.0.1, in
    /// [`Mode::Pass`]. Upstream need not be up yet: it is connected per
    /// client connection.
    pub fn start(upstream: SocketAddr) -> io::Result<FaultProxy> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        // Non-blocking accept polled every IDLE_TICK: the acceptor can see
        // the stop flag without a wake-up connection, so Drop never hangs.
        listener.set_nonblocking(true)?;
        let shared = Arc::new(Shared {
            upstream,
            state: Mutex::new(State::default()),
            stop: AtomicBool::new(false),
            counters: Counters::default(),
        });
        let acceptor = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name(format!("fault-proxy-accept-{}", addr.port()))
                .spawn(move || accept_loop(&shared, &listener))?
        };
        Ok(FaultProxy {
            shared,
            addr,
            acceptor: Some(acceptor),
        })
    }

    /// The address clients connect to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The proxy's port (on 127.0.0.1).
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// The upstream address given at start.
    pub fn upstream(&self) -> SocketAddr {
        self.shared.upstream
    }

    /// The current mode.
    pub fn mode(&self) -> Mode {
        lock(&self.shared.state).mode
    }

    /// Switches mode. When this returns, the switch is in effect: entering
    /// `Partition` has closed every connection, leaving `Blackhole` has
    /// closed every connection that was black-holed, and no byte read after
    /// entering `Blackhole` will be forwarded.
    pub fn set_mode(&self, mode: Mode) {
        self.shared.set_mode(mode);
    }

    /// Closes every current connection now, on both sides; the mode is
    /// unchanged, so clients can reconnect at once (unless partitioned).
    pub fn drop_connections(&self) {
        let mut state = lock(&self.shared.state);
        self.shared.close_where(&mut state, |_| true);
    }

    /// Connections currently open through the proxy.
    pub fn open_connections(&self) -> usize {
        lock(&self.shared.state).conns.len()
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> ProxyStats {
        let c = &self.shared.counters;
        ProxyStats {
            accepted: c.accepted.load(Ordering::SeqCst),
            refused: c.refused.load(Ordering::SeqCst),
            upstream_failed: c.upstream_failed.load(Ordering::SeqCst),
            dropped: c.dropped.load(Ordering::SeqCst),
            bytes_to_upstream: c.bytes_to_upstream.load(Ordering::SeqCst),
            bytes_to_client: c.bytes_to_client.load(Ordering::SeqCst),
        }
    }

    /// Plays `steps` (see [`crate::schedule`]) on a background thread and
    /// returns at once. The runner sets `Pass` when the schedule ends, when
    /// it is stopped, or when it is dropped, so the system can converge.
    pub fn run_schedule(&self, steps: Vec<Step>) -> ScheduleRunner {
        let stop = Arc::new(AtomicBool::new(false));
        let shared = self.shared.clone();
        let thread = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                for step in steps {
                    if stop.load(Ordering::SeqCst) || shared.stop.load(Ordering::SeqCst) {
                        break;
                    }
                    {
                        let mut state = lock(&shared.state);
                        if step.drop_connections {
                            shared.close_where(&mut state, |_| true);
                        }
                    }
                    shared.set_mode(step.mode);
                    let end = Instant::now() + step.hold;
                    while Instant::now() < end
                        && !stop.load(Ordering::SeqCst)
                        && !shared.stop.load(Ordering::SeqCst)
                    {
                        std::thread::sleep(IDLE_TICK.min(end - Instant::now()));
                    }
                }
                shared.set_mode(Mode::Pass);
            })
        };
        ScheduleRunner {
            stop,
            thread: Some(thread),
        }
    }
}

impl Shared {
    /// See [`FaultProxy::set_mode`]; here so that the schedule thread,
    /// which holds only the shared state, can switch modes too.
    fn set_mode(&self, mode: Mode) {
        let mut state = lock(&self.state);
        let old = state.mode;
        state.mode = mode;
        match mode {
            Mode::Partition => self.close_where(&mut state, |_| true),
            Mode::Blackhole => {
                for c in state.conns.values() {
                    c.blackholed.store(true, Ordering::SeqCst);
                }
            }
            Mode::Pass | Mode::Throttle { .. } if old == Mode::Blackhole => {
                self.close_where(&mut state, |c| c.blackholed.load(Ordering::SeqCst));
            }
            Mode::Pass | Mode::Throttle { .. } => {}
        }
    }

    /// Closes (and unregisters) the connections matching `pred`.
    fn close_where(&self, state: &mut State, pred: impl Fn(&Conn) -> bool) {
        state.conns.retain(|_, c| {
            if !pred(c) {
                return true;
            }
            if c.close() {
                self.counters.dropped.fetch_add(1, Ordering::SeqCst);
            }
            false
        });
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        let Some(acceptor) = self.acceptor.take() else {
            return;
        };
        self.shared.stop.store(true, Ordering::SeqCst);
        let _ = acceptor.join();
        let threads = {
            let mut state = lock(&self.shared.state);
            self.shared.close_where(&mut state, |_| true);
            std::mem::take(&mut state.threads)
        };
        for t in threads {
            let _ = t.join();
        }
    }
}

/// A fault schedule playing on a background thread
/// ([`FaultProxy::run_schedule`]).
#[derive(Debug)]
pub struct ScheduleRunner {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl ScheduleRunner {
    /// Whether the whole schedule has played (the proxy is back in `Pass`).
    pub fn is_finished(&self) -> bool {
        self.thread.as_ref().is_none_or(|t| t.is_finished())
    }

    /// Waits until the schedule has played to its end.
    pub fn join(mut self) {
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }

    /// Stops the schedule early (the current step is cut short) and waits
    /// until the proxy is back in `Pass`.
    pub fn stop(self) {
        // Drop does exactly this.
    }
}

impl Drop for ScheduleRunner {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn accept_loop(shared: &Arc<Shared>, listener: &TcpListener) {
    while !shared.stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((client, _)) => on_accept(shared, client),
            Err(e) if e.kind() == ErrorKind::WouldBlock => std::thread::sleep(IDLE_TICK),
            // Transient accept errors (EMFILE, ECONNABORTED): keep serving.
            Err(_) => std::thread::sleep(IDLE_TICK),
        }
    }
}

fn on_accept(shared: &Arc<Shared>, client: TcpStream) {
    // Accepted sockets must block (with a read timeout) in the pumps,
    // whatever the platform does about inheriting O_NONBLOCK.
    let setup = client
        .set_nonblocking(false)
        .and_then(|()| client.set_nodelay(true))
        .and_then(|()| client.set_read_timeout(Some(READ_TICK)))
        .and_then(|()| client.try_clone());
    let Ok(client_clone) = setup else {
        let _ = client.shutdown(Shutdown::Both);
        return;
    };
    let mut state = lock(&shared.state);
    if state.mode == Mode::Partition {
        shared.counters.refused.fetch_add(1, Ordering::SeqCst);
        let _ = client.shutdown(Shutdown::Both);
        return;
    }
    shared.counters.accepted.fetch_add(1, Ordering::SeqCst);
    let conn = Arc::new(Conn {
        client: client_clone,
        upstream: Mutex::new(None),
        closed: AtomicBool::new(false),
        blackholed: AtomicBool::new(state.mode == Mode::Blackhole),
    });
    let id = state.next_id;
    state.next_id += 1;
    state.conns.insert(id, conn.clone());
    let thread = {
        let shared = shared.clone();
        std::thread::Builder::new()
            .name(format!("fault-proxy-conn-{id}"))
            .spawn(move || run_connection(&shared, id, &conn, client))
    };
    state.threads.retain(|t| !t.is_finished());
    match thread {
        Ok(t) => state.threads.push(t),
        // Out of threads: the connection cannot be served, close it.
        Err(_) => {
            if let Some(c) = state.conns.remove(&id) {
                c.close();
            }
        }
    }
}

/// The life of one proxied connection: wait out a black hole it was born
/// in, connect upstream, pump both ways, unregister.
fn run_connection(shared: &Arc<Shared>, id: u64, conn: &Arc<Conn>, client: TcpStream) {
    // Born in a black hole: the client connected, but the SYN "never
    // reached" upstream. It is closed when the black hole ends (set_mode)
    // or the proxy stops.
    while conn.blackholed.load(Ordering::SeqCst) && !conn.is_closed() {
        std::thread::sleep(IDLE_TICK);
    }
    if !conn.is_closed() {
        match connect_upstream(shared.upstream) {
            Ok(upstream) => pump_both(shared, conn, client, upstream),
            Err(_) => {
                shared
                    .counters
                    .upstream_failed
                    .fetch_add(1, Ordering::SeqCst);
                conn.close();
            }
        }
    }
    conn.close();
    lock(&shared.state).conns.remove(&id);
}

fn connect_upstream(addr: SocketAddr) -> io::Result<TcpStream> {
    let up = TcpStream::connect_timeout(&addr, UPSTREAM_CONNECT_TIMEOUT)?;
    up.set_nodelay(true)?;
    up.set_read_timeout(Some(READ_TICK))?;
    Ok(up)
}

fn pump_both(shared: &Arc<Shared>, conn: &Arc<Conn>, client: TcpStream, upstream: TcpStream) {
    let Ok(up_clone) = upstream.try_clone() else {
        return;
    };
    {
        // Stored, then the closed flag checked, under the same lock that
        // Conn::close takes after setting the flag: a close racing with
        // the connect either finds the socket or is seen here.
        let mut slot = lock(&conn.upstream);
        *slot = Some(up_clone);
        if conn.is_closed() {
            let _ = upstream.shutdown(Shutdown::Both);
            return;
        }
    }
    let (Ok(client_w), Ok(upstream_w)) = (client.try_clone(), upstream.try_clone()) else {
        return;
    };
    let down = {
        let shared = shared.clone();
        let conn = conn.clone();
        std::thread::Builder::new()
            .name("fault-proxy-down".into())
            .spawn(move || {
                let n = &shared.counters.bytes_to_client;
                pump(&shared, &conn, upstream, client_w, n);
            })
    };
    let Ok(down) = down else {
        return;
    };
    pump(
        shared,
        conn,
        client,
        upstream_w,
        &shared.counters.bytes_to_upstream,
    );
    let _ = down.join();
}

/// Copies `from` to `to` under the current mode until either side closes
/// or the connection is closed by the proxy.
fn pump(shared: &Shared, conn: &Conn, mut from: TcpStream, mut to: TcpStream, counter: &AtomicU64) {
    let mut buf = vec![0u8; BUF_SIZE];
    while !conn.is_closed() {
        if conn.blackholed.load(Ordering::SeqCst) {
            // Read nothing: the sender's kernel buffers fill and it stalls,
            // exactly as behind a dead path.
            std::thread::sleep(IDLE_TICK);
            continue;
        }
        let mode = lock(&shared.state).mode;
        // Throttled reads take at most ~1/10 s worth of bytes, so a pause
        // never makes a mode change or a close wait long.
        let chunk = match mode {
            Mode::Throttle { bytes_per_sec } => {
                (bytes_per_sec / 10).clamp(1, BUF_SIZE as u64) as usize
            }
            _ => BUF_SIZE,
        };
        let n = match from.read(buf.get_mut(..chunk).unwrap_or_default()) {
            Ok(0) => {
                // Orderly close by this side: pass the half-close on and
                // let the other direction finish by itself.
                let _ = to.shutdown(Shutdown::Write);
                return;
            }
            Ok(n) => n,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => continue,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => {
                conn.close();
                return;
            }
        };
        // Read during or right before a switch to Blackhole: held back
        // (dropped with the connection when the black hole ends).
        if conn.blackholed.load(Ordering::SeqCst) || conn.is_closed() {
            continue;
        }
        let data = buf.get(..n).unwrap_or_default();
        if to.write_all(data).is_err() {
            conn.close();
            return;
        }
        counter.fetch_add(n as u64, Ordering::SeqCst);
        if let Mode::Throttle { bytes_per_sec } = mode {
            pause(conn, n as u64, bytes_per_sec.max(1));
        }
    }
}

/// Sleeps as long as `bytes` take at `rate` bytes/s, in short slices so a
/// close is noticed.
fn pause(conn: &Conn, bytes: u64, rate: u64) {
    let nanos = u128::from(bytes) * 1_000_000_000 / u128::from(rate);
    let end = Instant::now() + Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX));
    while !conn.is_closed() {
        let now = Instant::now();
        if now >= end {
            return;
        }
        std::thread::sleep(IDLE_TICK.min(end - now));
    }
}
