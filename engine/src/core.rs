//! One core: its socket's I/O backend, its protocol endpoint, its inbox
//! from the other cores, and the tick loop that drives them.
//!
//! Everything here is owned by the core's thread ([`CoreRunner`] is built
//! on it and never leaves it); cores meet only through the bounded
//! channels of [`CoreMessage`].
//!
//! One loop turn: harvest datagrams (forwarding those another core owns),
//! drain the inbox, handle protocol events, run the tick when it is due,
//! hand every datagram the endpoint wants to send to the backend, flush
//! with one system call, then wait for the next datagram or the next tick.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TrySendError};
use hdrhistogram::Histogram;
use tos_protocol::connection::{Connection, Event};
use tos_protocol::endpoint::{
    ConnectionHandle, DatagramOutcome, DropReason, Endpoint, EndpointEvent,
};
use tos_protocol::wire::Channel;
use tos_protocol::wire::control::DisconnectReason;

use tos_game::Output;

use crate::io::{Backend, DatagramIo, SendError};
use crate::stats::{CoreSnapshot, CoreStats};

/// The largest datagram forwarded between cores (the protocol's MTU is
/// 1200; anything larger is not ours).
pub const FORWARD_MAX: usize = 1280;

/// How long a stopping core waits for the outcome of its players' hand-offs
/// to other nodes: a hand-off's acknowledgement times out after the
/// cluster's `handoff_timeout_ms` (2 s in the example) and is then settled
/// through the directory.
const CROSSING_WAIT: Duration = Duration::from_secs(4);

/// A datagram that arrived on the wrong core, carried to its owner.
#[derive(Clone)]
pub struct ForwardedDatagram {
    /// Its source address.
    pub from: SocketAddr,
    /// Its length.
    pub len: u16,
    /// Its bytes (inline: forwarding allocates nothing).
    pub bytes: [u8; FORWARD_MAX],
}

/// What one core sends another (datagrams travel on a channel of their
/// own: [`Mesh`]).
pub enum CoreMessage {
    /// A connection moving to this core.
    Migrate(Box<Connection>),
    /// A message for this core's game layer, with the player's connection
    /// when one moves with it (hand-offs, entering at a position this core
    /// owns).
    Game {
        /// The message.
        msg: tos_game::PeerMessage,
        /// The connection that moves with it.
        connection: Option<Box<Connection>>,
    },
    /// Move the connection with this id to `target`.
    MigrateRequest {
        /// Its current id.
        connection_id: u32,
        /// The core to move it to.
        target: u8,
    },
}

impl core::fmt::Debug for ForwardedDatagram {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "ForwardedDatagram({} bytes from {})",
            self.len, self.from
        )
    }
}

impl core::fmt::Debug for CoreMessage {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Migrate(c) => write!(f, "Migrate({:#x})", c.connection_id()),
            Self::MigrateRequest {
                connection_id,
                target,
            } => write!(f, "MigrateRequest({connection_id:#x} -> {target})"),
            Self::Game { msg, connection } => {
                write!(f, "Game({msg:?}, connection: {})", connection.is_some())
            }
        }
    }
}

/// One core's ends of the channels between cores. Each core has two
/// inboxes: hand-offs, enters and migrations on one, datagrams forwarded
/// by other cores on the other, so that a flood of forwarded datagrams can
/// fill only its own channel and never delays or bounces a hand-off.
#[derive(Debug)]
pub struct Mesh {
    /// Every core's control inbox, by core number.
    pub peers: Vec<Sender<CoreMessage>>,
    /// This core's control inbox.
    pub inbox: Receiver<CoreMessage>,
    /// Every core's datagram inbox, by core number.
    pub datagram_peers: Vec<Sender<ForwardedDatagram>>,
    /// This core's datagram inbox.
    pub datagrams: Receiver<ForwardedDatagram>,
}

/// The channels of `cores` cores, each inbox holding `capacity` messages.
pub fn mesh(cores: usize, capacity: usize) -> Vec<Mesh> {
    let (peers, inboxes): (Vec<_>, Vec<_>) = (0..cores)
        .map(|_| crossbeam_channel::bounded::<CoreMessage>(capacity))
        .unzip();
    let (datagram_peers, datagrams): (Vec<_>, Vec<_>) = (0..cores)
        .map(|_| crossbeam_channel::bounded::<ForwardedDatagram>(capacity))
        .unzip();
    inboxes
        .into_iter()
        .zip(datagrams)
        .map(|(inbox, datagrams)| Mesh {
            peers: peers.clone(),
            inbox,
            datagram_peers: datagram_peers.clone(),
            datagrams,
        })
        .collect()
}

