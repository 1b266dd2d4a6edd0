//! `echo-compare`: CPU per packet of an echo server, side by side in one
//! run under one client load (issue 4 "Measure", issue 6 item 6).
//!
//! Modes, each a server thread pinned to one CPU (`--server-cpu`, default 0):
//!
//! - `floor`: a raw UDP echo — `recvmmsg` of up to 64 datagrams, one
//!   `sendmmsg` of them back, `ppoll` when a batch comes back short. No
//!   protocol at all: the kernel's own per-packet cost.
//! - `engine-uring` / `engine-mmsg`: `tos_engine::runtime::start` on that
//!   one core in echo mode (decrypt, frames, reliability, encrypt), metrics
//!   off, cBPF steering, io_uring or `recvmmsg`/`sendmmsg`.
//! - `renet`: renet 2 (`RenetServer`) behind its netcode transport in
//!   *secure* mode (connect tokens; every payload packet ChaCha20-Poly1305
//!   sealed, as ours), echoing every message on the channel it came in on.
//!   The I/O loop is `renet_netcode::NetcodeServerTransport`'s, copied so
//!   the harness can count datagrams, with one change: packets are fetched
//!   only for clients that had a message this turn (the shipped
//!   `send_packets` visits every client each call and emits an Ack packet for
//!   each, which in a tight loop would flood acks).
//!
//! The client load runs on the main thread pinned to `--client-cpu`
//! (default 1): `--clients` connected UDP sockets, each a client of the mode's
//! protocol (raw datagrams of the engine's on-wire size for the floor). Each
//! step every client with fewer than `--window` messages outstanding sends one
//! `--size`-byte message (unreliable, or `--reliable`), closed loop, or paced
//! to `--rate` messages/s in total. Every mode gets the same load for the
//! same time; modes are interleaved (`floor, engine-uring, engine-mmsg,
//! renet, floor, ...`) `--repeat` times and medians reported.
//!
//! The server thread's CPU time comes from `/proc/self/task/<tid>/schedstat`
//! (nanoseconds), split into user and system by the thread's `utime` and
//! `stime` ticks in `/proc/self/task/<tid>/stat`. Packets are the server's
//! datagrams received plus sent, counted by the server (the engine's
//! per-core counters, published once per tick).
//!
//! Only 127.0.0.1; every run is bounded in time (`--seconds` ≤ 60, plus a
//! warm-up and a 10 s connect limit) and in clients (≤ 1000).
//!
//! ```text
//! cargo run --release -p tos-benches --bin echo-compare -- --seconds 5 --repeat 3
//! ```

use std::fmt::Write as _;
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use renet::{ConnectionConfig, DefaultChannel, RenetClient, RenetServer};
use renetcode::{
    ClientAuthentication, ConnectToken, NETCODE_MAX_PACKET_BYTES, NetcodeClient, NetcodeServer,
    ServerAuthentication, ServerResult,
};
use tos_config::{CoreSelection, IoBackend, ServerConfig, Steering};
use tos_engine::runtime::{self, ServerHandle};
use tos_protocol::connection::{ClientConfig, Connection, Event, ServerKey, TransportConfig};
use tos_protocol::integrity::IntegrityTable;
use tos_protocol::rng::SplitMix64;
use tos_protocol::wire::Channel;

/// Socket buffers of every server socket (the engine's default).
const SERVER_SOCKET_BUFFER: usize = 512 * 1024;
/// Datagrams per `recvmmsg` / `sendmmsg` of the floor (the engine's default batch).
const FLOOR_BATCH: usize = 64;
/// Datagrams per client `recvmmsg`.
const CLIENT_BATCH: usize = 16;
/// Receive buffer size (all protocols stay far below).
const BUF: usize = 2048;
/// How long clients may take to connect.
const CONNECT_LIMIT: Duration = Duration::from_secs(10);
/// A client whose echoes stop for this long forgets its outstanding messages
/// (they were lost) and starts a new window.
const LOSS_RESET: Duration = Duration::from_millis(300);
/// renet's protocol id for this harness.
const RENET_PROTOCOL_ID: u64 = 0x7050_5f65_6368_6f31;
/// renet's default channels (ids of `DefaultChannel`: unreliable 0,
/// reliable unordered 1, reliable ordered 2).
const RENET_CHANNELS: [u8; 3] = [0, 1, 2];

// ------------------------------------------------------------------ options

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Floor,
    EngineUring,
    EngineMmsg,
    Renet,
}

impl Mode {
    const ALL: [Mode; 4] = [
        Mode::Floor,
        Mode::EngineUring,
        Mode::EngineMmsg,
        Mode::Renet,
    ];

    fn name(self) -> &'static str {
        match self {
            Mode::Floor => "floor",
            Mode::EngineUring => "engine-uring",
            Mode::EngineMmsg => "engine-mmsg",
            Mode::Renet => "renet",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.name() == s)
    }
}

#[derive(Debug, Clone)]
struct Args {
    seconds: f64,
    warmup: f64,
    clients: usize,
    window: u32,
    size: usize,
    floor_size: Option<usize>,
    repeat: usize,
    modes: Vec<Mode>,
    reliable: bool,
    rate: u64,
    json: bool,
    server_cpu: usize,
    client_cpu: usize,
}

const USAGE: &str = "\
echo-compare: CPU per packet of the raw UDP floor, the engine in echo mode
(io_uring and recvmmsg backends) and renet, under one client load.

Options:
  --seconds S        measured seconds per run (default 5, at most 60)
  --warmup S         load before measuring, per run (default 1)
  --clients N        clients (default 64, at most 1000)
  --window W         messages each client keeps outstanding (default 8, 1..=64)
  --size B           message bytes (default 64)
  --floor-size B     floor datagram bytes (default: the engine's on-wire size
                     for one --size message, measured at start)
  --repeat R         rounds, modes interleaved in each (default 3)
  --modes LIST       comma list of floor,engine-uring,engine-mmsg,renet (default all)
  --reliable         send on the reliable ordered channel (default unreliable)
  --rate R           pace the load to R messages/s in total (default 0: closed loop)
  --server-cpu C     CPU of the server thread (default 0)
  --client-cpu C     CPU of the client thread (default 1)
  --json             print one JSON object instead of the table
";

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        seconds: 5.0,
        warmup: 1.0,
        clients: 64,
        window: 8,
        size: 64,
        floor_size: None,
        repeat: 3,
        modes: Mode::ALL.to_vec(),
        reliable: false,
        rate: 0,
        json: false,
        server_cpu: 0,
        client_cpu: 1,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        fn num<T: std::str::FromStr>(flag: &str, v: String) -> Result<T, String> {
            v.parse().map_err(|_| format!("{flag}: cannot parse {v:?}"))
        }
        match flag.as_str() {
            "--seconds" => a.seconds = num(&flag, value()?)?,
            "--warmup" => a.warmup = num(&flag, value()?)?,
            "--clients" => a.clients = num(&flag, value()?)?,
            "--window" => a.window = num(&flag, value()?)?,
            "--size" => a.size = num(&flag, value()?)?,
            "--floor-size" => a.floor_size = Some(num(&flag, value()?)?),
            "--repeat" => a.repeat = num(&flag, value()?)?,
            "--rate" => a.rate = num(&flag, value()?)?,
            "--server-cpu" => a.server_cpu = num(&flag, value()?)?,
            "--client-cpu" => a.client_cpu = num(&flag, value()?)?,
            "--modes" => {
                a.modes = value()?
                    .split(',')
                    .filter(|s| !s.is_empty())
                    .map(|s| Mode::parse(s.trim()).ok_or_else(|| format!("unknown mode {s:?}")))
                    .collect::<Result<_, _>>()?;
            }
            "--reliable" => a.reliable = true,
            "--json" => a.json = true,
            "-h" | "--help" => {
                print!("{USAGE}");
                std::process::exit(0);
            }
            other => return Err(format!("unknown option {other:?}\n\n{USAGE}")),
        }
    }
    if !(a.seconds > 0.0 && a.seconds <= 60.0) {
        return Err("--seconds must be in (0, 60]".into());
    }
    if !(0.0..=10.0).contains(&a.warmup) {
        return Err("--warmup must be in [0, 10]".into());
    }
    if a.clients == 0 || a.clients > 1000 {
        return Err("--clients must be in 1..=1000".into());
    }
    if a.window == 0 || a.window > 64 {
        return Err("--window must be in 1..=64".into());
    }
    if a.size == 0 || a.size > 1000 {
        return Err("--size must be in 1..=1000".into());
    }
    if a.floor_size.is_some_and(|s| s == 0 || s > 1400) {
        return Err("--floor-size must be in 1..=1400".into());
    }
    if a.repeat == 0 || a.repeat > 20 {
        return Err("--repeat must be in 1..=20".into());
    }
    if a.modes.is_empty() {
        return Err("--modes is empty".into());
    }
    if a.server_cpu == a.client_cpu {
        return Err("--server-cpu and --client-cpu must differ".into());
    }
    Ok(a)
}

