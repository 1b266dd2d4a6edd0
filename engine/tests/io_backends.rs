//! Integration tests of `tos_engine::io` over 127.0.0.1: echo through both
//! backends, cBPF steering across a reuseport group, truncation, buffer-ring
//! exhaustion, one syscall per flush, and zero allocations per packet.
//!
//! io_uring is expected to work here; on a host that forbids it, set
//! `TOS_IO_URING_OPTIONAL=1` to skip (loudly) the io_uring-only checks.

use std::cell::Cell;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use tos_engine::io::{
    Backend, BackendChoice, BackendKind, DatagramIo, IoConfig, IoStats, SendError,
    attach_steering_cbpf, bind_reuseport, select_backend,
};

// ---------------------------------------------------------------------------
// Per-thread allocation counter.

struct CountingAlloc;

thread_local! {
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: forwards to the system allocator; the counter is a const-initialised
// thread-local without destructor, so touching it never allocates.
unsafe impl std::alloc::GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
        // SAFETY: same contract as ours.
        unsafe { std::alloc::System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        // SAFETY: same contract as ours.
        unsafe { std::alloc::System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, size: usize) -> *mut u8 {
        let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
        // SAFETY: same contract as ours.
        unsafe { std::alloc::System.realloc(ptr, layout, size) }
    }
}

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

fn thread_allocs() -> u64 {
    ALLOCS.with(Cell::get)
}

// ---------------------------------------------------------------------------
// Helpers.

fn localhost() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

fn uring_optional() -> bool {
    std::env::var_os("TOS_IO_URING_OPTIONAL").is_some()
}

/// Builds a backend of `kind` on the current thread, or `None` (with a loud
/// message) when io_uring is unavailable and explicitly optional.
fn build(kind: BackendKind, socket: UdpSocket, config: &IoConfig) -> Option<Backend> {
    let choice = match kind {
        BackendKind::IoUring => BackendChoice::IoUring,
        BackendKind::Mmsg => BackendChoice::Mmsg,
    };
    match select_backend(choice, socket, config) {
        Ok(b) => {
            assert_eq!(b.kind(), kind);
            Some(b)
        }
        Err(e) if kind == BackendKind::IoUring && uring_optional() => {
            eprintln!("SKIPPED: io_uring unavailable ({e}) and TOS_IO_URING_OPTIONAL is set");
            None
        }
        Err(e) => panic!("cannot build the {kind} backend: {e}"),
    }
}

/// Deterministic datagram `i`: 1..=1200 bytes of pseudo-random content.
fn payload(i: u32) -> Vec<u8> {
    let len = 1 + (i.wrapping_mul(7919) % 1200) as usize;
    let mut rng = tos_protocol::rng::SplitMix64::new(u64::from(i));
    (0..len).map(|_| rng.next_u64() as u8).collect()
}

/// Runs `turn` loop iterations of recv -> echo -> flush -> wait on `io`.
struct Echo {
    pending: Vec<(SocketAddr, usize, usize)>,
    bytes: Vec<u8>,
}

impl Echo {
    fn new(config: &IoConfig) -> Self {
        Self {
            pending: Vec::with_capacity(config.recv_budget),
            bytes: Vec::with_capacity(config.recv_budget * config.max_datagram()),
        }
    }

    /// One loop turn; returns datagrams received.
    fn turn(&mut self, io: &mut Backend) -> usize {
        self.pending.clear();
        self.bytes.clear();
        let (pending, bytes) = (&mut self.pending, &mut self.bytes);
        let n = io
            .recv_batch(|from, data| {
                pending.push((from, bytes.len(), data.len()));
                bytes.extend_from_slice(data);
            })
            .expect("recv_batch");
        for &(to, off, len) in &self.pending {
            let data = &self.bytes[off..off + len];
            let mut tries = 0;
            loop {
                match io.queue_send(to, data) {
                    Ok(()) => break,
                    Err(SendError::Full) if tries < 100 => {
                        tries += 1;
                        io.flush().expect("flush");
                        if tries > 1 {
                            io.wait(Duration::from_millis(1)).expect("wait");
                        }
                    }
                    Err(e) => panic!("queue_send: {e}"),
                }
            }
        }
        io.flush().expect("flush");
        if n == 0 {
            io.wait(Duration::from_millis(20)).expect("wait");
        }
        n
    }
}

struct EchoServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    handle: thread::JoinHandle<(IoStats, u64)>,
}