/// What the core does with the game layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Return every client message on its channel: the protocol path with
    /// no game work, for measurement.
    Echo,
    /// Run the world.
    World,
}

/// Settings of a core's loop.
#[derive(Debug, Clone)]
pub struct CoreSettings {
    /// This core's number.
    pub core: u8,
    /// The tick period.
    pub tick_period: Duration,
    /// All cores align their ticks to this instant.
    pub epoch: Instant,
    /// How often the stats line is logged.
    pub stats_interval: Duration,
    /// Echo or world.
    pub mode: Mode,
}

/// One core's state. Built on the core's thread; not `Send`.
pub struct CoreRunner {
    settings: CoreSettings,
    io: Backend,
    endpoint: Endpoint,
    peers: Vec<Sender<CoreMessage>>,
    inbox: Receiver<CoreMessage>,
    datagram_peers: Vec<Sender<ForwardedDatagram>>,
    datagrams: Receiver<ForwardedDatagram>,
    shared: Arc<CoreStats>,
    stop: Arc<AtomicBool>,
    local: CoreSnapshot,
    tick_hist: Histogram<u64>,
    next_tick: Instant,
    tick: u64,
    next_stats: Instant,
    send_buf: Box<[u8; 2048]>,
    echo_buf: Vec<u8>,
    game_buf: Box<[u8; 2048]>,
    game: Option<tos_game::GameCore>,
    /// Debug builds only: panic at a tick once this file exists (set by
    /// `TOS_TEST_PANIC_CORE=N:PATH` for core N), to test the panic policy.
    test_panic: Option<std::path::PathBuf>,
    _not_send: core::marker::PhantomData<*const ()>,
}

/// Reads `TOS_TEST_PANIC_CORE=N:PATH`: core N panics once PATH exists.
/// Honoured only in debug builds (the tests' `tos-server`); a release
/// build ignores it.
fn test_panic_trigger(core: u8) -> Option<std::path::PathBuf> {
    if !cfg!(debug_assertions) {
        return None;
    }
    let v = std::env::var("TOS_TEST_PANIC_CORE").ok()?;
    let (n, path) = v.split_once(':')?;
    (n.trim().parse::<u8>().ok()? == core).then(|| path.into())
}

/// The text of a panic's payload.
fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "(no message)".into()
    }
}

impl core::fmt::Debug for CoreRunner {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("CoreRunner")
            .field("core", &self.settings.core)
            .finish_non_exhaustive()
    }
}

impl CoreRunner {
    /// A core ready to run.
    pub fn new(
        settings: CoreSettings,
        io: Backend,
        endpoint: Endpoint,
        mesh: Mesh,
        shared: Arc<CoreStats>,
        stop: Arc<AtomicBool>,
        game: Option<tos_game::GameCore>,
    ) -> Self {
        let now = Instant::now();
        let period = settings.tick_period;
        let elapsed = now.saturating_duration_since(settings.epoch);
        let tick = (elapsed.as_nanos() / period.as_nanos().max(1)) as u64 + 1;
        let test_panic = test_panic_trigger(settings.core);
        Self {
            next_tick: settings.epoch + period * tick as u32,
            tick,
            next_stats: now + settings.stats_interval,
            settings,
            io,
            endpoint,
            peers: mesh.peers,
            inbox: mesh.inbox,
            datagram_peers: mesh.datagram_peers,
            datagrams: mesh.datagrams,
            shared,
            stop,
            local: CoreSnapshot::default(),
            // 1 µs to 60 s, 3 significant digits: recording never allocates.
            tick_hist: Histogram::new_with_bounds(1, 60_000_000, 3)
                .unwrap_or_else(|_| unreachable!("valid bounds")),
            send_buf: Box::new([0u8; 2048]),
            echo_buf: Vec::with_capacity(2048),
            game_buf: Box::new([0u8; 2048]),
            game,
            test_panic,
            _not_send: core::marker::PhantomData,
        }
    }