// ------------------------------------------------------------ thread clocks

/// A thread's CPU clocks.
#[derive(Debug, Clone, Copy, Default)]
struct ThreadCpu {
    /// `sum_exec_runtime`, nanoseconds.
    exec_ns: u64,
    /// User ticks.
    utime: u64,
    /// System ticks.
    stime: u64,
    voluntary_switches: u64,
    involuntary_switches: u64,
}

/// CPU spent between two readings, split into user and system.
#[derive(Debug, Clone, Copy, Default)]
struct CpuDelta {
    user_ns: f64,
    sys_ns: f64,
    voluntary_switches: u64,
    involuntary_switches: u64,
}

impl CpuDelta {
    fn total_ns(&self) -> f64 {
        self.user_ns + self.sys_ns
    }
}

impl ThreadCpu {
    fn read(tid: i32) -> io::Result<Self> {
        let base = format!("/proc/self/task/{tid}");
        let stat = std::fs::read_to_string(format!("{base}/stat"))?;
        let after = stat
            .rsplit_once(')')
            .map(|(_, r)| r)
            .ok_or_else(|| io::Error::other("bad stat"))?;
        let fields: Vec<&str> = after.split_whitespace().collect();
        let field = |i: usize| -> io::Result<u64> {
            fields
                .get(i)
                .and_then(|f| f.parse().ok())
                .ok_or_else(|| io::Error::other("bad stat field"))
        };
        // After "pid (comm)": state is field 3, utime 14, stime 15.
        let (utime, stime) = (field(11)?, field(12)?);
        let sched = std::fs::read_to_string(format!("{base}/schedstat"))?;
        let exec_ns = sched
            .split_whitespace()
            .next()
            .and_then(|f| f.parse().ok())
            .ok_or_else(|| io::Error::other("bad schedstat"))?;
        let status = std::fs::read_to_string(format!("{base}/status"))?;
        let switches = |key: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0)
        };
        Ok(Self {
            exec_ns,
            utime,
            stime,
            voluntary_switches: switches("voluntary_ctxt_switches:"),
            involuntary_switches: switches("nonvoluntary_ctxt_switches:"),
        })
    }

    fn since(&self, earlier: &Self) -> CpuDelta {
        let total = self.exec_ns.saturating_sub(earlier.exec_ns) as f64;
        let u = self.utime.saturating_sub(earlier.utime) as f64;
        let s = self.stime.saturating_sub(earlier.stime) as f64;
        let user_share = if u + s > 0.0 { u / (u + s) } else { 0.5 };
        CpuDelta {
            user_ns: total * user_share,
            sys_ns: total * (1.0 - user_share),
            voluntary_switches: self
                .voluntary_switches
                .saturating_sub(earlier.voluntary_switches),
            involuntary_switches: self
                .involuntary_switches
                .saturating_sub(earlier.involuntary_switches),
        }
    }
}

fn gettid() -> i32 {
    // SAFETY: gettid takes no arguments and cannot fail.
    unsafe { libc::syscall(libc::SYS_gettid) as i32 }
}

fn find_thread(name: &str) -> Option<i32> {
    for entry in std::fs::read_dir("/proc/self/task").ok()?.flatten() {
        let tid: i32 = entry.file_name().to_str()?.parse().ok()?;
        if std::fs::read_to_string(entry.path().join("comm")).is_ok_and(|c| c.trim() == name) {
            return Some(tid);
        }
    }
    None
}

fn pin(cpu: usize) -> Result<(), String> {
    if core_affinity::set_for_current(core_affinity::CoreId { id: cpu }) {
        Ok(())
    } else {
        Err(format!("cannot pin a thread to CPU {cpu}"))
    }
}

/// The affinity mask the process started with (read once, before any pin).
fn process_affinity() -> libc::cpu_set_t {
    static MASK: std::sync::OnceLock<libc::cpu_set_t> = std::sync::OnceLock::new();
    *MASK.get_or_init(current_affinity)
}

fn current_affinity() -> libc::cpu_set_t {
    // SAFETY: all-zero is a valid cpu_set_t; the call writes at most its size.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &raw mut set);
        set
    }
}

fn set_affinity(set: &libc::cpu_set_t) {
    // SAFETY: `set` is a live cpu_set_t of the size passed.
    unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), set) };
}

fn unix_now() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

/// Payload bytes and keys (no cryptographic use): the one SplitMix64.
struct Rng(SplitMix64);

impl Rng {
    fn new(seed: u64) -> Self {
        Self(SplitMix64::new(seed))
    }

    fn next(&mut self) -> u64 {
        self.0.next_u64()
    }