/// Spawns an echo server thread; `None` if io_uring is optional and absent.
/// It reports its stats and the heap allocations its loop made after the
/// first `warmup` datagrams.
fn spawn_echo(kind: BackendKind, config: IoConfig, warmup: u64) -> Option<EchoServer> {
    let (tx, rx) = mpsc::channel();
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = Arc::clone(&stop);
    let handle = thread::spawn(move || {
        let socket = bind_reuseport(localhost(), 1 << 20, 1 << 20).expect("bind");
        let addr = socket.local_addr().unwrap();
        let Some(mut io) = build(kind, socket, &config) else {
            tx.send(None).unwrap();
            return (IoStats::default(), 0);
        };
        tx.send(Some(addr)).unwrap();
        let mut echo = Echo::new(&config);
        let mut seen = 0u64;
        let mut allocs_at_warmup = None;
        let deadline = Instant::now() + Duration::from_secs(60);
        while !stop2.load(Ordering::Relaxed) && Instant::now() < deadline {
            seen += echo.turn(&mut io) as u64;
            if allocs_at_warmup.is_none() && seen >= warmup {
                allocs_at_warmup = Some(thread_allocs());
            }
        }
        let allocs = allocs_at_warmup.map_or(0, |a| thread_allocs() - a);
        (*io.stats(), allocs)
    });
    match rx.recv().expect("server thread died") {
        Some(addr) => Some(EchoServer { addr, stop, handle }),
        None => {
            handle.join().unwrap();
            None
        }
    }
}

impl EchoServer {
    fn finish(self) -> (IoStats, u64) {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.join().expect("echo server panicked")
    }
}

/// Sends `count` datagrams in windows of 64 and checks every echo is intact.
/// Returns how many datagrams had to be resent.
fn run_echo_client(server: SocketAddr, count: u32) -> u32 {
    let client = UdpSocket::bind(localhost()).unwrap();
    client.connect(server).unwrap();
    client
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let mut resent = 0;
    let window = 64u32;
    let mut start = 0;
    while start < count {
        let end = (start + window).min(count);
        let expected: Vec<Vec<u8>> = (start..end).map(payload).collect();
        let mut got = vec![false; expected.len()];
        for p in &expected {
            client.send(p).unwrap();
        }
        let mut rounds = 0;
        while got.iter().any(|g| !g) {
            match client.recv(&mut buf) {
                Ok(n) => {
                    let echo = &buf[..n];
                    if let Some(j) = (0..expected.len()).find(|&j| !got[j] && expected[j] == echo) {
                        got[j] = true;
                    } else {
                        // Only a duplicate of something already echoed (after a
                        // resend) may be unmatched; anything else is corruption.
                        let lo = start.saturating_sub(2 * window);
                        assert!(
                            (lo..end).any(|i| payload(i) == echo),
                            "echo of {n} bytes matches no datagram sent"
                        );
                    }
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    rounds += 1;
                    assert!(rounds <= 20, "echoes missing after 20 resend rounds");
                    for (j, p) in expected.iter().enumerate() {
                        if !got[j] {
                            client.send(p).unwrap();
                            resent += 1;
                        }
                    }
                }
                Err(e) => panic!("client recv: {e}"),
            }
        }
        start = end;
    }
    resent
}

fn echo_test(kind: BackendKind) {
    const COUNT: u32 = 5_000;
    let t0 = Instant::now();
    let Some(server) = spawn_echo(kind, IoConfig::default(), 500) else {
        return;
    };
    let resent = run_echo_client(server.addr, COUNT);
    let (stats, allocs) = server.finish();
    eprintln!(
        "{kind}: {COUNT} echoed in {:?}, {resent} resent, {stats:?}",
        t0.elapsed()
    );
    assert!(stats.datagrams_in >= u64::from(COUNT));
    assert!(stats.datagrams_out >= u64::from(COUNT));
    assert_eq!(stats.truncated, 0);
    assert_eq!(stats.recv_errors, 0);
    assert_eq!(
        allocs, 0,
        "the echo loop allocated {allocs} times in steady state"
    );
}

// ---------------------------------------------------------------------------
// Tests.

#[test]
fn echo_mmsg() {
    echo_test(BackendKind::Mmsg);
}

#[test]
fn echo_io_uring() {
    echo_test(BackendKind::IoUring);
}