    /// Runs until the stop flag is set, then says goodbye to every client.
    ///
    /// Panic policy (issue 11, finding 11): a panic in the loop is caught
    /// here, at the core's thread boundary. The core logs it, saves every
    /// character it holds (best effort: the game state is whatever the
    /// panic left), says goodbye to its clients, sets the stop flag so that
    /// every other core does the same, and returns `false`; the runtime
    /// then flushes the store and `tos-server` exits non-zero. Restarting
    /// the core in place is not attempted: its state after a panic cannot
    /// be trusted, and a restarted core would serve it.
    pub fn run(mut self) -> bool {
        tracing::info!(core = self.settings.core, backend = %self.io.kind(), "core running");
        let looped = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            while !self.stop.load(Ordering::Relaxed) {
                let received = self.turn();
                let now = Instant::now();
                // Under load, go straight to the next turn: more is likely queued.
                if received == 0 && now < self.next_tick {
                    let _ = self
                        .io
                        .wait((self.next_tick - now).min(Duration::from_millis(5)));
                }
            }
        }));
        let core = self.settings.core;
        let Err(payload) = looped else {
            self.shutdown();
            return true;
        };
        tracing::error!(
            core,
            "core {core} panicked: {}; saving its players and stopping the server",
            panic_message(payload.as_ref())
        );
        self.stop.store(true, Ordering::SeqCst);
        let saved = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.shutdown()));
        match saved {
            Ok(()) => tracing::error!(core, "core {core} saved its players after the panic"),
            Err(p) => tracing::error!(
                core,
                "core {core} panicked again while saving: {}",
                panic_message(p.as_ref())
            ),
        }
        false
    }

    /// One loop turn.
    /// Returns how many datagrams arrived.
    pub fn turn(&mut self) -> usize {
        let now = Instant::now();
        if let Some(path) = &self.test_panic {
            if self.tick % 6 == 0 && path.exists() {
                panic!(
                    "TOS_TEST_PANIC_CORE: test panic on core {}",
                    self.settings.core
                );
            }
        }
        let received = self.receive(now);
        self.drain_inbox(now);
        self.handle_events(now);
        if let Some(game) = self.game.as_mut() {
            game.handle_replies(now);
        }
        self.drain_game(now);
        if now >= self.next_tick {
            self.run_tick(now);
        }
        self.transmit(now);
        if now >= self.next_stats {
            self.log_stats(now);
        }
        received
    }

    fn receive(&mut self, now: Instant) -> usize {
        let Self {
            io,
            endpoint,
            datagram_peers: peers,
            local,
            ..
        } = self;
        io.recv_batch(|from, data| {
            local.datagrams_in += 1;
            local.bytes_in += data.len() as u64;
            match endpoint.handle_datagram(now, from, data) {
                DatagramOutcome::WrongCore(core) => {
                    forward(peers, local, usize::from(core), from, data)
                }
                DatagramOutcome::Dropped(reason) => count_drop(local, reason),
                DatagramOutcome::Connection(_) | DatagramOutcome::Handshake => {}
            }
        })
        .unwrap_or(0)
    }

    fn drain_inbox(&mut self, now: Instant) {
        // Datagrams: at most one channel's worth per turn, so other cores
        // forwarding without pause cannot hold this loop.
        for _ in 0..self.datagrams.capacity().unwrap_or(1024) {
            let Ok(mut d) = self.datagrams.try_recv() else {
                break;
            };
            self.local.forwarded_in += 1;
            let len = usize::from(d.len).min(FORWARD_MAX);
            match self
                .endpoint
                .handle_datagram(now, d.from, &mut d.bytes[..len])
            {
                // Never bounce a datagram between cores.
                DatagramOutcome::WrongCore(_) => self.local.drop_unknown_connection += 1,
                DatagramOutcome::Dropped(reason) => count_drop(&mut self.local, reason),
                _ => {}
            }
        }
        while let Ok(msg) = self.inbox.try_recv() {
            match msg {
                CoreMessage::Migrate(conn) => {
                    self.local.migrations_in += 1;
                    self.endpoint.insert_migrated(*conn, now);
                }
                CoreMessage::MigrateRequest {
                    connection_id,
                    target,
                } => self.migrate(now, connection_id, target),
                CoreMessage::Game { msg, connection } => {
                    let handle = connection.map(|c| {
                        self.local.migrations_in += 1;
                        self.endpoint.insert_migrated(*c, now)
                    });
                    if let Some(game) = self.game.as_mut() {
                        game.handle_peer(msg, handle);
                    }
                }
            }
        }
    }

    /// Moves a connection to another core.
    pub fn migrate(&mut self, now: Instant, connection_id: u32, target: u8) {
        if target == self.settings.core || usize::from(target) >= self.peers.len() {
            return;
        }
        let Some(handle) = self.endpoint.handle_by_id(connection_id) else {
            return;
        };
        let Some(conn) = self.endpoint.take_connection(handle, target, now) else {
            return;
        };
        match self.peers[usize::from(target)].try_send(CoreMessage::Migrate(Box::new(conn))) {
            Ok(()) => self.local.migrations_out += 1,
            Err(
                TrySendError::Full(CoreMessage::Migrate(conn))
                | TrySendError::Disconnected(CoreMessage::Migrate(conn)),
            ) => {
                // The target is saturated: keep the connection here.
                self.endpoint.insert_migrated(*conn, now);
            }
            Err(_) => {}
        }
    }

    fn handle_events(&mut self, now: Instant) {
        /// What to do once the event (which borrows the endpoint) is gone.
        enum After {
            Nothing,
            Echo(ConnectionHandle, Channel),
            GameMessage(ConnectionHandle),
        }
        loop {
            let after = match self.endpoint.poll_event() {
                None => break,
                Some(EndpointEvent::Incoming {
                    handle,
                    ticket,
                    address,
                }) => {
                    match self.game.as_mut() {
                        // The game layer checks the ticket (off this thread)
                        // and answers with Accept or Refuse.
                        Some(game) => game.handle_incoming(now, handle, ticket, address),
                        None => {
                            self.endpoint.accept(handle, now);
                            self.local.connections_accepted += 1;
                        }
                    }
                    After::Nothing
                }
                Some(EndpointEvent::Connection { handle, event }) => match event {
                    Event::Message { channel, data } => {
                        self.echo_buf.clear();
                        self.echo_buf.extend_from_slice(data);
                        match self.settings.mode {
                            Mode::Echo => After::Echo(handle, channel),
                            Mode::World => After::GameMessage(handle),
                        }
                    }
                    Event::Connected => {
                        let address = self.endpoint.connection(handle).map(|c| c.remote_address());
                        if let (Some(g), Some(address)) = (self.game.as_mut(), address) {
                            g.handle_connected(handle, address);
                        }
                        After::Nothing
                    }
                    Event::UnreliableAcked { token } => {
                        if let Some(g) = self.game.as_mut() {
                            g.handle_snapshot_fate(handle, token, true);
                        }
                        After::Nothing
                    }
                    Event::UnreliableLost { token } => {
                        if let Some(g) = self.game.as_mut() {
                            g.handle_snapshot_fate(handle, token, false);
                        }
                        After::Nothing
                    }
                    Event::Disconnected { .. } => {
                        if let Some(g) = self.game.as_mut() {
                            g.handle_closed(handle);
                        }
                        After::Nothing
                    }
                    _ => After::Nothing,
                },
                Some(EndpointEvent::Removed { handle }) => {
                    if let Some(g) = self.game.as_mut() {
                        g.handle_closed(handle);
                    }
                    After::Nothing
                }
            };
            match after {
                After::Nothing => {}
                After::Echo(handle, channel) => {
                    // A full queue drops the echo: the client sees a loss.
                    if self.endpoint.send(handle, channel, &self.echo_buf).is_err() {
                        self.local.drop_send_full += 1;
                    }
                }
                After::GameMessage(handle) => {
                    if let Some(g) = self.game.as_mut() {
                        g.handle_message(now, handle, &self.echo_buf);
                    }
                }
            }
        }
    }

    /// Carries out what the game layer asks for: sends, accept/refuse of
    /// pending connections, closes, and messages (with connections) to
    /// other cores.
    fn drain_game(&mut self, now: Instant) {
        let Some(game) = self.game.as_mut() else {
            return;
        };
        while let Some(out) = game.poll_output(&mut self.game_buf[..]) {
            match out {
                Output::Send {
                    handle,
                    channel,
                    len,
                    snapshot_tick,
                } => {
                    let result = self.endpoint.send(handle, channel, &self.game_buf[..len]);
                    game.handle_sent(handle, snapshot_tick, result);
                }
                Output::Accept { handle } => {
                    if self.endpoint.accept(handle, now) {
                        self.local.connections_accepted += 1;
                    }
                }
                Output::Refuse { handle, reason } => self.endpoint.refuse(handle, reason),
                Output::Close { handle, reason } => {
                    if let Some(c) = self.endpoint.connection_mut(handle) {
                        c.close(now, reason);
                    }
                }
                Output::ToCore {
                    core,
                    msg,
                    connection,
                } => {
                    let Some(peer) = self.peers.get(usize::from(core)) else {
                        tracing::error!(core, "the game layer named a core that does not exist");
                        continue;
                    };
                    let conn = connection
                        .and_then(|h| self.endpoint.take_connection(h, core as u8, now))
                        .map(Box::new);
                    let moving = conn.is_some();
                    match peer.try_send(CoreMessage::Game {
                        msg,
                        connection: conn,
                    }) {
                        Ok(()) => {
                            if moving {
                                self.local.migrations_out += 1;
                            }
                        }
                        Err(
                            TrySendError::Full(CoreMessage::Game { msg, connection })
                            | TrySendError::Disconnected(CoreMessage::Game { msg, connection }),
                        ) => {
                            // Its inbox is full: the connection stays here and
                            // the game layer decides what to retry.
                            self.local.drop_forward_full += 1;
                            let handle = connection.map(|c| self.endpoint.insert_migrated(*c, now));
                            game.handle_bounced(core, msg, handle);
                        }
                        Err(_) => {}
                    }
                }
            }
        }
    }

    fn run_tick(&mut self, now: Instant) {
        let started = Instant::now();
        self.endpoint.handle_timeout(now);
        self.handle_events(now);
        if let Some(game) = self.game.as_mut() {
            if self.tick % 60 == 0 {
                for h in self.endpoint.handles() {
                    if let Some(conn) = self.endpoint.connection(h) {
                        game.handle_rtt(h, conn.rtt().as_millis().min(u128::from(u32::MAX)) as u32);
                    }
                }
            }
            game.handle_replies(now);
            game.handle_tick(self.tick as u32);
            self.local.players = game.players() as u64;
            self.local.entities = u64::from(game.shard().local_count());
            self.local.ghosts = u64::from(game.shard().ghost_count());
        }
        self.drain_game(now);
        let took = started.elapsed();
        let period = self.settings.tick_period;
        let _ = self.tick_hist.record(took.as_micros().max(1) as u64);
        self.local.ticks += 1;
        let late = now.saturating_duration_since(self.next_tick);
        if took > period || late > period {
            self.local.tick_overruns += 1;
        }
        // Stay on the shared grid: skip ticks that are already past.
        self.tick += 1 + (late.as_nanos() / period.as_nanos().max(1)) as u64;
        self.next_tick = self.settings.epoch + period * self.tick as u32;
        self.publish();
    }

    fn transmit(&mut self, now: Instant) {
        let Self {
            io,
            endpoint,
            local,
            send_buf,
            ..
        } = self;
        while let Some(t) = endpoint.poll_transmit(now, &mut send_buf[..]) {
            let data = &send_buf[..t.size];
            match io.queue_send(t.destination, data) {
                Ok(()) => {}
                Err(SendError::Full) => {
                    let _ = io.flush();
                    if io.queue_send(t.destination, data).is_err() {
                        // The kernel is not keeping up: the packet is lost,
                        // and the protocol will treat it as such.
                        local.drop_send_full += 1;
                        continue;
                    }
                }
                Err(_) => {}
            }
            local.datagrams_out += 1;
            local.bytes_out += t.size as u64;
        }
        let _ = io.flush();
    }

    fn publish(&mut self) {
        let ep = self.endpoint.stats();
        let io = *self.io.stats();
        self.local.connections = self.endpoint.connection_count() as u64;
        self.local.cookies_issued = ep.cookies_issued;
        // The endpoint folds every connection's failures into its totals as
        // they happen: counters that never go down, published every tick.
        self.local.drop_auth = ep.auth_failures;
        self.local.drop_replay = ep.replays;
        self.local.refused_core_full = ep.full_refused;
        self.local.refused_process_full = ep.process_full;
        self.local.refused_address_full = ep.address_full;
        self.local.refused_rate_limited = ep.rate_limited;
        self.local.refused_pending_full = ep.pending_refused;
        self.local.refused_bad_cookie = ep.bad_cookies;
        self.local.refused_version = ep.version_refused + ep.unpinned_refused;
        self.local.refused_ticket = ep.tickets_rejected + ep.refused;
        self.local.drop_bad_client_key = ep.bad_client_keys;
        self.local.drop_truncated = io.truncated;
        self.local.syscalls = io.syscalls;
        self.shared.publish(&self.local);
    }

    fn log_stats(&mut self, now: Instant) {
        self.local.tick_p50_us = self.tick_hist.value_at_quantile(0.5);
        self.local.tick_p99_us = self.tick_hist.value_at_quantile(0.99);
        self.local.tick_max_us = self.tick_hist.max();
        self.tick_hist.reset();
        self.publish();
        tracing::info!("{}", self.local.line(usize::from(self.settings.core)));
        self.next_stats = now + self.settings.stats_interval;
    }

    fn shutdown(&mut self) {
        let now = Instant::now();
        // Every character on this core goes to the store before the
        // connections close; the runtime flushes the store after the cores.
        if let Some(game) = self.game.as_mut() {
            game.shutdown();
        }
        self.drain_game(now);
        // A player frozen mid-crossing is saved here (kept) or is the other
        // node's (delivered) only once its hand-off's outcome comes: wait
        // for it, briefly (the cluster thread stops after the cores).
        let deadline = now + CROSSING_WAIT;
        while self.game.as_ref().is_some_and(|g| g.crossings_pending()) && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(2));
            let now = Instant::now();
            if let Some(game) = self.game.as_mut() {
                game.handle_replies(now);
            }
            self.drain_game(now);
        }
        if self.game.as_ref().is_some_and(|g| g.crossings_pending()) {
            tracing::warn!(
                core = self.settings.core,
                "stopping with a hand-off undecided: its player's lease decides where it is, \
                 at its last save"
            );
        }
        let handles: Vec<_> = self.endpoint.handles().collect();
        for h in handles {
            if let Some(c) = self.endpoint.connection_mut(h) {
                c.close(now, DisconnectReason::ServerShutdown);
            }
        }
        // Let every Disconnect out.
        self.transmit(now);
        self.publish();
        tracing::info!(
            core = self.settings.core,
            "core stopped: {}",
            self.local.line(usize::from(self.settings.core))
        );
    }

    /// The endpoint, for tests that inspect a core in place.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }
}