    fn bytes<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0u8; N];
        for b in &mut out {
            *b = self.next() as u8;
        }
        out
    }

    fn vec(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

fn seed() -> u64 {
    (unix_now().as_nanos() as u64) | 1
}

// ------------------------------------------------------------------ servers

/// Counters a harness-owned server thread publishes once per loop turn.
#[derive(Debug, Default)]
struct SharedCounters {
    rx: AtomicU64,
    tx: AtomicU64,
    syscalls: AtomicU64,
    messages: AtomicU64,
}

/// A server's own counts.
#[derive(Debug, Clone, Copy, Default)]
struct ServerCount {
    rx: u64,
    tx: u64,
    syscalls: u64,
}

impl ServerCount {
    fn since(&self, e: &Self) -> Self {
        Self {
            rx: self.rx.saturating_sub(e.rx),
            tx: self.tx.saturating_sub(e.tx),
            syscalls: self.syscalls.saturating_sub(e.syscalls),
        }
    }
}

enum Server {
    Thread {
        addr: SocketAddr,
        tid: i32,
        stop: Arc<AtomicBool>,
        counters: Arc<SharedCounters>,
        join: JoinHandle<()>,
        renet_key: Option<[u8; 32]>,
    },
    Engine {
        handle: ServerHandle,
        tid: i32,
    },
}

impl Server {
    fn start(mode: Mode, cpu: usize) -> Result<Self, String> {
        match mode {
            Mode::Floor => Self::spawn(cpu, None),
            Mode::Renet => Self::spawn(cpu, Some(Rng::new(seed()).bytes::<32>())),
            Mode::EngineUring => Self::engine(IoBackend::IoUring, cpu),
            Mode::EngineMmsg => Self::engine(IoBackend::Mmsg, cpu),
        }
    }

    fn engine(backend: IoBackend, cpu: usize) -> Result<Self, String> {
        let mut c = ServerConfig::default();
        c.network.bind = "127.0.0.1:0".into();
        c.network.io_backend = backend;
        c.network.steering = Steering::Cbpf;
        c.network.metrics_addr = None;
        c.runtime.cores = CoreSelection::List(vec![cpu]);
        c.runtime.pin_threads = true;
        c.runtime.echo_mode = true;
        c.runtime.data_dir = std::env::temp_dir()
            .join(format!("echo-compare-{}", std::process::id()))
            .display()
            .to_string();
        // The engine resolves its core list against the *calling thread's*
        // affinity (core_affinity::get_core_ids), and this thread is pinned
        // to the client CPU: widen it for the start, then pin it back.
        let wide = process_affinity();
        let here = current_affinity();
        set_affinity(&wide);
        let started = runtime::start(&c);
        set_affinity(&here);
        let handle = started.map_err(|e| format!("engine: {e}"))?;
        let end = Instant::now() + Duration::from_secs(2);
        let tid = loop {
            if let Some(t) = find_thread("tos-core-0") {
                break t;
            }
            if Instant::now() > end {
                return Err("engine: no thread named tos-core-0".into());
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        Ok(Server::Engine { handle, tid })
    }

    fn spawn(cpu: usize, renet_key: Option<[u8; 32]>) -> Result<Self, String> {
        let any: SocketAddr = "127.0.0.1:0".parse().map_err(|e| format!("{e}"))?;
        let sock = tos_engine::io::bind_reuseport(any, SERVER_SOCKET_BUFFER, SERVER_SOCKET_BUFFER)
            .map_err(|e| format!("bind: {e}"))?;
        let addr = sock.local_addr().map_err(|e| format!("{e}"))?;
        let stop = Arc::new(AtomicBool::new(false));
        let counters = Arc::new(SharedCounters::default());
        let (tid_tx, tid_rx) = std::sync::mpsc::channel::<Result<i32, String>>();
        let (s, c) = (Arc::clone(&stop), Arc::clone(&counters));
        let join = std::thread::Builder::new()
            .name(
                if renet_key.is_some() {
                    "renet-server"
                } else {
                    "floor-echo"
                }
                .into(),
            )
            .spawn(move || {
                if let Err(e) = pin(cpu) {
                    let _ = tid_tx.send(Err(e));
                    return;
                }
                let _ = tid_tx.send(Ok(gettid()));
                match renet_key {
                    None => floor_echo(&sock, &s, &c),
                    Some(key) => renet_echo(&sock, addr, key, &s, &c),
                }
            })
            .map_err(|e| format!("spawn: {e}"))?;
        let tid = tid_rx
            .recv_timeout(Duration::from_secs(2))
            .map_err(|e| format!("server thread did not start: {e}"))??;
        Ok(Server::Thread {
            addr,
            tid,
            stop,
            counters,
            join,
            renet_key,
        })
    }

    fn addr(&self) -> SocketAddr {
        match self {
            Server::Thread { addr, .. } => *addr,
            Server::Engine { handle, .. } => handle.local_addr(),
        }
    }

    fn tid(&self) -> i32 {
        match self {
            Server::Thread { tid, .. } | Server::Engine { tid, .. } => *tid,
        }
    }

    fn count(&self) -> ServerCount {
        match self {
            Server::Thread { counters, .. } => ServerCount {
                rx: counters.rx.load(Ordering::Relaxed),
                tx: counters.tx.load(Ordering::Relaxed),
                syscalls: counters.syscalls.load(Ordering::Relaxed),
            },
            Server::Engine { handle, .. } => {
                let s = handle.stats()[0];
                ServerCount {
                    rx: s.datagrams_in,
                    tx: s.datagrams_out,
                    syscalls: s.syscalls,
                }
            }
        }
    }

    fn stop(self) {
        match self {
            Server::Thread { stop, join, .. } => {
                stop.store(true, Ordering::SeqCst);
                let _ = join.join();
            }
            Server::Engine { handle, .. } => {
                let _ = handle.shutdown(Duration::from_secs(2));
            }
        }
    }
}

fn errno() -> i32 {
    io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

fn ppoll_in(fd: RawFd, timeout: Duration) {
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    let ts = libc::timespec {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_nsec: libc::c_long::from(timeout.subsec_nanos()),
    };
    // SAFETY: `pfd` and `ts` are live locals; a null sigmask keeps the mask.
    unsafe { libc::ppoll(&raw mut pfd, 1, &raw const ts, std::ptr::null()) };
}

/// The kernel floor: `recvmmsg` a batch, `sendmmsg` it back from the same
/// buffers (no copy), `ppoll` when a batch comes back short. Mirrors the
/// engine's mmsg loop with no protocol in between.
fn floor_echo(sock: &UdpSocket, stop: &AtomicBool, counters: &SharedCounters) {
    let fd = sock.as_raw_fd();
    // SAFETY: all-zero is a valid value of these plain C structs.
    let zero_hdr: libc::mmsghdr = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    let zero_name: libc::sockaddr_in6 = unsafe { std::mem::zeroed() };
    let mut bufs = vec![[0u8; BUF]; FLOOR_BATCH];
    let mut names = vec![zero_name; FLOOR_BATCH];
    let mut iovs = vec![
        libc::iovec {
            iov_base: std::ptr::null_mut(),
            iov_len: 0,
        };
        FLOOR_BATCH
    ];
    let mut hdrs = vec![zero_hdr; FLOOR_BATCH];
    let name_len = std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t;
    let (mut rx, mut tx, mut sys) = (0u64, 0u64, 0u64);
    while !stop.load(Ordering::Relaxed) {
        for i in 0..FLOOR_BATCH {
            iovs[i].iov_base = bufs[i].as_mut_ptr().cast();
            iovs[i].iov_len = BUF;
            hdrs[i].msg_hdr.msg_name = (&raw mut names[i]).cast();
            hdrs[i].msg_hdr.msg_namelen = name_len;
            hdrs[i].msg_hdr.msg_iov = &raw mut iovs[i];
            hdrs[i].msg_hdr.msg_iovlen = 1;
            hdrs[i].msg_len = 0;
        }
        // SAFETY: every header points at live name, iovec and buffer memory
        // of the advertised sizes, untouched by Rust during the call.
        let n = unsafe {
            libc::recvmmsg(
                fd,
                hdrs.as_mut_ptr(),
                FLOOR_BATCH as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        sys += 1;
        let got = if n > 0 { n as usize } else { 0 };
        if got > 0 {
            // Send each datagram back to its source from the same buffer:
            // the kernel filled msg_name/msg_namelen; trim the iovec.
            for i in 0..got {
                iovs[i].iov_len = hdrs[i].msg_len as usize;
            }
            let mut off = 0;
            while off < got {
                // SAFETY: headers `off..got` are initialised and point into
                // live arrays; the kernel only reads them during the call.
                let m = unsafe {
                    libc::sendmmsg(
                        fd,
                        hdrs.as_mut_ptr().add(off),
                        (got - off) as libc::c_uint,
                        libc::MSG_DONTWAIT,
                    )
                };
                sys += 1;
                if m < 0 {
                    if errno() != libc::EINTR {
                        off += 1;
                    }
                    continue;
                }
                tx += m as u64;
                off += m as usize;
            }
            rx += got as u64;
        }
        if got < FLOOR_BATCH {
            ppoll_in(fd, Duration::from_millis(5));
            sys += 1;
        }
        counters.rx.store(rx, Ordering::Relaxed);
        counters.tx.store(tx, Ordering::Relaxed);
        counters.syscalls.store(sys, Ordering::Relaxed);
        counters.messages.store(rx, Ordering::Relaxed);
    }
}

/// What `NetcodeServerTransport::handle_server_result` does, counting sends.
fn renet_result(
    result: ServerResult<'_, '_>,
    sock: &UdpSocket,
    server: &mut RenetServer,
    dirty: &mut Vec<u64>,
    tx: &mut u64,
) {
    let mut send = |payload: &[u8], addr: SocketAddr| {
        if sock.send_to(payload, addr).is_ok() {
            *tx += 1;
        }
    };
    match result {
        ServerResult::None => {}
        ServerResult::PacketToSend { payload, addr } => send(payload, addr),
        ServerResult::Payload { client_id, payload } => {
            if server.process_packet_from(payload, client_id).is_ok() && !dirty.contains(&client_id)
            {
                dirty.push(client_id);
            }
        }
        ServerResult::ClientConnected {
            client_id,
            addr,
            payload,
            ..
        } => {
            server.add_connection(client_id);
            send(payload, addr);
        }
        ServerResult::ClientDisconnected {
            client_id,
            addr,
            payload,
        } => {
            server.remove_connection(client_id);
            if let Some(p) = payload {
                send(p, addr);
            }
        }
    }
}

/// renet's echo server: `NetcodeServerTransport::update`'s receive loop,
/// then every message echoed on its channel, then the transport's
/// `send_packets` for the clients that had messages. Waits in `ppoll` when a
/// turn received nothing.
fn renet_echo(
    sock: &UdpSocket,
    addr: SocketAddr,
    key: [u8; 32],
    stop: &AtomicBool,
    counters: &SharedCounters,
) {
    let mut netcode = NetcodeServer::new(renetcode::ServerConfig {
        current_time: unix_now(),
        max_clients: 1000,
        protocol_id: RENET_PROTOCOL_ID,
        public_addresses: vec![addr],
        authentication: ServerAuthentication::Secure { private_key: key },
    });
    let mut server = RenetServer::new(ConnectionConfig::default());
    let mut buf = [0u8; NETCODE_MAX_PACKET_BYTES];
    let mut dirty: Vec<u64> = Vec::with_capacity(1024);
    let (mut rx, mut tx, mut sys, mut msgs) = (0u64, 0u64, 0u64, 0u64);
    let mut last = Instant::now();
    let channels = RENET_CHANNELS;
    while !stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        let dt = now - last;
        last = now;
        server.update(dt);
        netcode.update(dt);
        let mut got = 0u64;
        loop {
            sys += 1;
            match sock.recv_from(&mut buf) {
                Ok((len, from)) => {
                    got += 1;
                    let r = netcode.process_packet(from, &mut buf[..len]);
                    renet_result(r, sock, &mut server, &mut dirty, &mut tx);
                }
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {}
                Err(_) => break,
            }
        }
        rx += got;
        for client_id in netcode.clients_id() {
            let r = netcode.update_client(client_id);
            renet_result(r, sock, &mut server, &mut dirty, &mut tx);
        }
        for client_id in server.disconnections_id() {
            let r = netcode.disconnect(client_id);
            renet_result(r, sock, &mut server, &mut dirty, &mut tx);
        }
        while server.get_event().is_some() {}
        for &client_id in &dirty {
            let mut any = false;
            for ch in channels {
                while let Some(m) = server.receive_message(client_id, ch) {
                    server.send_message(client_id, ch, m);
                    msgs += 1;
                    any = true;
                }
            }
            if !any {
                continue;
            }
            let Ok(packets) = server.get_packets_to_send(client_id) else {
                continue;
            };
            for packet in packets {
                if let Ok((to, payload)) = netcode.generate_payload_packet(client_id, &packet) {
                    sys += 1;
                    if sock.send_to(payload, to).is_ok() {
                        tx += 1;
                    }
                }
            }
        }
        dirty.clear();
        if got == 0 {
            ppoll_in(sock.as_raw_fd(), Duration::from_millis(5));
            sys += 1;
        }
        counters.rx.store(rx, Ordering::Relaxed);
        counters.tx.store(tx, Ordering::Relaxed);
        counters.syscalls.store(sys, Ordering::Relaxed);
        counters.messages.store(msgs, Ordering::Relaxed);
    }
}

// ------------------------------------------------------------------ clients

/// Counts kept by the client thread.
#[derive(Debug, Clone, Copy, Default)]
struct ClientCount {
    datagrams_tx: u64,
    datagrams_rx: u64,
    bytes_tx: u64,
    bytes_rx: u64,
    messages_tx: u64,
    echoes: u64,
    loss_resets: u64,
}

impl ClientCount {
    fn since(&self, e: &Self) -> Self {
        Self {
            datagrams_tx: self.datagrams_tx - e.datagrams_tx,
            datagrams_rx: self.datagrams_rx - e.datagrams_rx,
            bytes_tx: self.bytes_tx - e.bytes_tx,
            bytes_rx: self.bytes_rx - e.bytes_rx,
            messages_tx: self.messages_tx - e.messages_tx,
            echoes: self.echoes - e.echoes,
            loss_resets: self.loss_resets - e.loss_resets,
        }
    }
}

/// One client `recvmmsg` batch on a connected socket.
struct RecvBatch {
    bufs: Vec<[u8; BUF]>,
    iovs: Vec<libc::iovec>,
    hdrs: Vec<libc::mmsghdr>,
}

impl RecvBatch {
    fn new() -> Self {
        // SAFETY: all-zero is a valid mmsghdr.
        let zero: libc::mmsghdr = unsafe { std::mem::zeroed() };
        Self {
            bufs: vec![[0u8; BUF]; CLIENT_BATCH],
            iovs: vec![
                libc::iovec {
                    iov_base: std::ptr::null_mut(),
                    iov_len: 0,
                };
                CLIENT_BATCH
            ],
            hdrs: vec![zero; CLIENT_BATCH],
        }
    }

    /// Receives what is waiting (at most one batch); returns how many.
    fn recv(&mut self, fd: RawFd) -> usize {
        for i in 0..CLIENT_BATCH {
            self.iovs[i].iov_base = self.bufs[i].as_mut_ptr().cast();
            self.iovs[i].iov_len = BUF;
            self.hdrs[i].msg_hdr.msg_name = std::ptr::null_mut();
            self.hdrs[i].msg_hdr.msg_namelen = 0;
            self.hdrs[i].msg_hdr.msg_iov = &raw mut self.iovs[i];
            self.hdrs[i].msg_hdr.msg_iovlen = 1;
            self.hdrs[i].msg_len = 0;
        }
        // SAFETY: the headers point at live iovecs and buffers of the
        // advertised sizes, untouched by Rust during the call.
        let n = unsafe {
            libc::recvmmsg(
                fd,
                self.hdrs.as_mut_ptr(),
                CLIENT_BATCH as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if n > 0 { n as usize } else { 0 }
    }

    fn get(&mut self, i: usize) -> &mut [u8] {
        let len = (self.hdrs[i].msg_len as usize).min(BUF);
        &mut self.bufs[i][..len]
    }
}

enum Proto {
    Raw,
    Tos(Box<Connection>),
    Renet {
        netcode: Box<NetcodeClient>,
        client: Box<RenetClient>,
        last: Instant,
    },
}

struct LoadClient {
    sock: UdpSocket,
    proto: Proto,
    connected: bool,
    outstanding: u32,
    last_progress: Instant,
    /// Something was queued or received: run the protocol's transmit.
    dirty: bool,
    /// A message was queued since the last transmit.
    queued: bool,
    failed: Option<String>,
}

/// Everything the client thread drives in one run.
struct Load {
    server: SocketAddr,
    clients: Vec<LoadClient>,
    epoll: RawFd,
    rb: RecvBatch,
    buf: Box<[u8; BUF]>,
    /// The next message's bytes, fresh random for every message (so that
    /// echoes bundled in one datagram never look compressible).
    payload: Vec<u8>,
    rng: Rng,
    count: ClientCount,
    tos_channel: Channel,
    renet_channel: u8,
}

impl Drop for Load {
    fn drop(&mut self) {
        // SAFETY: the epoll descriptor is ours and closed once.
        unsafe { libc::close(self.epoll) };
    }
}

fn send_counted(sock: &UdpSocket, data: &[u8], count: &mut ClientCount) {
    if sock.send(data).is_ok() {
        count.datagrams_tx += 1;
        count.bytes_tx += data.len() as u64;
    }
}

impl Load {
    fn new(mode: Mode, server: &Server, args: &Args, floor_size: usize) -> Result<Self, String> {
        let addr = server.addr();
        let mut rng = Rng::new(seed());
        // SAFETY: plain syscall; the descriptor is closed in Drop.
        let epoll = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if epoll < 0 {
            return Err(format!("epoll_create1: {}", io::Error::last_os_error()));
        }
        let mut load = Load {
            server: addr,
            clients: Vec::with_capacity(args.clients),
            epoll,
            rb: RecvBatch::new(),
            buf: Box::new([0u8; BUF]),
            payload: rng.vec(if mode == Mode::Floor {
                floor_size
            } else {
                args.size
            }),
            rng: Rng::new(seed() ^ 0x9e37_79b9_7f4a_7c15),
            count: ClientCount::default(),
            tos_channel: if args.reliable {
                Channel::ReliableOrdered
            } else {
                Channel::Unreliable
            },
            renet_channel: if args.reliable {
                u8::from(DefaultChannel::ReliableOrdered)
            } else {
                u8::from(DefaultChannel::Unreliable)
            },
        };
        let now = Instant::now();
        let tos_table = match server {
            Server::Engine { handle, .. } => Some((
                Arc::new(IntegrityTable::generate(
                    &handle.integrity_secret(),
                    tos_engine::settings::CLIENT_VERSION,
                )),
                handle.static_public_key(),
            )),
            Server::Thread { .. } => None,
        };
        let transport = Arc::new(TransportConfig::default());
        for i in 0..args.clients {
            let sock = UdpSocket::bind("127.0.0.1:0").map_err(|e| format!("client bind: {e}"))?;
            sock.connect(addr)
                .map_err(|e| format!("client connect: {e}"))?;
            sock.set_nonblocking(true).map_err(|e| format!("{e}"))?;
            let proto = match (mode, server, &tos_table) {
                (Mode::Floor, ..) => Proto::Raw,
                (Mode::EngineUring | Mode::EngineMmsg, _, Some((table, key))) => {
                    let mut seed_bytes = rng.bytes::<32>();
                    seed_bytes[..8].copy_from_slice(&(i as u64).to_le_bytes());
                    let cfg = ClientConfig {
                        transport: Arc::clone(&transport),
                        server_key: ServerKey::Pinned(*key),
                        ticket: b"echo-compare".to_vec(),
                        integrity: Some(Arc::clone(table)),
                        seed: seed_bytes,
                    };
                    let conn = Connection::connect(cfg, addr, now)
                        .map_err(|e| format!("tos connect: {e}"))?;
                    Proto::Tos(Box::new(conn))
                }
                (
                    Mode::Renet,
                    Server::Thread {
                        renet_key: Some(key),
                        ..
                    },
                    _,
                ) => {
                    let token = ConnectToken::generate(
                        unix_now(),
                        RENET_PROTOCOL_ID,
                        300,
                        i as u64 + 1,
                        15,
                        vec![addr],
                        None,
                        key,
                    )
                    .map_err(|e| format!("renet token: {e}"))?;
                    let netcode = NetcodeClient::new(
                        unix_now(),
                        ClientAuthentication::Secure {
                            connect_token: token,
                        },
                    )
                    .map_err(|e| format!("renet client: {e}"))?;
                    Proto::Renet {
                        netcode: Box::new(netcode),
                        client: Box::new(RenetClient::new(ConnectionConfig::default())),
                        last: now,
                    }
                }
                _ => return Err("mode and server do not match".into()),
            };
            let mut ev = libc::epoll_event {
                events: libc::EPOLLIN as u32,
                u64: i as u64,
            };
            // SAFETY: both descriptors are live; `ev` is a live local.
            let r = unsafe {
                libc::epoll_ctl(epoll, libc::EPOLL_CTL_ADD, sock.as_raw_fd(), &raw mut ev)
            };
            if r < 0 {
                return Err(format!("epoll_ctl: {}", io::Error::last_os_error()));
            }
            load.clients.push(LoadClient {
                sock,
                connected: matches!(proto, Proto::Raw),
                proto,
                outstanding: 0,
                last_progress: now,
                dirty: true,
                queued: false,
                failed: None,
            });
        }
        Ok(load)
    }

    /// Receives and processes everything waiting on client `i`.
    fn receive(&mut self, i: usize, now: Instant) {
        let c = &mut self.clients[i];
        let fd = c.sock.as_raw_fd();
        loop {
            let n = self.rb.recv(fd);
            for k in 0..n {
                let data = self.rb.get(k);
                self.count.datagrams_rx += 1;
                self.count.bytes_rx += data.len() as u64;
                match &mut c.proto {
                    Proto::Raw => {
                        self.count.echoes += 1;
                        c.outstanding = c.outstanding.saturating_sub(1);
                        c.last_progress = now;
                    }
                    Proto::Tos(conn) => conn.handle_datagram(now, self.server, data),
                    Proto::Renet {
                        netcode, client, ..
                    } => {
                        if let Some(payload) = netcode.process_packet(data) {
                            client.process_packet(payload);
                        }
                    }
                }
            }
            if n < CLIENT_BATCH {
                break;
            }
        }
        c.dirty = true;
        self.drain(i, now);
    }

    /// Takes the protocol's events: connection state and echoes.
    fn drain(&mut self, i: usize, now: Instant) {
        let c = &mut self.clients[i];
        let mut echoes = 0u32;
        match &mut c.proto {
            Proto::Raw => {}
            Proto::Tos(conn) => {
                while let Some(e) = conn.poll_event() {
                    match e {
                        Event::Connected => c.connected = true,
                        Event::Message { .. } => echoes += 1,
                        Event::Disconnected { reason, .. } => {
                            c.failed = Some(format!("disconnected: {reason:?}"));
                        }
                        _ => {}
                    }
                }
            }
            Proto::Renet {
                netcode, client, ..
            } => {
                if netcode.is_connected() {
                    client.set_connected();
                    c.connected = true;
                } else if netcode.is_connecting() {
                    client.set_connecting();
                } else if let Some(r) = netcode.disconnect_reason() {
                    c.failed = Some(format!("renet disconnected: {r:?}"));
                }
                for ch in RENET_CHANNELS {
                    while client.receive_message(ch).is_some() {
                        echoes += 1;
                    }
                }
            }
        }
        if echoes > 0 {
            self.count.echoes += u64::from(echoes);
            c.outstanding = c.outstanding.saturating_sub(echoes);
            c.last_progress = now;
        }
    }

    /// Queues one message on client `i`.
    fn send_message(&mut self, i: usize, now: Instant) {
        for chunk in self.payload.chunks_mut(8) {
            let v = self.rng.next().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
        let c = &mut self.clients[i];
        let ok = match &mut c.proto {
            Proto::Raw => {
                send_counted(&c.sock, &self.payload, &mut self.count);
                true
            }
            Proto::Tos(conn) => conn.send(self.tos_channel, &self.payload).is_ok(),
            Proto::Renet { client, .. } => {
                client.send_message(self.renet_channel, self.payload.clone());
                true
            }
        };
        if ok {
            if c.outstanding == 0 {
                c.last_progress = now;
            }
            c.outstanding += 1;
            c.dirty = true;
            c.queued = true;
            self.count.messages_tx += 1;
        }
    }

    /// Runs client `i`'s timers and sends what its protocol has to send.
    fn transmit(&mut self, i: usize, now: Instant) {
        let c = &mut self.clients[i];
        match &mut c.proto {
            Proto::Raw => {}
            Proto::Tos(conn) => {
                let due = conn.next_timeout().is_some_and(|t| t <= now);
                if due {
                    conn.handle_timeout(now);
                }
                if due || c.dirty || !c.connected {
                    while let Some(t) = conn.poll_transmit(now, &mut self.buf[..]) {
                        send_counted(&c.sock, &self.buf[..t.size], &mut self.count);
                    }
                }
            }
            Proto::Renet {
                netcode,
                client,
                last,
            } => {
                let dt = now.saturating_duration_since(*last);
                if c.dirty || !c.connected || dt >= Duration::from_millis(5) {
                    *last = now;
                    client.update(dt);
                    if let Some((packet, _)) = netcode.update(dt) {
                        send_counted(&c.sock, packet, &mut self.count);
                    }
                }
                // Like the server: packets only when a message was queued (a
                // call emits an Ack packet whenever acks are pending).
                if c.queued && c.connected && netcode.is_connected() {
                    for packet in client.get_packets_to_send() {
                        if let Ok((_, payload)) = netcode.generate_payload_packet(&packet) {
                            send_counted(&c.sock, payload, &mut self.count);
                        }
                    }
                }
            }
        }
        c.dirty = false;
        c.queued = false;
        if matches!(c.proto, Proto::Tos(_) | Proto::Renet { .. }) {
            self.drain(i, now);
        }
    }

    /// Waits up to `timeout_ms` for datagrams and processes them.
    fn poll(&mut self, timeout_ms: i32, now: Instant) {
        // SAFETY: all-zero is a valid epoll_event.
        let mut events: [libc::epoll_event; 64] = unsafe { std::mem::zeroed() };
        // SAFETY: `events` is a live local array of 64 entries.
        let n = unsafe { libc::epoll_wait(self.epoll, events.as_mut_ptr(), 64, timeout_ms) };
        for ev in events.iter().take(n.max(0) as usize) {
            let idx = { ev.u64 } as usize;
            self.receive(idx, now);
        }
    }
}

/// The result of one measured run.
#[derive(Debug, Clone)]
struct Run {
    mode: Mode,
    round: usize,
    wall_s: f64,
    server: ServerCount,
    cpu: CpuDelta,
    client: ClientCount,
    client_cpu_ns: f64,
    datagram_tx_bytes: f64,
    datagram_rx_bytes: f64,
}

impl Run {
    fn packets(&self) -> f64 {
        (self.server.rx + self.server.tx) as f64
    }
    fn packets_per_s(&self) -> f64 {
        self.packets() / self.wall_s
    }
    fn messages_per_s(&self) -> f64 {
        self.client.echoes as f64 / self.wall_s
    }
    fn util(&self) -> f64 {
        self.cpu.total_ns() / (self.wall_s * 1e9)
    }
    fn user_us_per_packet(&self) -> f64 {
        self.cpu.user_ns / 1e3 / self.packets().max(1.0)
    }
    fn sys_us_per_packet(&self) -> f64 {
        self.cpu.sys_ns / 1e3 / self.packets().max(1.0)
    }
    fn total_us_per_packet(&self) -> f64 {
        self.cpu.total_ns() / 1e3 / self.packets().max(1.0)
    }
    fn packets_per_cpu_s(&self) -> f64 {
        self.packets() / (self.cpu.total_ns() / 1e9).max(1e-9)
    }
    fn us_per_message(&self) -> f64 {
        self.cpu.total_ns() / 1e3 / (self.client.echoes as f64).max(1.0)
    }
    fn packets_per_message(&self) -> f64 {
        self.packets() / (self.client.echoes as f64).max(1.0)
    }
    fn packets_per_syscall(&self) -> f64 {
        self.packets() / (self.server.syscalls as f64).max(1.0)
    }
}

/// Drives one mode for warm-up plus `seconds` and measures the second part.
fn run_mode(
    mode: Mode,
    round: usize,
    args: &Args,
    floor_size: usize,
    seconds: f64,
    warmup: f64,
) -> Result<Run, String> {
    let server = Server::start(mode, args.server_cpu)?;
    let result = drive(mode, round, &server, args, floor_size, seconds, warmup);
    server.stop();
    result
}

fn drive(
    mode: Mode,
    round: usize,
    server: &Server,
    args: &Args,
    floor_size: usize,
    seconds: f64,
    warmup: f64,
) -> Result<Run, String> {
    let mut load = Load::new(mode, server, args, floor_size)?;
    let n = load.clients.len();
    // Connect.
    let connect_end = Instant::now() + CONNECT_LIMIT;
    while !load.clients.iter().all(|c| c.connected) {
        let now = Instant::now();
        if now > connect_end {
            let done = load.clients.iter().filter(|c| c.connected).count();
            return Err(format!(
                "{}: only {done} of {n} clients connected",
                mode.name()
            ));
        }
        if let Some(f) = load.clients.iter().find_map(|c| c.failed.clone()) {
            return Err(format!("{}: {f}", mode.name()));
        }
        load.poll(1, now);
        for i in 0..n {
            load.transmit(i, now);
        }
    }
    // Load: warm up, then measure.
    let me = gettid();
    let start = Instant::now();
    let measure_at = start + Duration::from_secs_f64(warmup);
    let end_at = measure_at + Duration::from_secs_f64(seconds);
    let mut first: Option<(Instant, ServerCount, ThreadCpu, ClientCount, ThreadCpu)> = None;
    let window = args.window;
    let mut cursor = 0usize;
    loop {
        let now = Instant::now();
        if first.is_none() && now >= measure_at {
            let cpu = ThreadCpu::read(server.tid()).map_err(|e| format!("server cpu: {e}"))?;
            let count = server.count();
            let own = ThreadCpu::read(me).map_err(|e| format!("client cpu: {e}"))?;
            first = Some((Instant::now(), count, cpu, load.count, own));
        }
        if now >= end_at {
            break;
        }
        if let Some(f) = load.clients.iter().find_map(|c| c.failed.clone()) {
            return Err(format!("{}: {f}", mode.name()));
        }
        // Messages the pacing allows now.
        let mut budget = if args.rate == 0 {
            u64::MAX
        } else {
            let allowed = (args.rate as f64 * now.duration_since(start).as_secs_f64()) as u64;
            allowed.saturating_sub(load.count.messages_tx)
        };
        let mut can_send = false;
        // Round-robin start so pacing does not favour low-numbered clients.
        for k in 0..n {
            let i = (cursor + k) % n;
            let c = &mut load.clients[i];
            if c.outstanding > 0 && now.duration_since(c.last_progress) > LOSS_RESET {
                c.outstanding = 0;
                c.last_progress = now;
                load.count.loss_resets += 1;
            }
            if budget > 0 && c.outstanding < window {
                load.send_message(i, now);
                budget -= 1;
                can_send |= load.clients[i].outstanding < window;
            }
            load.transmit(i, now);
        }
        cursor = (cursor + 1) % n;
        let timeout = if can_send && budget > 0 { 0 } else { 1 };
        load.poll(timeout, now);
    }
    let (t0, s0, cpu0, c0, own0) = first.ok_or("no measurement window")?;
    let cpu1 = ThreadCpu::read(server.tid()).map_err(|e| format!("server cpu: {e}"))?;
    let s1 = server.count();
    let own1 = ThreadCpu::read(me).map_err(|e| format!("client cpu: {e}"))?;
    let t1 = Instant::now();
    let client = load.count.since(&c0);
    Ok(Run {
        mode,
        round,
        wall_s: (t1 - t0).as_secs_f64(),
        server: s1.since(&s0),
        cpu: cpu1.since(&cpu0),
        client,
        client_cpu_ns: own1.since(&own0).total_ns(),
        datagram_tx_bytes: client.bytes_tx as f64 / (client.datagrams_tx as f64).max(1.0),
        datagram_rx_bytes: client.bytes_rx as f64 / (client.datagrams_rx as f64).max(1.0),
    })
}

// ------------------------------------------------------------------ report

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    }
}

/// Medians of one mode's runs.
#[derive(Debug, Clone, Copy)]
struct Summary {
    mode: Mode,
    runs: usize,
    packets_per_s: f64,
    messages_per_s: f64,
    util: f64,
    user_us: f64,
    sys_us: f64,
    total_us: f64,
    packets_per_cpu_s: f64,
    us_per_message: f64,
    packets_per_message: f64,
    packets_per_syscall: f64,
    client_util: f64,
    datagram_tx_bytes: f64,
    datagram_rx_bytes: f64,
    loss_resets: f64,
}

fn summarize(mode: Mode, runs: &[Run]) -> Option<Summary> {
    let rs: Vec<&Run> = runs.iter().filter(|r| r.mode == mode).collect();
    if rs.is_empty() {
        return None;
    }
    let m = |f: &dyn Fn(&Run) -> f64| median(rs.iter().map(|&r| f(r)).collect());
    Some(Summary {
        mode,
        runs: rs.len(),
        packets_per_s: m(&Run::packets_per_s),
        messages_per_s: m(&Run::messages_per_s),
        util: m(&Run::util),
        user_us: m(&Run::user_us_per_packet),
        sys_us: m(&Run::sys_us_per_packet),
        total_us: m(&Run::total_us_per_packet),
        packets_per_cpu_s: m(&Run::packets_per_cpu_s),
        us_per_message: m(&Run::us_per_message),
        packets_per_message: m(&Run::packets_per_message),
        packets_per_syscall: m(&Run::packets_per_syscall),
        client_util: m(&|r: &Run| r.client_cpu_ns / (r.wall_s * 1e9)),
        datagram_tx_bytes: m(&|r: &Run| r.datagram_tx_bytes),
        datagram_rx_bytes: m(&|r: &Run| r.datagram_rx_bytes),
        loss_resets: m(&|r: &Run| r.client.loss_resets as f64),
    })
}

/// A ratio of CPU costs: `a / b` per packet (total, user, system) and per
/// message.
#[derive(Debug, Clone, Copy)]
struct Ratio {
    a: Mode,
    b: Mode,
    total: f64,
    user: f64,
    sys: f64,
    per_message: f64,
    /// `a`'s and `b`'s total µs per packet.
    a_us: f64,
    b_us: f64,
    /// `a - b`, user and system µs per packet.
    d_user_us: f64,
    d_sys_us: f64,
}

fn ratios(sums: &[Summary]) -> Vec<Ratio> {
    let get = |m: Mode| sums.iter().find(|s| s.mode == m);
    let pairs = [
        (Mode::EngineUring, Mode::Floor),
        (Mode::EngineMmsg, Mode::Floor),
        (Mode::Renet, Mode::Floor),
        (Mode::EngineUring, Mode::Renet),
        (Mode::EngineMmsg, Mode::Renet),
    ];
    pairs
        .into_iter()
        .filter_map(|(a, b)| {
            let (sa, sb) = (get(a)?, get(b)?);
            Some(Ratio {
                a,
                b,
                total: sa.total_us / sb.total_us,
                user: sa.user_us / sb.user_us,
                sys: sa.sys_us / sb.sys_us,
                per_message: sa.us_per_message / sb.us_per_message,
                a_us: sa.total_us,
                b_us: sb.total_us,
                d_user_us: sa.user_us - sb.user_us,
                d_sys_us: sa.sys_us - sb.sys_us,
            })
        })
        .collect()
}

fn machine() -> String {
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    // Online CPUs (this thread is pinned, so available_parallelism says 1).
    // SAFETY: sysconf has no memory effects.
    let cpus = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    format!("{model}, {cpus} CPUs")
}

fn ratio_text(v: f64) -> String {
    if v.is_finite() {
        format!("{v:.2}x")
    } else {
        "n/a".into()
    }
}

fn print_table(args: &Args, floor_size: usize, sums: &[Summary], rs: &[Ratio], runs: &[Run]) {
    println!(
        "echo-compare: {} clients x window {} x {}-byte {} messages, {}, {} s per run (+{} s warm-up), {} rounds",
        args.clients,
        args.window,
        args.size,
        if args.reliable {
            "reliable"
        } else {
            "unreliable"
        },
        if args.rate == 0 {
            "closed loop".to_owned()
        } else {
            format!("paced to {} msg/s", args.rate)
        },
        args.seconds,
        args.warmup,
        args.repeat
    );
    println!(
        "machine: {}; server thread on CPU {}, client thread on CPU {}; floor datagram {} bytes",
        machine(),
        args.server_cpu,
        args.client_cpu,
        floor_size
    );
    println!();
    println!("per run (server CPU µs per packet, total = user + system):");
    for r in runs {
        println!(
            "  round {} {:<13} {:>9.0} pkt/s {:>8.0} msg/s  cpu {:>5.1}%  usr {:.3} sys {:.3} tot {:.3} µs/pkt  {:.2} pkt/syscall",
            r.round + 1,
            r.mode.name(),
            r.packets_per_s(),
            r.messages_per_s(),
            r.util() * 100.0,
            r.user_us_per_packet(),
            r.sys_us_per_packet(),
            r.total_us_per_packet(),
            r.packets_per_syscall()
        );
    }
    println!();
    println!("medians:");
    println!(
        "  {:<13} {:>9} {:>9} {:>6} {:>7} {:>7} {:>7} {:>10} {:>7} {:>7} {:>7} {:>8} {:>6}",
        "mode",
        "pkt/s",
        "msg/s",
        "cpu%",
        "usr µs",
        "sys µs",
        "tot µs",
        "pkt/cpu-s",
        "µs/msg",
        "pkt/msg",
        "pkt/sc",
        "B out/in",
        "cli%"
    );
    for s in sums {
        println!(
            "  {:<13} {:>9.0} {:>9.0} {:>6.1} {:>7.3} {:>7.3} {:>7.3} {:>10.0} {:>7.3} {:>7.2} {:>7.2} {:>4.0}/{:<3.0} {:>6.1}",
            s.mode.name(),
            s.packets_per_s,
            s.messages_per_s,
            s.util * 100.0,
            s.user_us,
            s.sys_us,
            s.total_us,
            s.packets_per_cpu_s,
            s.us_per_message,
            s.packets_per_message,
            s.packets_per_syscall,
            s.datagram_tx_bytes,
            s.datagram_rx_bytes,
            s.client_util * 100.0
        );
    }
    println!(
        "  (pkt = server datagrams received + sent; µs = server-thread CPU per packet; B out/in = client datagram bytes sent/received; cli% = client thread CPU)"
    );
    println!();
    println!("CPU-per-packet ratios (of medians):");
    for r in rs {
        println!(
            "  {:>12} / {:<12} total {} ({:.3} vs {:.3} µs/pkt: user {:+.3}, system {:+.3})  user {}  system {}  | per message {}",
            r.a.name(),
            r.b.name(),
            ratio_text(r.total),
            r.a_us,
            r.b_us,
            r.d_user_us,
            r.d_sys_us,
            ratio_text(r.user),
            ratio_text(r.sys),
            ratio_text(r.per_message)
        );
    }
    for r in rs
        .iter()
        .filter(|r| r.b == Mode::Floor && r.a != Mode::Renet)
    {
        let allowed = 1.3 * r.b_us;
        let verdict = if r.total <= 1.3 {
            format!("met: {:+.0}% over the floor", (r.total - 1.0) * 100.0)
        } else {
            format!(
                "MISSED: {:+.0}% over the floor where +30% is allowed; {:.3} µs/pkt must come down to {:.3} ({:.3} less, -{:.0}%)",
                (r.total - 1.0) * 100.0,
                r.a_us,
                allowed,
                r.a_us - allowed,
                (1.0 - allowed / r.a_us) * 100.0
            )
        };
        println!("  goal {} <= 1.30 x floor: {verdict}", r.a.name());
    }
}

fn json_str(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

fn json_num(v: f64) -> String {
    if v.is_finite() {
        format!("{v:.6}")
    } else {
        "null".into()
    }
}

fn print_json(args: &Args, floor_size: usize, sums: &[Summary], rs: &[Ratio], runs: &[Run]) {
    let mut o = String::new();
    let _ = write!(
        o,
        "{{\"machine\":{},\"config\":{{\"seconds\":{},\"warmup\":{},\"clients\":{},\"window\":{},\"size\":{},\"floor_size\":{},\"repeat\":{},\"reliable\":{},\"rate\":{},\"server_cpu\":{},\"client_cpu\":{},\"modes\":[{}]}},",
        json_str(&machine()),
        json_num(args.seconds),
        json_num(args.warmup),
        args.clients,
        args.window,
        args.size,
        floor_size,
        args.repeat,
        args.reliable,
        args.rate,
        args.server_cpu,
        args.client_cpu,
        args.modes
            .iter()
            .map(|m| json_str(m.name()))
            .collect::<Vec<_>>()
            .join(",")
    );
    o.push_str("\"runs\":[");
    for (k, r) in runs.iter().enumerate() {
        if k > 0 {
            o.push(',');
        }
        let _ = write!(
            o,
            "{{\"mode\":{},\"round\":{},\"wall_s\":{},\"server_rx\":{},\"server_tx\":{},\"server_syscalls\":{},\"user_ns\":{},\"sys_ns\":{},\"voluntary_switches\":{},\"involuntary_switches\":{},\"client_datagrams_tx\":{},\"client_datagrams_rx\":{},\"client_bytes_tx\":{},\"client_bytes_rx\":{},\"messages_tx\":{},\"echoes\":{},\"loss_resets\":{},\"client_cpu_ns\":{},\"user_us_per_packet\":{},\"sys_us_per_packet\":{},\"total_us_per_packet\":{},\"packets_per_cpu_s\":{},\"us_per_message\":{}}}",
            json_str(r.mode.name()),
            r.round,
            json_num(r.wall_s),
            r.server.rx,
            r.server.tx,
            r.server.syscalls,
            json_num(r.cpu.user_ns),
            json_num(r.cpu.sys_ns),
            r.cpu.voluntary_switches,
            r.cpu.involuntary_switches,
            r.client.datagrams_tx,
            r.client.datagrams_rx,
            r.client.bytes_tx,
            r.client.bytes_rx,
            r.client.messages_tx,
            r.client.echoes,
            r.client.loss_resets,
            json_num(r.client_cpu_ns),
            json_num(r.user_us_per_packet()),
            json_num(r.sys_us_per_packet()),
            json_num(r.total_us_per_packet()),
            json_num(r.packets_per_cpu_s()),
            json_num(r.us_per_message()),
        );
    }
    o.push_str("],\"medians\":[");
    for (k, s) in sums.iter().enumerate() {
        if k > 0 {
            o.push(',');
        }
        let _ = write!(
            o,
            "{{\"mode\":{},\"runs\":{},\"packets_per_s\":{},\"messages_per_s\":{},\"server_cpu_util\":{},\"user_us_per_packet\":{},\"sys_us_per_packet\":{},\"total_us_per_packet\":{},\"packets_per_cpu_s\":{},\"us_per_message\":{},\"packets_per_message\":{},\"packets_per_syscall\":{},\"client_cpu_util\":{},\"client_datagram_tx_bytes\":{},\"client_datagram_rx_bytes\":{},\"loss_resets\":{}}}",
            json_str(s.mode.name()),
            s.runs,
            json_num(s.packets_per_s),
            json_num(s.messages_per_s),
            json_num(s.util),
            json_num(s.user_us),
            json_num(s.sys_us),
            json_num(s.total_us),
            json_num(s.packets_per_cpu_s),
            json_num(s.us_per_message),
            json_num(s.packets_per_message),
            json_num(s.packets_per_syscall),
            json_num(s.client_util),
            json_num(s.datagram_tx_bytes),
            json_num(s.datagram_rx_bytes),
            json_num(s.loss_resets),
        );
    }
    o.push_str("],\"ratios\":[");
    for (k, r) in rs.iter().enumerate() {
        if k > 0 {
            o.push(',');
        }
        let _ = write!(
            o,
            "{{\"a\":{},\"b\":{},\"total\":{},\"a_total_us\":{},\"b_total_us\":{},\"delta_user_us\":{},\"delta_sys_us\":{},\"user\":{},\"sys\":{},\"per_message\":{}}}",
            json_str(r.a.name()),
            json_str(r.b.name()),
            json_num(r.total),
            json_num(r.a_us),
            json_num(r.b_us),
            json_num(r.d_user_us),
            json_num(r.d_sys_us),
            json_num(r.user),
            json_num(r.sys),
            json_num(r.per_message)
        );
    }
    o.push_str("]}");
    println!("{o}");
}

// -------------------------------------------------------------------- main

/// The engine's on-wire datagram size for one `size`-byte message: one
/// client, one message in flight, mmsg backend, a short run.
fn calibrate(args: &Args) -> Result<usize, String> {
    let probe = Args {
        clients: 1,
        window: 1,
        rate: 0,
        ..args.clone()
    };
    let r = run_mode(Mode::EngineMmsg, 0, &probe, 0, 0.3, 0.1)?;
    Ok(r.datagram_tx_bytes.round() as usize)
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("echo-compare: {e}");
            std::process::exit(2);
        }
    };
    let _ = process_affinity();
    if let Err(e) = pin(args.client_cpu) {
        eprintln!("echo-compare: {e}");
        std::process::exit(1);
    }
    let floor_size = match args.floor_size {
        Some(s) => s,
        None if args.modes.contains(&Mode::Floor) => match calibrate(&args) {
            Ok(s) => {
                eprintln!(
                    "calibration: the engine's datagram for a {}-byte message is {s} bytes",
                    args.size
                );
                s
            }
            Err(e) => {
                eprintln!("echo-compare: calibration failed: {e}");
                std::process::exit(1);
            }
        },
        None => args.size,
    };
    let mut runs = Vec::new();
    for round in 0..args.repeat {
        for &mode in &args.modes {
            match run_mode(mode, round, &args, floor_size, args.seconds, args.warmup) {
                Ok(r) => {
                    eprintln!(
                        "round {} {:<13} {:>9.0} pkt/s  cpu {:>5.1}%  {:.3} µs/pkt ({:.3} usr + {:.3} sys)  {:.3} µs/msg",
                        round + 1,
                        mode.name(),
                        r.packets_per_s(),
                        r.util() * 100.0,
                        r.total_us_per_packet(),
                        r.user_us_per_packet(),
                        r.sys_us_per_packet(),
                        r.us_per_message()
                    );
                    runs.push(r);
                }
                Err(e) => {
                    eprintln!("echo-compare: round {} {}: {e}", round + 1, mode.name());
                    std::process::exit(1);
                }
            }
        }
    }
    let sums: Vec<Summary> = args
        .modes
        .iter()
        .filter_map(|&m| summarize(m, &runs))
        .collect();
    let rs = ratios(&sums);
    if args.json {
        print_json(&args, floor_size, &sums, &rs, &runs);
    } else {
        print_table(&args, floor_size, &sums, &rs, &runs);
    }
}