#[test]
fn auto_selects_io_uring_here() {
    let socket = bind_reuseport(localhost(), 0, 0).unwrap();
    let io = select_backend(BackendChoice::Auto, socket, &IoConfig::default()).unwrap();
    if io.kind() != BackendKind::IoUring {
        assert!(
            uring_optional(),
            "Auto fell back to {} on a host where io_uring is expected",
            io.kind()
        );
        eprintln!("SKIPPED: Auto chose {}", io.kind());
    }
}

#[test]
fn steering_cbpf_routes_by_first_byte() {
    let a = bind_reuseport(localhost(), 0, 0).unwrap();
    let port = a.local_addr().unwrap().port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let b = bind_reuseport(addr, 0, 0).unwrap();
    if let Err(e) = attach_steering_cbpf(&a, 2) {
        panic!(
            "SO_ATTACH_REUSEPORT_CBPF failed ({e}); steering is expected to work on this host \
             (EPERM means a seccomp/LSM policy forbids it)"
        );
    }
    let socks = [a, b];

    let client = UdpSocket::bind(localhost()).unwrap();
    let mut sent = Vec::new();
    for i in 0..200u32 {
        let dgram = [i as u8, (i >> 8) as u8, 0xAB, 0xCD];
        client.send_to(&dgram, addr).unwrap();
        sent.push(dgram);
    }
    // Empty datagrams go to socket 0.
    for _ in 0..10 {
        client.send_to(&[], addr).unwrap();
    }

    let mut per_sock = [Vec::new(), Vec::new()];
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut buf = [0u8; 64];
    while per_sock[0].len() + per_sock[1].len() < 210 && Instant::now() < deadline {
        let mut idle = true;
        for (k, s) in socks.iter().enumerate() {
            match s.recv_from(&mut buf) {
                Ok((n, _)) => {
                    idle = false;
                    per_sock[k].push(buf[..n].to_vec());
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => panic!("recv: {e}"),
            }
        }
        if idle {
            thread::sleep(Duration::from_millis(1));
        }
    }
    assert_eq!(per_sock[0].len() + per_sock[1].len(), 210, "datagrams lost");
    for (k, got) in per_sock.iter().enumerate() {
        for d in got {
            let want = d.first().map_or(0, |b| usize::from(*b) % 2);
            assert_eq!(want, k, "datagram {d:?} arrived on socket {k}");
        }
    }
    assert_eq!(per_sock[0].iter().filter(|d| d.is_empty()).count(), 10);
    assert_eq!(per_sock[1].len(), 100);
}

fn truncation_test(kind: BackendKind) {
    let socket = bind_reuseport(localhost(), 0, 0).unwrap();
    let addr = socket.local_addr().unwrap();
    let config = IoConfig::default();
    let Some(mut io) = build(kind, socket, &config) else {
        return;
    };
    let client = UdpSocket::bind(localhost()).unwrap();
    let max = config.max_datagram();
    client.send_to(&vec![7u8; max + 1], addr).unwrap();
    client.send_to(&vec![9u8; 3000], addr).unwrap();
    client.send_to(&vec![5u8; max], addr).unwrap();
    client.send_to(b"small", addr).unwrap();

    let mut got: Vec<Vec<u8>> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    while got.len() < 2 && Instant::now() < deadline {
        io.recv_batch(|_, d| got.push(d.to_vec())).unwrap();
        io.flush().unwrap();
        if got.len() < 2 {
            io.wait(Duration::from_millis(20)).unwrap();
        }
    }
    assert_eq!(got.len(), 2, "{kind}: datagrams missing: {:?}", io.stats());
    assert_eq!(got[0], vec![5u8; max], "{kind}: max-size datagram damaged");
    assert_eq!(got[1], b"small");
    assert_eq!(io.stats().truncated, 2, "{kind}: {:?}", io.stats());
}

#[test]
fn truncated_datagram_is_counted_mmsg() {
    truncation_test(BackendKind::Mmsg);
}

#[test]
fn truncated_datagram_is_counted_io_uring() {
    truncation_test(BackendKind::IoUring);
}

fn one_syscall_per_flush(kind: BackendKind) {
    let socket = bind_reuseport(localhost(), 0, 1 << 20).unwrap();
    let config = IoConfig::default();
    let Some(mut io) = build(kind, socket, &config) else {
        return;
    };
    let client = UdpSocket::bind(localhost()).unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let to = client.local_addr().unwrap();
    for round in 0..3u32 {
        for i in 0..config.send_batch as u32 {
            io.queue_send(to, &payload(round * 1000 + i)).unwrap();
        }
        assert_eq!(io.queue_send(to, b"x"), Err(SendError::Full));
        let before = *io.stats();
        let n = io.flush().unwrap();
        let after = *io.stats();
        assert_eq!(n, config.send_batch);
        assert_eq!(
            after.syscalls - before.syscalls,
            1,
            "{kind}: one syscall per flush"
        );
        assert_eq!(
            after.datagrams_out - before.datagrams_out,
            config.send_batch as u64,
            "{kind}: sends completed by the flush"
        );
        let mut buf = [0u8; 2048];
        for i in 0..config.send_batch as u32 {
            let n = client.recv(&mut buf).unwrap();
            assert_eq!(&buf[..n], &payload(round * 1000 + i)[..]);
        }
    }
    // Nothing queued: no syscall at all.
    let before = io.stats().syscalls;
    assert_eq!(io.flush().unwrap(), 0);
    assert_eq!(
        io.stats().syscalls,
        before,
        "{kind}: empty flush made a syscall"
    );
}

#[test]
fn flush_is_one_syscall_mmsg() {
    one_syscall_per_flush(BackendKind::Mmsg);
}

#[test]
fn flush_is_one_syscall_io_uring() {
    one_syscall_per_flush(BackendKind::IoUring);
}

fn send_errors_are_typed(kind: BackendKind) {
    let socket = bind_reuseport(localhost(), 0, 0).unwrap();
    let config = IoConfig::default();
    let Some(mut io) = build(kind, socket, &config) else {
        return;
    };
    let v6: SocketAddr = "[::1]:9".parse().unwrap();
    assert_eq!(io.queue_send(v6, b"x"), Err(SendError::AddressFamily));
    let to: SocketAddr = "127.0.0.1:9".parse().unwrap();
    let big = vec![0u8; config.max_datagram() + 1];
    assert_eq!(io.queue_send(to, &big), Err(SendError::TooLarge));
    assert_eq!(io.flush().unwrap(), 0);
}

#[test]
fn send_errors_are_typed_both() {
    send_errors_are_typed(BackendKind::Mmsg);
    send_errors_are_typed(BackendKind::IoUring);
}

/// With a tiny buffer ring, a burst exhausts it: the multishot ends with
/// ENOBUFS, the datagrams wait in the socket buffer, and the re-armed
/// receive delivers every one of them, in order.
#[test]
fn io_uring_buffer_ring_exhaustion_recovers() {
    let socket = bind_reuseport(localhost(), 1 << 20, 0).unwrap();
    let addr = socket.local_addr().unwrap();
    let config = IoConfig {
        recv_buffers: 8,
        ..IoConfig::default()
    };
    let Some(mut io) = build(BackendKind::IoUring, socket, &config) else {
        return;
    };
    let client = UdpSocket::bind(localhost()).unwrap();
    const N: u32 = 100;
    for i in 0..N {
        client.send_to(&i.to_le_bytes(), addr).unwrap();
    }
    thread::sleep(Duration::from_millis(50));
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut turns = 0;
    while got.len() < N as usize && Instant::now() < deadline {
        turns += 1;
        io.recv_batch(|_, d| got.push(u32::from_le_bytes(d.try_into().unwrap())))
            .unwrap();
        io.flush().unwrap();
        if got.len() < N as usize {
            io.wait(Duration::from_millis(20)).unwrap();
        }
    }
    let stats = *io.stats();
    eprintln!("exhaustion: {turns} turns, {stats:?}");
    assert_eq!(
        got,
        (0..N).collect::<Vec<_>>(),
        "lost or reordered: {stats:?}"
    );
    assert!(stats.recv_buffer_exhausted >= 1, "{stats:?}");
    assert!(stats.multishot_rearms >= 1, "{stats:?}");
}

/// Building and dropping rings repeatedly neither hangs nor leaks: teardown
/// cancels the live multishot receive and in-flight sends.
#[test]
fn io_uring_teardown_is_clean() {
    let client = UdpSocket::bind(localhost()).unwrap();
    let to = client.local_addr().unwrap();
    let t0 = Instant::now();
    for _ in 0..32 {
        let socket = bind_reuseport(localhost(), 0, 0).unwrap();
        let addr = socket.local_addr().unwrap();
        let Some(mut io) = build(BackendKind::IoUring, socket, &IoConfig::default()) else {
            return;
        };
        client.send_to(b"ping", addr).unwrap();
        io.queue_send(to, b"pong").unwrap();
        io.flush().unwrap();
        drop(io);
    }
    assert!(t0.elapsed() < Duration::from_secs(5), "teardown too slow");
}