fn forward(
    peers: &[Sender<ForwardedDatagram>],
    local: &mut CoreSnapshot,
    core: usize,
    from: SocketAddr,
    data: &[u8],
) {
    let Some(peer) = peers.get(core) else {
        local.drop_unknown_connection += 1;
        return;
    };
    if data.len() > FORWARD_MAX {
        local.drop_truncated += 1;
        return;
    }
    let mut d = ForwardedDatagram {
        from,
        len: data.len() as u16,
        bytes: [0; FORWARD_MAX],
    };
    d.bytes[..data.len()].copy_from_slice(data);
    match peer.try_send(d) {
        Ok(()) => local.forwarded_out += 1,
        Err(_) => local.drop_forward_full += 1,
    }
}

fn count_drop(local: &mut CoreSnapshot, reason: DropReason) {
    match reason {
        DropReason::Malformed | DropReason::UnexpectedHandshake | DropReason::ReplyQueueFull => {
            local.drop_malformed += 1
        }
        DropReason::ShortConnect => local.drop_short_connect += 1,
        DropReason::UnknownConnection => local.drop_unknown_connection += 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_datagram_flood_cannot_fill_the_hand_off_channel() {
        // Core 0 forwards datagrams to core 1 until core 1's datagram inbox
        // is full; hand-offs to core 1 still go through (they shared one
        // channel before, so a forwarded flood bounced them).
        let meshes = mesh(2, 16);
        let mut local = CoreSnapshot::default();
        let from: SocketAddr = "127.0.0.1:9".parse().unwrap();
        for _ in 0..100 {
            forward(&meshes[0].datagram_peers, &mut local, 1, from, &[1, 2, 3]);
        }
        assert_eq!(local.forwarded_out, 16);
        assert_eq!(local.drop_forward_full, 84);
        for i in 0..16 {
            meshes[0].peers[1]
                .try_send(CoreMessage::MigrateRequest {
                    connection_id: i,
                    target: 0,
                })
                .expect("the control channel has its own room");
        }
        assert_eq!(meshes[1].inbox.len(), 16);
        assert_eq!(meshes[1].datagrams.len(), 16);
    }
}
