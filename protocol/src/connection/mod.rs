//! One connection, for either role, sans-IO: `handle_datagram(now, from,
//! bytes)`, `handle_timeout(now)`, `poll_transmit(now, buf)`,
//! `poll_event()`, `next_timeout()`.
//!
//! A client creates its connection with [`Connection::connect`]; the
//! server's connections are created and routed by [`crate::endpoint`].
//!
//! # Packets
//!
//! After the handshake every datagram is sealed (ChaCha20-Poly1305, see
//! [`crate::crypto`]) and its plaintext is a sequence of frames. Every
//! packet carries an Ack frame when the sender has received anything, so
//! acknowledgements ride on the traffic that flows anyway; a standalone
//! Ack goes out only when nothing else does within the ack delay.
//!
//! # Reliability
//!
//! Packet numbers are never reused. Reliable messages carry their own ids;
//! when a packet is declared lost (three later packets acknowledged, or the
//! retransmission timeout), the reliable pieces and control frames it
//! carried are queued again and go out in new packets. A piece lost more
//! than `max_retries` times closes the connection. Unreliable messages are
//! never re-sent, but their acknowledgement or loss is reported as an event
//! with the token `send` returned: that is how snapshots learn their
//! baseline.

mod handshake;
#[cfg(test)]
mod hostile_tests;
mod recovery;
mod reliable;
mod timer;

pub use handshake::{HandshakeError, ServerKey};

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};

use crate::Side;
use crate::compress;
use crate::crypto::{KeyPair, KeySet, PacketKey};
use crate::integrity::IntegrityTable;
use crate::replay::ReplayWindow;
use crate::wire::control::{
    AcceptedParams, Ack, CryptoTest, CryptoTestAck, DenyReason, Disconnect, DisconnectReason,
    FRAGMENT_PIECE_LEN, Fragment, Handshake, IntegrityAnswer, IntegrityChallenge, Message,
    NewConnectionId, Ping, Pong, RekeyRequest, RekeyResponse, ReliableHandshake, TAG_LEN,
};
use crate::wire::datagram::{self, AnyFrame, Datagram, SEALED_FLAGS};
use crate::wire::frame::{FrameBody, Frames};
use crate::wire::header::{HEADER_LEN, Packet};
use crate::wire::{Channel, HeaderFlags, PacketHeader, Writer};

pub(crate) use handshake::ServerPending as PendingState;
use handshake::{ClientCookie, ClientInitial, ClientKeyed, ServerAccepted, ServerPending};
use recovery::{Congestion, ControlKind, RttEstimator, SentFrame, SentPacket, SentPackets};
use reliable::{
    Arrival, OrderedReceiver, PieceRef, Reassembler, ReliableSender, UnorderedReceiver,
};
use timer::{Timer, TimerTable};

/// Transport settings shared by the connections of an endpoint.
#[derive(Debug, Clone)]
pub struct TransportConfig {
    /// Largest datagram sent, header and tag included.
    pub mtu: usize,
    /// How often each side pings.
    pub heartbeat_interval: Duration,
    /// Silence after which the connection is closed with `Timeout`.
    pub idle_timeout: Duration,
    /// How long a handshake may take.
    pub handshake_timeout: Duration,
    /// Lower bound of the retransmission timeout.
    pub rto_min: Duration,
    /// Upper bound of the (backed-off) retransmission timeout.
    pub rto_max: Duration,
    /// Losses of one reliable piece after which the connection closes.
    pub max_retries: u32,
    /// Largest message accepted or sent (fragmented above one datagram).
    pub max_message_bytes: usize,
    /// Concurrent reassemblies per connection.
    pub max_reassemblies: usize,
    /// Incomplete reassemblies are dropped after this.
    pub fragment_timeout: Duration,
    /// Reliable messages queued or in flight, per channel.
    pub send_queue_messages: usize,
    /// Bytes of reliable messages queued or in flight, per connection.
    pub send_queue_bytes: usize,
    /// Unreliable messages waiting to be sent; the oldest is dropped first.
    pub unreliable_queue_messages: usize,
    /// Bytes of unreliable messages waiting to be sent; the oldest are
    /// dropped first (a message alone in the queue may be larger).
    pub unreliable_queue_bytes: usize,
    /// Message ids a receiver buffers ahead of the next in order.
    pub receive_window: u64,
    /// Bytes of received messages held for the application: events not yet
    /// polled, out-of-order buffers and pieces being reassembled; beyond it
    /// packets are refused. It is the data part of the per-connection
    /// memory budget (docs/SECURITY.md), so it is also the largest message
    /// this side receives: a larger one is dropped as invalid.
    pub receive_buffer_bytes: usize,
    /// Longest wait before a standalone Ack.
    pub ack_delay: Duration,
    /// Initial congestion window in bytes.
    pub initial_window: usize,
    /// Smallest congestion window in bytes.
    pub min_window: usize,
    /// Payloads longer than this are LZ4-compressed when it pays.
    pub compression_threshold: usize,
    /// Rekey after this many bytes either way under one key generation.
    pub rekey_after_bytes: u64,
    /// Rekey after this long under one key generation.
    pub rekey_after: Duration,
    /// Packets sealed under the previous keys open for this long after a
    /// key change.
    pub rekey_grace: Duration,
    /// How often the server repeats the integrity challenge (`None`: only
    /// at connect).
    pub integrity_interval: Option<Duration>,
    /// How long a client may take to answer an integrity challenge.
    pub integrity_answer_timeout: Duration,
}

impl Default for TransportConfig {
    fn default() -> Self {
        Self {
            mtu: 1200,
            heartbeat_interval: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(15),
            handshake_timeout: Duration::from_secs(10),
            rto_min: Duration::from_millis(250),
            rto_max: Duration::from_secs(2),
            max_retries: 10,
            max_message_bytes: 256 * 1024,
            max_reassemblies: 8,
            fragment_timeout: Duration::from_secs(10),
            send_queue_messages: 1024,
            send_queue_bytes: 8 * 1024,
            unreliable_queue_messages: 64,
            unreliable_queue_bytes: 4 * 1024,
            receive_window: 256,
            receive_buffer_bytes: 12 * 1024,
            ack_delay: Duration::from_millis(5),
            initial_window: 64 * 1024,
            min_window: 4 * 1200,
            compression_threshold: compress::DEFAULT_THRESHOLD,
            rekey_after_bytes: 1 << 30,
            rekey_after: Duration::from_secs(3600),
            rekey_grace: Duration::from_secs(5),
            integrity_interval: Some(Duration::from_secs(300)),
            integrity_answer_timeout: Duration::from_secs(10),
        }
    }
}

impl TransportConfig {
    /// The largest message sent in a single (unfragmented) frame.
    pub fn max_unfragmented(&self) -> usize {
        // Header, tag, an ack frame (≤ 25), a message frame header (≤ 13)
        // and slack for a ping or pong.
        self.mtu.saturating_sub(HEADER_LEN + TAG_LEN + 64)
    }
}

/// A client's connection settings.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Transport settings.
    pub transport: Arc<TransportConfig>,
    /// The server's static key, pinned or not.
    pub server_key: ServerKey,
    /// Opaque auth ticket for the game layer (≤
    /// [`MAX_TICKET_PLAINTEXT_LEN`](crate::wire::control::MAX_TICKET_PLAINTEXT_LEN)
    /// bytes). It is sealed under the handshake's `es` key, so a non-empty
    /// ticket needs [`ServerKey::Pinned`].
    pub ticket: Vec<u8>,
    /// This client build's integrity table, to answer challenges.
    pub integrity: Option<Arc<IntegrityTable>>,
    /// Seed of the connection's random numbers (keys, nonces). Use fresh OS
    /// randomness in production; tests pass fixed seeds.
    pub seed: [u8; 32],
}

/// A datagram to send, written at the start of the caller's buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transmit {
    /// Where to send it.
    pub destination: SocketAddr,
    /// Its length.
    pub size: usize,
}

/// Something the application should know about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event<'a> {
    /// The handshake completed; messages flow.
    Connected,
    /// A message arrived.
    Message {
        /// Its channel.
        channel: Channel,
        /// Its bytes (valid until the next `poll_event`).
        data: &'a [u8],
    },
    /// An unreliable message was acknowledged by the peer.
    UnreliableAcked {
        /// The token `send` returned.
        token: u64,
    },
    /// An unreliable message was lost (or dropped before sending).
    UnreliableLost {
        /// The token `send` returned.
        token: u64,
    },
    /// The server moved this connection to a new id (client side).
    ConnectionIdChanged {
        /// The new id.
        connection_id: u32,
    },
    /// A key rotation completed.
    KeysRotated {
        /// The new key generation.
        generation: u32,
    },
    /// An unpinned client learnt the server's static key.
    ServerKeyLearnt {
        /// The key, to pin next time.
        key: [u8; 32],
    },
    /// The server refused the connection.
    Denied {
        /// Why.
        reason: DenyReason,
    },
    /// The connection ended.
    Disconnected {
        /// Why.
        reason: DisconnectReason,
        /// Whether the peer ended it.
        by_peer: bool,
    },
}

/// Why a message could not be queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendError {
    /// The connection is closing or closed.
    Closed,
    /// Larger than the maximum message (`max_message_bytes`).
    TooLarge {
        /// The largest size allowed on this channel.
        max: usize,
    },
    /// The send queue is full: try again after acknowledgements arrive.
    QueueFull,
    /// [`Connection::connect`] only: a non-empty auth ticket with no pinned
    /// server key (or a pinned key that is a low-order point), so the
    /// ticket cannot be sealed. A configuration error.
    UnsealableTicket,
}

impl core::fmt::Display for SendError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Closed => f.write_str("connection closed"),
            Self::TooLarge { max } => write!(f, "message larger than {max} bytes"),
            Self::QueueFull => f.write_str("send queue full"),
            Self::UnsealableTicket => {
                f.write_str("an auth ticket needs a pinned, valid server key to be sealed")
            }
        }
    }
}

impl std::error::Error for SendError {}

/// Counters of one connection.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ConnectionStats {
    /// Datagrams sent.
    pub packets_sent: u64,
    /// Datagrams accepted (authenticated).
    pub packets_received: u64,
    /// Bytes sent (whole datagrams).
    pub bytes_sent: u64,
    /// Bytes received (whole datagrams, accepted).
    pub bytes_received: u64,
    /// Sent packets declared lost.
    pub packets_lost: u64,
    /// Reliable pieces sent again.
    pub retransmissions: u64,
    /// Datagrams whose tag did not verify (tampered, truncated, wrong key).
    pub auth_failures: u64,
    /// Datagrams refused by the replay window.
    pub replays: u64,
    /// Frames or datagrams that did not decode.
    pub decode_errors: u64,
    /// Packets not acknowledged because the receiver had no room.
    pub refused_packets: u64,
    /// Unreliable messages dropped before sending (queue full or closed).
    pub unreliable_dropped: u64,
    /// Fragments dropped (invalid, or too many reassemblies).
    pub fragments_dropped: u64,
    /// Reassemblies that timed out.
    pub reassemblies_expired: u64,
    /// Standalone Ack packets sent.
    pub acks_sent: u64,
    /// Key rotations completed.
    pub rekeys: u64,
    /// Times the peer's address changed (NAT rebinding).
    pub path_changes: u64,
    /// Received messages dropped (unreliable) or refused (reliable, sent
    /// again by the peer) because the per-packet or per-connection event
    /// count was reached.
    pub events_dropped: u64,
    /// Current congestion window, bytes.
    pub congestion_window: u64,
    /// Bytes in flight.
    pub bytes_in_flight: u64,
    /// Smoothed RTT, microseconds.
    pub rtt_us: u64,
    /// RTT variance, microseconds.
    pub rtt_var_us: u64,
}

enum State {
    ClientInitial(ClientInitial),
    ClientCookie(ClientCookie),
    ClientKeyed(ClientKeyed),
    ServerPending(ServerPending),
    ServerAccepted(ServerAccepted),
    Established,
    /// Closing: the Disconnect is being sent; events already reported.
    Closing {
        until: Instant,
    },
    Closed,
}

impl State {
    fn name(&self) -> &'static str {
        match self {
            State::ClientInitial(_) => "client-initial",
            State::ClientCookie(_) => "client-cookie",
            State::ClientKeyed(_) => "client-keyed",
            State::ServerPending(_) => "server-pending",
            State::ServerAccepted(_) => "server-accepted",
            State::Established => "established",
            State::Closing { .. } => "closing",
            State::Closed => "closed",
        }
    }
}

impl core::fmt::Debug for State {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.name())
    }
}

/// Keys by generation, with the previous kept for a grace period.
#[derive(Debug)]
struct Keys {
    generation: u32,
    current: KeySet,
    previous: Option<(KeySet, Instant)>,
    /// Installed by the responder of a rekey before the initiator uses it.
    next: Option<KeySet>,
    since: Instant,
    bytes: u64,
}

impl Keys {
    fn send_key(&self, side: Side) -> &PacketKey {
        match side {
            Side::Client => &self.current.client_to_server,
            Side::Server => &self.current.server_to_client,
        }
    }

    fn phase_bit(&self) -> bool {
        self.generation & 1 == 1
    }
}

fn recv_key(set: &KeySet, side: Side) -> &PacketKey {
    match side {
        Side::Client => &set.server_to_client,
        Side::Server => &set.client_to_server,
    }
}

/// A rekey this side started (server) or answered (client).
#[derive(Debug)]
struct RekeyState {
    /// Initiator: our ephemeral and nonce, waiting for the response.
    initiated: Option<(u8, KeyPair, [u8; 16])>,
    /// Responder: the response we sent, re-sent on a repeated request.
    responded: Option<RekeyResponse>,
    request: Option<RekeyRequest>,
}

#[derive(Debug, Clone, Copy)]
enum EventRecord {
    Connected,
    // Offsets as u32 and the learnt key outside the record keep a record
    // at 16 bytes: the queue is part of the per-connection budget.
    Message {
        channel: Channel,
        start: u32,
        len: u32,
    },
    UnreliableAcked(u64),
    UnreliableLost(u64),
    ConnectionIdChanged(u32),
    KeysRotated(u32),
    ServerKeyLearnt,
    Denied(DenyReason),
    Disconnected {
        reason: DisconnectReason,
        by_peer: bool,
    },
}

/// Control frames waiting to be sent (each re-armed when its packet is lost).
#[derive(Debug, Default, Clone, Copy)]
struct PendingControl {
    crypto_test: bool,
    crypto_test_ack: Option<[u8; 16]>,
    reliable_handshake: bool,
    new_connection_id: bool,
    rekey_request: bool,
    rekey_response: bool,
    integrity_challenge: bool,
    integrity_answer: Option<IntegrityAnswer>,
}

/// A fragmented unreliable message whose pieces are in flight: it counts
/// as acknowledged only when every piece is, and as lost at the first lost
/// piece.
#[derive(Debug, Clone, Copy)]
struct FragmentedUnreliable {
    token: u64,
    /// Pieces sent and neither acknowledged nor lost.
    outstanding: u16,
    /// Every piece was sent.
    all_sent: bool,
    /// Already reported lost.
    failed: bool,
}

/// A peer address not yet proven after a path change. Until the peer
/// acknowledges a packet sent to the new address (it can only acknowledge
/// what it received there), at most [`PATH_AMPLIFICATION`] times the bytes
/// received from that address are sent to it: authentic packets re-sent
/// from a victim's address by an attacker on the path cannot turn the
/// server into an amplifier towards the victim.
#[derive(Debug, Clone, Copy)]
struct PathCheck {
    /// The first packet number sent to the new address.
    first_pn: u64,
    bytes_in: usize,
    bytes_out: usize,
}

/// Bytes sent to an unproven address per byte received from it (QUIC's
/// factor, RFC 9000 §8).
const PATH_AMPLIFICATION: usize = 3;

/// Limits on small queues that must not grow with a peer's behaviour.
const MAX_PENDING_PONGS: usize = 4;
/// Unreliable messages taken from one packet. A 1200-byte packet holds ~590 empty
/// unreliable messages (2 bytes each), each an event: room counted in bytes
/// alone does not bound the event queue.
pub const MAX_MESSAGES_PER_PACKET: usize = 64;
/// Message events queued for the application plus reliable messages
/// buffered out of order, per connection.
pub const MAX_QUEUED_MESSAGES: usize = 256;
/// Capacity the event queue and event bytes keep once drained (above it
/// they are shrunk, so a burst does not pin memory).
const EVENTS_RETAIN: usize = 64;
const EVENT_BYTES_RETAIN: usize = 4096;
/// Standalone Acks are sent at once after this many ack-eliciting packets.
const ACK_EAGERNESS: u32 = 2;

/// A connection, client or server side.
pub struct Connection {
    side: Side,
    config: Arc<TransportConfig>,
    state: State,
    connection_id: u32,
    /// Server: the id being handed to the client, used once acknowledged.
    pending_id: Option<u32>,
    peer: SocketAddr,
    /// Set while the current peer address is unproven (after a change).
    path_check: Option<PathCheck>,
    rng: ChaCha20Rng,
    keys: Option<Keys>,
    rekey: RekeyState,
    next_pn: u64,
    replay: ReplayWindow,
    /// Packets accepted in full: what acks report. A packet whose content
    /// was refused is in the replay window (it must never be processed
    /// twice) but not here, so the peer sends its content again.
    accepted: ReplayWindow,
    ack_pending: u32,
    ack_deadline: Option<Instant>,
    largest_recv_time: Option<Instant>,
    sent: SentPackets,
    largest_acked: Option<u64>,
    rto_backoff: u32,
    rtt: RttEstimator,
    congestion: Congestion,
    ordered_tx: ReliableSender,
    unordered_tx: ReliableSender,
    pending_pieces: VecDeque<PieceRef>,
    next_fragment_id: u16,
    unreliable: VecDeque<(u64, usize, usize)>,
    /// The front unreliable message is fragmented and partly written:
    /// (next piece, fragment id).
    unreliable_progress: Option<(u16, u16)>,
    /// Fragmented unreliable messages with pieces in flight.
    unreliable_frags: VecDeque<FragmentedUnreliable>,
    unreliable_bytes: Vec<u8>,
    next_token: u64,
    ordered_rx: OrderedReceiver,
    unordered_rx: UnorderedReceiver,
    reassembly: Reassembler,
    control: PendingControl,
    pongs: VecDeque<u32>,
    next_ping_id: u32,
    ping_sent: Option<(u32, Instant)>,
    ping_due: bool,
    last_ping: Instant,
    /// Server: the CryptoTest challenge echoed, re-sent if its packet is lost.
    crypto_ack_value: Option<[u8; 16]>,
    last_integrity_answer: Option<IntegrityAnswer>,
    last_recv: Instant,
    closing_reason: Option<DisconnectReason>,
    disconnect_sends: u8,
    integrity_table: Option<Arc<IntegrityTable>>,
    integrity_pending: Option<(IntegrityChallenge, Instant)>,
    next_integrity: Option<Instant>,
    events: VecDeque<EventRecord>,
    event_bytes: Vec<u8>,
    /// Message events in `events`.
    message_events: usize,
    /// The server key a `ServerKeyLearnt` event reports.
    learnt_server_key: [u8; 32],
    /// Message ids the peer buffers ahead (its ReliableHandshake; ours
    /// until then): pieces beyond it are not sent, since the peer would
    /// refuse them and every refusal costs a retry.
    peer_window: u64,
    /// Unreliable messages taken from the packet being processed.
    packet_messages: usize,
    stats: ConnectionStats,
    /// Server: the source address this connection was admitted under (its
    /// place in the per-address count of [`crate::endpoint::Admission`]),
    /// carried along when the connection moves to another core.
    pub(crate) admitted_ip: Option<std::net::IpAddr>,
}

#[cfg(feature = "hostile-peer")]
impl Connection {
    /// Attack tools only (`loadgen --attack`, feature `hostile-peer`):
    /// seals `frames` — frame bytes the caller encoded, any types, ids and
    /// lengths — as this client connection's next packet, bypassing every
    /// rule the connection keeps for itself (acks, flow control, fragment
    /// sizes). Needs keys (an established connection); returns the
    /// datagram's size in `out`, or `None` without keys, on the server
    /// side, or when it does not fit.
    pub fn seal_raw_frames(&mut self, frames: &[u8], out: &mut [u8]) -> Option<usize> {
        if self.side != Side::Client {
            return None;
        }
        let size = HEADER_LEN + frames.len() + TAG_LEN;
        if size > out.len() || size > self.config.mtu {
            return None;
        }
        let keys = self.keys.as_ref()?;
        let pn = self.next_pn;
        self.next_pn += 1;
        let mut flags = SEALED_FLAGS;
        flags.set(HeaderFlags::REKEY, keys.phase_bit());
        PacketHeader {
            connection_id: self.connection_id,
            channel: Channel::Unreliable,
            flags,
            sequence: pn,
        }
        .emit(&mut Packet::new_unchecked(&mut out[..HEADER_LEN]));
        let (head, rest) = out.split_at_mut(HEADER_LEN);
        rest[..frames.len()].copy_from_slice(frames);
        let tag = keys.send_key(Side::Client).seal(
            self.connection_id,
            pn,
            head,
            &mut rest[..frames.len()],
        );
        rest[frames.len()..frames.len() + TAG_LEN].copy_from_slice(&tag);
        Some(size)
    }
}

impl core::fmt::Debug for Connection {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Connection")
            .field("side", &self.side)
            .field("state", &self.state)
            .field(
                "connection_id",
                &format_args!("{:#010x}", self.connection_id),
            )
            .field("peer", &self.peer)
            .finish_non_exhaustive()
    }
}

impl Connection {
    fn new(
        side: Side,
        config: Arc<TransportConfig>,
        state: State,
        id: u32,
        peer: SocketAddr,
        seed: [u8; 32],
        now: Instant,
    ) -> Self {
        let congestion = Congestion::new(config.initial_window, config.min_window, config.mtu);
        Self {
            admitted_ip: None,
            side,
            state,
            connection_id: id,
            pending_id: None,
            peer,
            path_check: None,
            rng: ChaCha20Rng::from_seed(seed),
            keys: None,
            rekey: RekeyState {
                initiated: None,
                responded: None,
                request: None,
            },
            next_pn: 0,
            replay: ReplayWindow::new(),
            accepted: ReplayWindow::new(),
            ack_pending: 0,
            ack_deadline: None,
            largest_recv_time: None,
            sent: SentPackets::default(),
            largest_acked: None,
            rto_backoff: 0,
            rtt: RttEstimator::new(),
            congestion,
            ordered_tx: ReliableSender::new(Channel::ReliableOrdered),
            unordered_tx: ReliableSender::new(Channel::ReliableUnordered),
            pending_pieces: VecDeque::new(),
            next_fragment_id: 0,
            unreliable: VecDeque::new(),
            unreliable_progress: None,
            unreliable_frags: VecDeque::new(),
            unreliable_bytes: Vec::new(),
            next_token: 0,
            ordered_rx: OrderedReceiver::new(config.receive_window),
            unordered_rx: UnorderedReceiver::new(config.receive_window),
            reassembly: Reassembler::new(config.max_reassemblies),
            control: PendingControl::default(),
            pongs: VecDeque::new(),
            next_ping_id: 0,
            ping_sent: None,
            ping_due: false,
            last_ping: now,
            crypto_ack_value: None,
            last_integrity_answer: None,
            last_recv: now,
            closing_reason: None,
            disconnect_sends: 0,
            integrity_table: None,
            integrity_pending: None,
            next_integrity: None,
            events: VecDeque::new(),
            event_bytes: Vec::new(),
            message_events: 0,
            learnt_server_key: [0; 32],
            peer_window: config.receive_window,
            packet_messages: 0,
            stats: ConnectionStats::default(),
            config,
        }
    }

    /// Starts a client connection to `server`. The first `poll_transmit`
    /// yields the Connect.
    pub fn connect(
        config: ClientConfig,
        server: SocketAddr,
        now: Instant,
    ) -> Result<Self, SendError> {
        use crate::wire::control::{MAX_TICKET_PLAINTEXT_LEN, PROTOCOL_VERSION};
        if config.ticket.len() > MAX_TICKET_PLAINTEXT_LEN {
            return Err(SendError::TooLarge {
                max: MAX_TICKET_PLAINTEXT_LEN,
            });
        }
        let mut rng = ChaCha20Rng::from_seed(config.seed);
        let mut secret = [0u8; 32];
        rng.fill_bytes(&mut secret);
        let mut nonce = [0u8; 16];
        rng.fill_bytes(&mut nonce);
        let probe_id = rng.next_u32();
        let mut seed = [0u8; 32];
        rng.fill_bytes(&mut seed);
        let ephemeral = KeyPair::from_secret(secret);
        // Seal the ticket once under es (section 12 of PROTOCOL.md).
        let ticket = if config.ticket.is_empty() {
            Vec::new()
        } else {
            let ServerKey::Pinned(server_static) = config.server_key else {
                return Err(SendError::UnsealableTicket);
            };
            let es = ephemeral
                .agree(&server_static)
                .map_err(|_| SendError::UnsealableTicket)?;
            let aad = crate::crypto::ticket_aad(
                PROTOCOL_VERSION,
                crate::wire::control::KeyMode::Pinned,
                &ephemeral.public(),
                &nonce,
            );
            crate::crypto::seal_ticket(&es, &nonce, &aad, &config.ticket)
        };
        let initial = ClientInitial {
            ephemeral,
            nonce,
            ticket,
            server_key: config.server_key,
            probe_id,
            attempts: 0,
            next_send: now,
            deadline: now + config.transport.handshake_timeout,
        };
        let mut conn = Self::new(
            Side::Client,
            config.transport,
            State::ClientInitial(initial),
            probe_id,
            server,
            seed,
            now,
        );
        conn.integrity_table = config.integrity;
        Ok(conn)
    }

    /// A server connection for a client whose cookie verified, waiting for
    /// the application's decision (see [`crate::endpoint`]).
    pub(crate) fn new_server_pending(
        config: Arc<TransportConfig>,
        pending: PendingState,
        id: u32,
        peer: SocketAddr,
        seed: [u8; 32],
        integrity: Option<Arc<IntegrityTable>>,
        now: Instant,
    ) -> Self {
        let mut conn = Self::new(
            Side::Server,
            config,
            State::ServerPending(pending),
            id,
            peer,
            seed,
            now,
        );
        conn.integrity_table = integrity;
        conn
    }

    /// Server: the application accepted the ticket; derive keys and send
    /// ConnectionAccepted. Fails (and closes) if the client's key is bad.
    pub(crate) fn accept(
        &mut self,
        server_static: &KeyPair,
        params: AcceptedParams,
        now: Instant,
    ) -> bool {
        let State::ServerPending(pending) = core::mem::replace(&mut self.state, State::Closed)
        else {
            return false;
        };
        let mut secret = [0u8; 32];
        self.rng.fill_bytes(&mut secret);
        let mut nonce = [0u8; 16];
        self.rng.fill_bytes(&mut nonce);
        match pending.accept(
            self.connection_id,
            server_static,
            (KeyPair::from_secret(secret), nonce),
            params,
            self.config.handshake_timeout,
            now,
        ) {
            Ok((accepted, keys)) => {
                self.keys = Some(Keys {
                    generation: 0,
                    current: keys,
                    previous: None,
                    next: None,
                    since: now,
                    bytes: 0,
                });
                // Packet number 0 sealed the ConnectionAccepted.
                self.next_pn = 1;
                self.state = State::ServerAccepted(accepted);
                self.last_recv = now;
                true
            }
            Err(_) => false,
        }
    }

    /// Server: the client repeated its Connect: send ConnectionAccepted again.
    pub(crate) fn repeat_accepted(&mut self) {
        if let State::ServerAccepted(a) = &mut self.state {
            a.resend = true;
        }
    }

    /// Which end this is.
    pub fn side(&self) -> Side {
        self.side
    }

    /// The connection id in use.
    pub fn connection_id(&self) -> u32 {
        self.connection_id
    }

    /// The id this connection is moving to, while the client learns it.
    pub fn pending_connection_id(&self) -> Option<u32> {
        self.pending_id
    }

    /// The peer's address.
    pub fn remote_address(&self) -> SocketAddr {
        self.peer
    }

    /// Whether the handshake completed and the connection is open.
    pub fn is_established(&self) -> bool {
        matches!(self.state, State::Established)
    }

    /// Whether the connection is gone (nothing more to send or receive).
    pub fn is_closed(&self) -> bool {
        matches!(self.state, State::Closed)
    }

    /// Server: whether the application has yet to accept or refuse it.
    pub fn is_pending(&self) -> bool {
        matches!(self.state, State::ServerPending(_))
    }

    /// Whether it is closing or closed.
    pub fn is_closing(&self) -> bool {
        matches!(self.state, State::Closing { .. } | State::Closed)
    }

    /// Counters.
    pub fn stats(&self) -> ConnectionStats {
        let mut s = self.stats;
        s.congestion_window = self.congestion.window as u64;
        s.bytes_in_flight = self.sent.bytes_in_flight as u64;
        s.rtt_us = self.rtt.get().as_micros() as u64;
        s.rtt_var_us = self.rtt.variance.as_micros() as u64;
        s
    }

    /// Smoothed round-trip time.
    pub fn rtt(&self) -> Duration {
        self.rtt.get()
    }

    /// The current key generation.
    pub fn key_generation(&self) -> u32 {
        self.keys.as_ref().map_or(0, |k| k.generation)
    }

    /// Bytes this connection holds in buffers (capacity), for the
    /// per-connection memory measurement.
    pub fn memory_bytes(&self) -> usize {
        core::mem::size_of::<Self>()
            + self.sent.memory()
            + self.pending_pieces.capacity() * core::mem::size_of::<PieceRef>()
            + self.unreliable.capacity() * 24
            + self.unreliable_bytes.capacity()
            + self.reassembly.memory()
            + self.event_bytes.capacity()
            + self.events.capacity() * core::mem::size_of::<EventRecord>()
            + self.ordered_rx.memory()
            + self.ordered_tx.memory()
            + self.unordered_tx.memory()
            + self.unreliable_frags.capacity() * core::mem::size_of::<FragmentedUnreliable>()
            + self.pongs.capacity() * 4
            + self.config.receive_window.div_ceil(64) as usize * 8
    }

    /// [`Self::memory_bytes`] by part, for tests and docs/SECURITY.md.
    #[cfg(test)]
    pub(crate) fn memory_parts(&self) -> Vec<(&'static str, usize)> {
        vec![
            ("struct", core::mem::size_of::<Self>()),
            ("sent history", self.sent.memory()),
            (
                "pending pieces",
                self.pending_pieces.capacity() * core::mem::size_of::<PieceRef>(),
            ),
            (
                "unreliable queue",
                self.unreliable.capacity() * 24 + self.unreliable_bytes.capacity(),
            ),
            ("reassembly", self.reassembly.memory()),
            ("event bytes", self.event_bytes.capacity()),
            (
                "events",
                self.events.capacity() * core::mem::size_of::<EventRecord>(),
            ),
            ("ordered rx", self.ordered_rx.memory()),
            (
                "reliable tx",
                self.ordered_tx.memory() + self.unordered_tx.memory(),
            ),
        ]
    }

    /// Queues a message. Messages larger than one datagram are fragmented
    /// (up to `max_message_bytes`; unreliable pieces are sent once each).
    /// Returns a token: for unreliable messages it names the message in the
    /// `UnreliableAcked` / `UnreliableLost` events.
    pub fn send(&mut self, channel: Channel, data: &[u8]) -> Result<u64, SendError> {
        if self.is_closing() {
            return Err(SendError::Closed);
        }
        match channel {
            Channel::Unreliable => {
                // Larger than a datagram: sent as fragments, once.
                let max = self.config.max_message_bytes;
                if data.len() > max {
                    return Err(SendError::TooLarge { max });
                }
                // Stale state is worth less than fresh: drop the oldest while
                // the queue is over its count or its bytes (a peer that
                // acknowledges nothing keeps the congestion window shut, and
                // the queue must not grow with it).
                while self.unreliable.len() >= self.config.unreliable_queue_messages
                    || (!self.unreliable.is_empty()
                        && self.unreliable_queued_bytes() + data.len()
                            > self.config.unreliable_queue_bytes)
                {
                    if let Some((token, _, _)) = self.unreliable.pop_front() {
                        self.stats.unreliable_dropped += 1;
                        if self.unreliable_progress.take().is_some() {
                            // Partly sent: its pieces in flight can no longer
                            // make a whole message.
                            self.unreliable_piece_settled(token, false, true);
                        } else {
                            self.events.push_back(EventRecord::UnreliableLost(token));
                        }
                    }
                }
                self.compact_unreliable_bytes();
                let token = self.next_token;
                self.next_token += 1;
                let start = self.unreliable_bytes.len();
                reliable::extend_bounded(
                    &mut self.unreliable_bytes,
                    data,
                    self.config.unreliable_queue_bytes,
                );
                self.unreliable.push_back((token, start, data.len()));
                Ok(token)
            }
            Channel::ReliableOrdered | Channel::ReliableUnordered => {
                let max = self.config.max_message_bytes;
                if data.len() > max {
                    return Err(SendError::TooLarge { max });
                }
                // Queued bytes include each message's slot (SEND_SLOT_COST).
                let queued = self.ordered_tx.bytes_queued() + self.unordered_tx.bytes_queued();
                let sender = if channel == Channel::ReliableOrdered {
                    &mut self.ordered_tx
                } else {
                    &mut self.unordered_tx
                };
                if sender.len() >= self.config.send_queue_messages
                    || queued + data.len() + reliable::SEND_SLOT_COST > self.config.send_queue_bytes
                {
                    return Err(SendError::QueueFull);
                }
                let max_unfragmented = self.config.max_unfragmented();
                Ok(sender.push(
                    data,
                    max_unfragmented,
                    &mut self.next_fragment_id,
                    &mut self.pending_pieces,
                ))
            }
        }
    }

    /// Bytes of unreliable messages still queued.
    fn unreliable_queued_bytes(&self) -> usize {
        self.unreliable
            .front()
            .map_or(0, |&(_, start, _)| self.unreliable_bytes.len() - start)
    }

    /// Drops the bytes of unreliable messages already sent or dropped: the
    /// buffer used to be reset only when the queue ran empty, which a peer
    /// that never acknowledges prevents forever. In steady state the queue
    /// empties every tick and this is a `clear`; under a backlog it moves at
    /// most `unreliable_queue_bytes`.
    fn compact_unreliable_bytes(&mut self) {
        let Some(&(_, dead, _)) = self.unreliable.front() else {
            self.unreliable_bytes.clear();
            return;
        };
        if dead > 0 {
            self.unreliable_bytes.drain(..dead);
            for m in &mut self.unreliable {
                m.1 -= dead;
            }
        }
    }

    /// Closes the connection: a Disconnect goes to the peer.
    pub fn close(&mut self, now: Instant, reason: DisconnectReason) {
        if self.is_closing() {
            return;
        }
        self.events.push_back(EventRecord::Disconnected {
            reason,
            by_peer: false,
        });
        if self.keys.is_some() {
            self.closing_reason = Some(reason);
            // Three retransmission timeouts, capped like every RTO: the
            // peer controls its measured RTT (it can delay its acks), and
            // an uncapped RTO let a closed connection hold its slot for
            // minutes (found by loadgen --attack rtt-inflation).
            self.state = State::Closing {
                until: now + self.current_rto() * 3,
            };
        } else {
            self.state = State::Closed;
        }
    }

    /// Server: start moving the connection to `new_id` (another core's id).
    /// The client is told with a NewConnectionId frame; this side keeps
    /// using the old id until that frame is acknowledged.
    pub fn migrate_to(&mut self, new_id: u32) {
        if self.side == Side::Server && new_id != self.connection_id {
            self.pending_id = Some(new_id);
            self.control.new_connection_id = true;
        }
    }

    /// Pops the next event. Message bytes stay valid until the next call.
    pub fn poll_event(&mut self) -> Option<Event<'_>> {
        let Some(record) = self.events.pop_front() else {
            self.event_bytes.clear();
            return None;
        };
        Some(match record {
            EventRecord::Connected => Event::Connected,
            EventRecord::Message {
                channel,
                start,
                len,
            } => {
                self.message_events -= 1;
                let (start, len) = (start as usize, len as usize);
                Event::Message {
                    channel,
                    data: &self.event_bytes[start..start + len],
                }
            }
            EventRecord::UnreliableAcked(token) => Event::UnreliableAcked { token },
            EventRecord::UnreliableLost(token) => Event::UnreliableLost { token },
            EventRecord::ConnectionIdChanged(connection_id) => {
                Event::ConnectionIdChanged { connection_id }
            }
            EventRecord::KeysRotated(generation) => Event::KeysRotated { generation },
            EventRecord::ServerKeyLearnt => Event::ServerKeyLearnt {
                key: self.learnt_server_key,
            },
            EventRecord::Denied(reason) => Event::Denied { reason },
            EventRecord::Disconnected { reason, by_peer } => {
                Event::Disconnected { reason, by_peer }
            }
        })
    }

    /// Message bytes of events already polled are dead once every event is
    /// gone: no `Event` can still borrow them while we hold `&mut self`.
    fn reclaim_event_bytes(&mut self) {
        if self.events.is_empty() {
            self.event_bytes.clear();
            // A burst (or a hostile peer) may have grown them; steady state
            // stays below the retained sizes and allocates nothing.
            if self.event_bytes.capacity() > EVENT_BYTES_RETAIN {
                self.event_bytes.shrink_to(EVENT_BYTES_RETAIN);
            }
            if self.events.capacity() > EVENTS_RETAIN * 2 {
                self.events.shrink_to(EVENTS_RETAIN);
            }
        }
    }

    /// Whether events are waiting.
    pub fn has_events(&self) -> bool {
        !self.events.is_empty()
    }

    // ----------------------------------------------------------------- receive

    /// Feeds a datagram that arrived from `from`. It is decrypted in place.
    /// Anything invalid is dropped and counted; nothing here panics.
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddr, datagram: &mut [u8]) {
        self.reclaim_event_bytes();
        match datagram::classify(datagram) {
            Ok(Datagram::Handshake(header, hs)) => {
                self.handle_handshake(now, from, header, hs, datagram)
            }
            Ok(Datagram::Sealed { header, .. }) => self.handle_sealed(now, from, header, datagram),
            Err(_) => self.stats.decode_errors += 1,
        }
    }

    fn handle_handshake(
        &mut self,
        now: Instant,
        from: SocketAddr,
        header: PacketHeader,
        hs: Handshake<'_>,
        datagram: &[u8],
    ) {
        if self.side == Side::Server || from != self.peer {
            self.stats.decode_errors += 1;
            return;
        }
        match (core::mem::replace(&mut self.state, State::Closed), hs) {
            (State::ClientInitial(initial), Handshake::Cookie(cookie)) => {
                self.connection_id = cookie.connection_id;
                self.state = State::ClientCookie(initial.with_cookie(cookie, now));
            }
            (State::ClientCookie(waiting), Handshake::Accepted(accepted))
                if header.connection_id == waiting.cookie.connection_id =>
            {
                let mut challenge = [0u8; 16];
                self.rng.fill_bytes(&mut challenge);
                match waiting.accept(datagram, &header, &accepted, challenge) {
                    Ok(done) => {
                        if accepted.server_static.is_some() {
                            self.events.push_back(EventRecord::ServerKeyLearnt);
                            self.learnt_server_key = done.server_static;
                        }
                        self.keys = Some(Keys {
                            generation: 0,
                            current: done.keys,
                            previous: None,
                            next: None,
                            since: now,
                            bytes: 0,
                        });
                        // The server sealed ConnectionAccepted with its packet 0.
                        self.replay.commit(header.sequence);
                        self.accepted.commit(header.sequence);
                        self.apply_params(done.params);
                        self.control.crypto_test = true;
                        self.last_recv = now;
                        self.state = State::ClientKeyed(done.keyed);
                    }
                    Err(failed) => {
                        let (waiting, _) = *failed;
                        self.stats.auth_failures += 1;
                        self.state = State::ClientCookie(waiting);
                    }
                }
            }
            (state @ (State::ClientInitial(_) | State::ClientCookie(_)), Handshake::Denied(d)) => {
                let _ = state;
                self.events.push_back(EventRecord::Denied(d.reason));
                self.state = State::Closed;
            }
            (state, _) => {
                self.state = state;
                self.stats.decode_errors += 1;
            }
        }
    }

    fn apply_params(&mut self, params: AcceptedParams) {
        // The server's heartbeat settings govern both ends.
        if params.heartbeat_timeout_ms > 0 && params.heartbeat_interval_ms > 0 {
            let mut cfg = (*self.config).clone();
            cfg.heartbeat_interval = Duration::from_millis(u64::from(params.heartbeat_interval_ms));
            cfg.idle_timeout = Duration::from_millis(u64::from(params.heartbeat_timeout_ms));
            self.config = Arc::new(cfg);
        }
    }

    fn handle_sealed(
        &mut self,
        now: Instant,
        from: SocketAddr,
        header: PacketHeader,
        datagram: &mut [u8],
    ) {
        let side = self.side;
        let Some(keys) = self.keys.as_mut() else {
            self.stats.decode_errors += 1;
            return;
        };
        if matches!(self.state, State::Closed) {
            return;
        }
        if let Err(_e) = self.replay.check(header.sequence) {
            self.stats.replays += 1;
            return;
        }
        let (aad, body) = datagram.split_at_mut(HEADER_LEN);
        let phase = header.flags.contains(HeaderFlags::REKEY);
        // Pick the key generation by the phase bit: current, the next one a
        // rekey installed, or the previous one during its grace period.
        let mut promoted = false;
        let opened = if phase == keys.phase_bit() {
            recv_key(&keys.current, side).open(header.connection_id, header.sequence, aad, body)
        } else if let Some(next) = &keys.next {
            let r = recv_key(next, side).open(header.connection_id, header.sequence, aad, body);
            promoted = r.is_ok();
            r
        } else if let Some((prev, until)) = &keys.previous {
            if now < *until {
                recv_key(prev, side).open(header.connection_id, header.sequence, aad, body)
            } else {
                Err(crate::crypto::OpenError)
            }
        } else {
            Err(crate::crypto::OpenError)
        };
        let Ok(plain_len) = opened else {
            self.stats.auth_failures += 1;
            return;
        };
        // Authentic from here on. Only the newest packet may move the peer
        // (read before the commit below records it).
        let newest = self
            .replay
            .largest()
            .is_none_or(|largest| header.sequence > largest);
        self.replay.commit(header.sequence);
        if promoted {
            self.promote_next_keys(now);
        }
        if let Some(k) = self.keys.as_mut() {
            k.bytes += datagram.len() as u64;
        }
        self.stats.packets_received += 1;
        self.stats.bytes_received += datagram.len() as u64;
        self.last_recv = now;
        if from != self.peer {
            if newest {
                // A verified packet, newer than any seen, from a new
                // address: NAT rebinding. An older one is a reordered or
                // replayed copy (an attacker on the path can re-send
                // authentic packets from any source) and must not pull the
                // connection back or away. The new address is unproven:
                // see `PathCheck`.
                self.peer = from;
                self.stats.path_changes += 1;
                self.path_check = Some(PathCheck {
                    first_pn: self.next_pn,
                    bytes_in: datagram.len(),
                    bytes_out: 0,
                });
            }
        } else if let Some(p) = self.path_check.as_mut() {
            p.bytes_in = p.bytes_in.saturating_add(datagram.len());
        }
        let (ack_eliciting, refused) = if header.flags.contains(HeaderFlags::COMPRESSED) {
            // Only compressed packets pay for the scratch buffer.
            let mut scratch = [0u8; MAX_DECOMPRESSED];
            match compress::decompress_into(
                &datagram[HEADER_LEN..HEADER_LEN + plain_len],
                &mut scratch,
                MAX_DECOMPRESSED,
            ) {
                Ok(n) => self.process_frames(now, &scratch[..n]),
                Err(_) => {
                    self.stats.decode_errors += 1;
                    return;
                }
            }
        } else {
            self.process_frames(now, &datagram[HEADER_LEN..HEADER_LEN + plain_len])
        };
        if refused {
            // Not acknowledging makes the peer send the refused content
            // again, in a new packet, once we have room.
            self.stats.refused_packets += 1;
            return;
        }
        self.accepted.commit(header.sequence);
        if self.largest_recv_time.is_none() || self.accepted.largest() == Some(header.sequence) {
            self.largest_recv_time = Some(now);
        }
        if ack_eliciting {
            self.ack_pending += 1;
            if self.ack_deadline.is_none() {
                self.ack_deadline = Some(now + self.config.ack_delay);
            }
        }
    }

    /// Processes the frames of an authentic packet. Returns (ack-eliciting,
    /// refused): refused when reliable content could not be taken.
    fn process_frames(&mut self, now: Instant, plain: &[u8]) -> (bool, bool) {
        self.packet_messages = 0;
        let mut ack_eliciting = false;
        let mut refused = false;
        let sender = self.side.peer();
        for frame in Frames::new(plain, self.config.mtu * 2) {
            let Ok(frame) = frame else {
                self.stats.decode_errors += 1;
                break;
            };
            let decoded = match datagram::decode_frame(&frame, sender) {
                Ok(f) => f,
                Err(_) => {
                    // Rejected alone; the next frame is found by length.
                    self.stats.decode_errors += 1;
                    continue;
                }
            };
            if !matches!(decoded, AnyFrame::Ack(_)) {
                ack_eliciting = true;
            }
            match decoded {
                AnyFrame::Ack(ack) => self.on_ack(now, ack),
                AnyFrame::Ping(p) => {
                    if self.pongs.len() < MAX_PENDING_PONGS {
                        self.pongs.push_back(p.id);
                    }
                }
                AnyFrame::Pong(p) => {
                    if let Some((id, at)) = self.ping_sent {
                        if id == p.id {
                            self.rtt.sample(now.saturating_duration_since(at));
                            self.ping_sent = None;
                        }
                    }
                }
                AnyFrame::Disconnect(d) => {
                    if !self.is_closing() {
                        self.events.push_back(EventRecord::Disconnected {
                            reason: d.reason,
                            by_peer: true,
                        });
                    }
                    self.state = State::Closed;
                    return (false, false);
                }
                AnyFrame::Message(m) => {
                    if !self.accept_message(m.channel, m.message_id, m.data) {
                        refused = true;
                    }
                }
                AnyFrame::Fragment(f) => {
                    if !self.accept_fragment(now, &f) {
                        refused = true;
                    }
                }
                AnyFrame::CryptoTest(t) if self.side == Side::Server => {
                    if let State::ServerAccepted(_) = self.state {
                        self.establish(now);
                    }
                    self.control.crypto_test_ack = Some(t.challenge);
                    self.crypto_ack_value = Some(t.challenge);
                }
                AnyFrame::CryptoTestAck(t) if self.side == Side::Client => {
                    if let State::ClientKeyed(k) = &self.state {
                        if k.challenge == t.challenge {
                            self.establish(now);
                        }
                    }
                }
                AnyFrame::ReliableHandshake(r) => {
                    self.peer_window = u64::from(r.receive_window).max(1);
                }
                AnyFrame::IntegrityChallenge(c) if self.side == Side::Client => {
                    let key = self
                        .integrity_table
                        .as_ref()
                        .filter(|t| t.version() == c.table_version)
                        .and_then(|t| t.entry(c.index));
                    self.control.integrity_answer = Some(IntegrityAnswer {
                        index: c.index,
                        key: key.unwrap_or([0; 16]),
                    });
                }
                AnyFrame::IntegrityAnswer(a) if self.side == Side::Server => {
                    self.on_integrity_answer(now, a)
                }
                AnyFrame::RekeyRequest(r) if self.side == Side::Client => self.on_rekey_request(r),
                AnyFrame::RekeyResponse(r) if self.side == Side::Server => {
                    self.on_rekey_response(now, r)
                }
                AnyFrame::NewConnectionId(n) if self.side == Side::Client => {
                    if n.connection_id != self.connection_id {
                        self.connection_id = n.connection_id;
                        self.events
                            .push_back(EventRecord::ConnectionIdChanged(n.connection_id));
                    }
                }
                AnyFrame::Unknown(_) => {}
                _ => {
                    // A frame the peer's role must not send.
                    self.stats.decode_errors += 1;
                }
            }
        }
        (ack_eliciting, refused)
    }

    fn establish(&mut self, now: Instant) {
        self.state = State::Established;
        self.events.push_back(EventRecord::Connected);
        self.control.reliable_handshake = true;
        self.last_ping = now;
        if self.side == Side::Server && self.integrity_table.is_some() {
            self.start_integrity_check(now);
        }
    }

    fn receive_room(&self, len: usize) -> bool {
        self.received_bytes() + len <= self.config.receive_buffer_bytes
    }

    /// Received bytes held: the data part of the memory budget.
    fn received_bytes(&self) -> usize {
        self.event_bytes.len() + self.ordered_rx.buffered_bytes() + self.reassembly.held_bytes()
    }

    /// Whether one more message may be taken (counts, not bytes: see
    /// [`MAX_MESSAGES_PER_PACKET`]).
    ///
    /// The per-packet count applies to unreliable messages only: refusing a
    /// reliable message leaves its whole packet unacknowledged, and an
    /// honest sender packing many small reliable messages would then be
    /// refused on every retransmission until it gave up. Reliable messages
    /// are bounded by the queue count (and by the receive window and bytes).
    fn message_room(&self, channel: Channel) -> bool {
        (channel != Channel::Unreliable || self.packet_messages < MAX_MESSAGES_PER_PACKET)
            && self.message_events + self.ordered_rx.buffered_count() < MAX_QUEUED_MESSAGES
    }

    fn push_message_event(&mut self, channel: Channel, data: &[u8]) {
        self.message_events += 1;
        let start = self.event_bytes.len();
        reliable::extend_bounded(
            &mut self.event_bytes,
            data,
            self.config.receive_buffer_bytes,
        );
        // Both fit: event bytes stay under `receive_buffer_bytes`.
        self.events.push_back(EventRecord::Message {
            channel,
            start: start as u32,
            len: data.len() as u32,
        });
    }

    /// Takes a received message; returns false if it must be refused.
    fn accept_message(&mut self, channel: Channel, id: u64, data: &[u8]) -> bool {
        if self.is_closing() {
            return true;
        }
        if !self.message_room(channel) {
            self.stats.events_dropped += 1;
            // Unreliable: dropped (as when out of bytes). Reliable: refused,
            // so not acknowledged, and the peer sends it again later.
            return channel == Channel::Unreliable;
        }
        if channel == Channel::Unreliable {
            self.packet_messages += 1;
        }
        match channel {
            Channel::Unreliable => {
                if self.receive_room(data.len()) {
                    self.push_message_event(channel, data);
                } else {
                    self.stats.refused_packets += 1;
                }
                true
            }
            Channel::ReliableUnordered => {
                if !self.receive_room(data.len()) {
                    return false;
                }
                match self.unordered_rx.arrive(id) {
                    Arrival::Deliver => {
                        self.push_message_event(channel, data);
                        true
                    }
                    Arrival::Duplicate => true,
                    Arrival::Buffered | Arrival::Refused => false,
                }
            }
            Channel::ReliableOrdered => {
                if !self.receive_room(data.len()) {
                    return false;
                }
                let room = self
                    .config
                    .receive_buffer_bytes
                    .saturating_sub(self.event_bytes.len() + self.reassembly.held_bytes());
                match self.ordered_rx.arrive(id, data, room) {
                    Arrival::Deliver => {
                        self.push_message_event(channel, data);
                        self.ordered_rx.delivered();
                        while let Some(buf) = self.ordered_rx.pop_ready() {
                            self.push_message_event(channel, &buf);
                            self.ordered_rx.recycle(buf);
                        }
                        true
                    }
                    Arrival::Buffered | Arrival::Duplicate => true,
                    Arrival::Refused => false,
                }
            }
        }
    }

    fn accept_fragment(&mut self, now: Instant, f: &Fragment<'_>) -> bool {
        // Pieces of a reliable message already delivered need no reassembly
        // (they come again when only an ack was lost).
        let done = match f.channel {
            Channel::ReliableOrdered => self.ordered_rx.is_done(f.message_id),
            Channel::ReliableUnordered => self.unordered_rx.is_done(f.message_id),
            Channel::Unreliable => false,
        };
        if done {
            return true;
        }
        // A piece of a message being reassembled is charged to the receive
        // budget like any held message (refused, so sent again, when full).
        if !self.receive_room(f.data.len()) {
            self.stats.fragments_dropped += 1;
            return false;
        }
        // The largest message received is what the budget can hold.
        let max = self
            .config
            .max_message_bytes
            .min(self.config.receive_buffer_bytes);
        match self.reassembly.add(
            now,
            f.channel,
            f.message_id,
            f.fragment_id,
            f.index,
            f.total_size,
            f.data,
            max,
        ) {
            Ok(None) => true,
            Ok(Some(slot)) => {
                let (channel, id) = {
                    let r = self.reassembly.complete(slot);
                    (r.channel.unwrap_or(f.channel), r.message_id)
                };
                let data = self.reassembly.take_data(slot);
                let ok = self.accept_message(channel, id, &data);
                self.reassembly.put_data(slot, data);
                if ok {
                    self.reassembly.release(slot);
                }
                ok
            }
            Err(reliable::FragmentError::Invalid) => {
                self.stats.fragments_dropped += 1;
                true
            }
            Err(reliable::FragmentError::TooManyReassemblies) => {
                self.stats.fragments_dropped += 1;
                // Refused, so not acknowledged: a reliable piece comes
                // again, and an unreliable message is reported lost rather
                // than acknowledged without being delivered.
                false
            }
        }
    }

    fn on_ack(&mut self, now: Instant, ack: Ack) {
        let Some(largest_sent) = self.sent.largest_pn() else {
            return;
        };
        if ack.largest > largest_sent {
            // Acknowledges a packet never sent: a broken or malicious peer.
            self.stats.decode_errors += 1;
            return;
        }
        let newly_largest = self.largest_acked.is_none_or(|l| ack.largest > l);
        if newly_largest {
            self.largest_acked = Some(ack.largest);
        }
        // Walk only the packets still tracked (the oldest unsettled one
        // onwards), not all 65 numbers the ack could name: in steady state
        // that is the one or two packets sent since the last ack.
        let lowest = ack.largest.saturating_sub(64);
        let mut newly = [0u64; 65];
        let mut n = 0;
        for p in self.sent.iter_mut() {
            if p.pn > ack.largest {
                break;
            }
            if p.pn < lowest || p.acked || p.lost || !ack.acks(p.pn) {
                continue;
            }
            p.acked = true;
            newly[n] = p.pn;
            n += 1;
        }
        let acked_any = n > 0;
        if self
            .path_check
            .is_some_and(|p| newly[..n].iter().any(|&pn| pn >= p.first_pn))
        {
            // The peer received a packet sent to its new address.
            self.path_check = None;
        }
        for &pn in &newly[..n] {
            if let Some(packet) = self.sent.get_mut(pn).map(|p| *p) {
                self.on_packet_acked(
                    now,
                    &packet,
                    newly_largest && pn == ack.largest,
                    ack.delay_us,
                );
            }
        }
        if acked_any {
            self.rto_backoff = 0;
        }
        self.detect_losses(now);
        self.sent.compact();
    }

    fn on_packet_acked(
        &mut self,
        now: Instant,
        packet: &SentPacket,
        rtt_sample: bool,
        delay_us: u32,
    ) {
        if packet.ack_eliciting {
            self.sent.bytes_in_flight -= usize::from(packet.bytes);
            self.congestion
                .on_ack(usize::from(packet.bytes), packet.time);
            if rtt_sample {
                let raw = now.saturating_duration_since(packet.time);
                let delay =
                    Duration::from_micros(u64::from(delay_us)).min(self.config.ack_delay * 4);
                self.rtt
                    .sample(raw.saturating_sub(delay).max(Duration::from_micros(1)));
            }
        }
        for i in 0..u64::from(packet.frame_count) {
            match self.sent.frame(packet.first_frame + i) {
                Some(SentFrame::Piece(p)) => {
                    let sender = if p.channel == Channel::ReliableOrdered {
                        &mut self.ordered_tx
                    } else {
                        &mut self.unordered_tx
                    };
                    sender.ack(p.id, p.piece);
                }
                Some(SentFrame::Unreliable(token)) => {
                    self.events.push_back(EventRecord::UnreliableAcked(token))
                }
                Some(SentFrame::UnreliablePiece(token)) => {
                    self.unreliable_piece_settled(token, true, false)
                }
                Some(SentFrame::Control(ControlKind::NewConnectionId)) => {
                    if let Some(id) = self.pending_id.take() {
                        self.connection_id = id;
                    }
                }
                Some(SentFrame::Control(_)) | None => {}
            }
        }
    }

    fn detect_losses(&mut self, now: Instant) {
        let Some(largest) = self.largest_acked else {
            return;
        };
        let threshold = (self.rtt.get() * 9 / 8).max(Duration::from_millis(1));
        let mut lost = [0u64; 64];
        let mut n = 0;
        for p in self.sent.iter_mut() {
            if p.pn >= largest {
                break;
            }
            if p.acked || p.lost {
                continue;
            }
            let by_count = largest - p.pn >= 3;
            let by_time = now.saturating_duration_since(p.time) >= threshold;
            let unackable = largest - p.pn > 64;
            if by_count || by_time || unackable {
                p.lost = true;
                lost[n] = p.pn;
                n += 1;
                if n == lost.len() {
                    break;
                }
            }
        }
        for &pn in &lost[..n] {
            self.on_packet_lost(now, pn);
        }
    }

    fn on_packet_lost(&mut self, now: Instant, pn: u64) {
        let Some(packet) = self.sent.get_mut(pn).map(|p| *p) else {
            return;
        };
        self.stats.packets_lost += 1;
        if packet.ack_eliciting {
            self.sent.bytes_in_flight -= usize::from(packet.bytes);
            self.congestion.on_loss(now, packet.time);
        }
        // Re-queue in reverse so the oldest content goes out first.
        for i in (0..u64::from(packet.frame_count)).rev() {
            match self.sent.frame(packet.first_frame + i) {
                Some(SentFrame::Piece(p)) => {
                    let sender = if p.channel == Channel::ReliableOrdered {
                        &mut self.ordered_tx
                    } else {
                        &mut self.unordered_tx
                    };
                    let Some(slot) = sender.slot_mut(p.id) else {
                        continue;
                    };
                    let Some(state) = slot.pieces.get_mut(usize::from(p.piece)) else {
                        continue;
                    };
                    if state.acked {
                        continue;
                    }
                    state.in_flight = false;
                    state.losses += 1;
                    if state.losses > self.config.max_retries {
                        self.close(now, DisconnectReason::TooManyRetries);
                        return;
                    }
                    self.pending_pieces.push_front(p);
                }
                Some(SentFrame::Unreliable(token)) => {
                    self.events.push_back(EventRecord::UnreliableLost(token))
                }
                Some(SentFrame::UnreliablePiece(token)) => {
                    self.unreliable_piece_settled(token, false, false)
                }
                Some(SentFrame::Control(kind)) => self.rearm_control(kind),
                None => {}
            }
        }
    }

    fn rearm_control(&mut self, kind: ControlKind) {
        match kind {
            ControlKind::CryptoTest => {
                self.control.crypto_test = matches!(self.state, State::ClientKeyed(_))
            }
            ControlKind::CryptoTestAck => {
                if !self.is_closing() {
                    self.control.crypto_test_ack = self.crypto_ack_value;
                }
            }
            ControlKind::ReliableHandshake => self.control.reliable_handshake = true,
            ControlKind::NewConnectionId => {
                self.control.new_connection_id = self.pending_id.is_some()
            }
            ControlKind::RekeyRequest => {
                self.control.rekey_request = self.rekey.initiated.is_some()
            }
            ControlKind::RekeyResponse => {
                self.control.rekey_response = self.rekey.responded.is_some()
            }
            ControlKind::IntegrityChallenge => {
                self.control.integrity_challenge = self.integrity_pending.is_some()
            }
            ControlKind::IntegrityAnswer => {
                self.control.integrity_answer = self.last_integrity_answer
            }
        }
    }

    // ------------------------------------------------------------ rekey etc.

    fn should_rekey(&self, now: Instant) -> bool {
        let Some(k) = &self.keys else { return false };
        self.side == Side::Server
            && matches!(self.state, State::Established)
            && k.previous.is_none()
            && self.rekey.initiated.is_none()
            && (k.bytes >= self.config.rekey_after_bytes
                || now.saturating_duration_since(k.since) >= self.config.rekey_after)
    }

    fn start_rekey(&mut self) {
        let Some(k) = &self.keys else { return };
        let phase = (k.generation + 1) as u8;
        let mut secret = [0u8; 32];
        self.rng.fill_bytes(&mut secret);
        let mut nonce = [0u8; 16];
        self.rng.fill_bytes(&mut nonce);
        let pair = KeyPair::from_secret(secret);
        self.rekey.request = Some(RekeyRequest {
            phase,
            public: pair.public(),
            nonce,
        });
        self.rekey.initiated = Some((phase, pair, nonce));
        self.control.rekey_request = true;
    }

    fn on_rekey_request(&mut self, r: RekeyRequest) {
        let Some(k) = &self.keys else { return };
        if let Some(resp) = self.rekey.responded {
            if resp.phase == r.phase {
                // A repeat: the response was lost or not yet acknowledged.
                self.control.rekey_response = true;
                return;
            }
        }
        if r.phase != (k.generation + 1) as u8 || k.next.is_some() {
            self.stats.decode_errors += 1;
            return;
        }
        let mut secret = [0u8; 32];
        self.rng.fill_bytes(&mut secret);
        let mut nonce = [0u8; 16];
        self.rng.fill_bytes(&mut nonce);
        let pair = KeyPair::from_secret(secret);
        let Ok(ee) = pair.agree(&r.public) else {
            self.stats.decode_errors += 1;
            return;
        };
        let next = KeySet::rekey(&ee, &k.current.chain, &r.nonce, &nonce);
        if let Some(k) = self.keys.as_mut() {
            k.next = Some(next);
        }
        self.rekey.responded = Some(RekeyResponse {
            phase: r.phase,
            public: pair.public(),
            nonce,
        });
        self.control.rekey_response = true;
    }

    fn on_rekey_response(&mut self, now: Instant, r: RekeyResponse) {
        let Some((phase, pair, nonce)) = self.rekey.initiated.take() else {
            return;
        };
        if phase != r.phase {
            self.rekey.initiated = Some((phase, pair, nonce));
            return;
        }
        let Some(k) = self.keys.as_ref() else { return };
        let Ok(ee) = pair.agree(&r.public) else {
            self.stats.decode_errors += 1;
            return;
        };
        let next = KeySet::rekey(&ee, &k.current.chain, &nonce, &r.nonce);
        if let Some(k) = self.keys.as_mut() {
            k.next = Some(next);
        }
        self.rekey.request = None;
        self.control.rekey_request = false;
        // The responder already holds the new keys: switch sending now.
        self.promote_next_keys(now);
    }

    fn promote_next_keys(&mut self, now: Instant) {
        let grace = self.config.rekey_grace;
        let Some(k) = self.keys.as_mut() else { return };
        let Some(next) = k.next.take() else { return };
        let old = core::mem::replace(&mut k.current, next);
        k.previous = Some((old, now + grace));
        k.generation += 1;
        k.since = now;
        k.bytes = 0;
        self.stats.rekeys += 1;
        self.events
            .push_back(EventRecord::KeysRotated(k.generation));
    }

    fn start_integrity_check(&mut self, now: Instant) {
        let Some(table) = &self.integrity_table else {
            return;
        };
        let index = (self.rng.next_u32() % u32::from(crate::integrity::TABLE_LEN)) as u16;
        let challenge = IntegrityChallenge {
            table_version: table.version(),
            index,
        };
        self.integrity_pending = Some((challenge, now + self.config.integrity_answer_timeout));
        self.control.integrity_challenge = true;
        self.next_integrity = self.config.integrity_interval.map(|i| now + i);
    }

    fn on_integrity_answer(&mut self, now: Instant, a: IntegrityAnswer) {
        let Some((challenge, _)) = self.integrity_pending else {
            return;
        };
        let ok = a.index == challenge.index
            && self
                .integrity_table
                .as_ref()
                .is_some_and(|t| t.check(a.index, &a.key));
        if ok {
            self.integrity_pending = None;
            self.control.integrity_challenge = false;
        } else {
            self.close(now, DisconnectReason::IntegrityFailed);
        }
    }

    // ----------------------------------------------------------------- timers

    /// The next instant `handle_timeout` must be called.
    pub fn next_timeout(&self) -> Option<Instant> {
        self.timers().next_timeout()
    }

    /// Every deadline of the connection, from its state: the one place
    /// where when-is-what-due is defined (both `next_timeout` and
    /// `handle_timeout` read it).
    pub(crate) fn timers(&self) -> TimerTable {
        let mut t = TimerTable::default();
        match &self.state {
            State::Closed => return t,
            State::Closing { until } => {
                t.set(Timer::Close, *until);
                return t;
            }
            State::ClientInitial(s) => {
                t.set(Timer::HandshakeResend, s.next_send);
                t.set(Timer::HandshakeDeadline, s.deadline);
            }
            State::ClientCookie(s) => {
                t.set(Timer::HandshakeResend, s.inner.next_send);
                t.set(Timer::HandshakeDeadline, s.inner.deadline);
            }
            State::ServerPending(p) => t.set(Timer::HandshakeDeadline, p.deadline),
            State::ServerAccepted(a) => t.set(Timer::HandshakeDeadline, a.deadline),
            State::ClientKeyed(_) | State::Established => {}
        }
        t.set(Timer::Idle, self.last_recv + self.config.idle_timeout);
        if let Some(k) = &self.keys {
            if matches!(self.state, State::Established) {
                t.set(
                    Timer::KeepAlive,
                    self.last_ping + self.config.heartbeat_interval,
                );
            }
            if let Some(d) = self.ack_deadline {
                t.set(Timer::Ack, d);
            }
            if let Some(p) = self.sent.oldest_in_flight() {
                t.set(Timer::Rto, p.time + self.current_rto());
            }
            if let Some(e) = self.reassembly.next_expiry(self.config.fragment_timeout) {
                t.set(Timer::Reassembly, e);
            }
            if let Some((_, until)) = &k.previous {
                t.set(Timer::KeyDiscard, *until);
            }
            if self.side == Side::Server {
                t.set(Timer::Rekey, k.since + self.config.rekey_after);
            }
            if let Some((_, deadline)) = &self.integrity_pending {
                t.set(Timer::IntegrityAnswer, *deadline);
            }
            if let Some(n) = self.next_integrity {
                t.set(Timer::IntegrityNext, n);
            }
        }
        t
    }

    fn current_rto(&self) -> Duration {
        let base = self.rtt.rto(self.config.rto_min);
        (base * 2u32.saturating_pow(self.rto_backoff.min(16)))
            .min(self.config.rto_max.max(self.config.rto_min))
    }

    /// Runs the timers that are due.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.reclaim_event_bytes();
        let timers = self.timers();
        match &self.state {
            State::Closed => return,
            State::Closing { .. } => {
                if timers.is_expired(Timer::Close, now) {
                    self.state = State::Closed;
                }
                return;
            }
            _ if timers.is_expired(Timer::HandshakeDeadline, now) => {
                return self.fail_handshake();
            }
            _ => {}
        }
        if timers.is_expired(Timer::Idle, now) {
            self.close(now, DisconnectReason::Timeout);
            return;
        }
        if timers.is_expired(Timer::IntegrityAnswer, now) {
            self.close(now, DisconnectReason::IntegrityFailed);
            return;
        }
        if timers.is_expired(Timer::IntegrityNext, now) && self.integrity_pending.is_none() {
            self.start_integrity_check(now);
        }
        if timers.is_expired(Timer::KeyDiscard, now) {
            if let Some(k) = self.keys.as_mut() {
                k.previous = None;
            }
        }
        // Age (the Rekey timer) or bytes under the key.
        if self.should_rekey(now) {
            self.start_rekey();
        }
        if timers.is_expired(Timer::Reassembly, now) {
            let expired = self.reassembly.expire(now, self.config.fragment_timeout);
            self.stats.reassemblies_expired += expired as u64;
        }
        // Retransmission timeout: everything in flight that old is lost.
        if timers.is_expired(Timer::Rto, now) {
            let cutoff = now - self.current_rto();
            let mut lost = [0u64; 64];
            let mut n = 0;
            for p in self.sent.iter_mut() {
                if p.ack_eliciting && !p.acked && !p.lost && p.time <= cutoff {
                    p.lost = true;
                    lost[n] = p.pn;
                    n += 1;
                    if n == lost.len() {
                        break;
                    }
                }
            }
            self.rto_backoff += 1;
            for &pn in &lost[..n] {
                self.on_packet_lost(now, pn);
            }
            self.sent.compact();
        }
    }

    fn fail_handshake(&mut self) {
        self.events.push_back(EventRecord::Disconnected {
            reason: DisconnectReason::HandshakeTimeout,
            by_peer: false,
        });
        self.state = State::Closed;
    }

    // --------------------------------------------------------------- transmit

    /// Writes the next datagram to send into `buf` (at least `mtu` bytes).
    pub fn poll_transmit(&mut self, now: Instant, buf: &mut [u8]) -> Option<Transmit> {
        let size = match &mut self.state {
            State::Closed | State::ServerPending(_) => return None,
            State::ClientInitial(s) => {
                if now < s.next_send {
                    return None;
                }
                let n = s.write_connect(None, buf).ok()?;
                s.attempts += 1;
                s.next_send = now + handshake_backoff(self.config.rto_min, s.attempts);
                n
            }
            State::ClientCookie(s) => {
                if now < s.inner.next_send {
                    return None;
                }
                let n = s.inner.write_connect(Some(s.cookie), buf).ok()?;
                s.inner.attempts += 1;
                s.inner.next_send = now + handshake_backoff(self.config.rto_min, s.inner.attempts);
                n
            }
            State::ServerAccepted(a) if a.resend => {
                a.resend = false;
                let n = a.len.min(buf.len());
                buf[..n].copy_from_slice(&a.datagram[..n]);
                n
            }
            _ => {
                // Anti-amplification towards an unproven address: the
                // datagram is cut to what is left of the allowance (smaller
                // packets, never more bytes), so the acknowledgement that
                // proves the path can still go out.
                let room = self.path_check.map_or(buf.len(), |p| {
                    p.bytes_in
                        .saturating_mul(PATH_AMPLIFICATION)
                        .saturating_sub(p.bytes_out)
                        .min(buf.len())
                });
                let n = self.write_sealed(now, &mut buf[..room])?;
                if let Some(p) = self.path_check.as_mut() {
                    p.bytes_out += n;
                }
                n
            }
        };
        self.stats.packets_sent += 1;
        self.stats.bytes_sent += size as u64;
        Some(Transmit {
            destination: self.peer,
            size,
        })
    }

    fn write_sealed(&mut self, now: Instant, buf: &mut [u8]) -> Option<usize> {
        let side = self.side;
        let mtu = self.config.mtu.min(buf.len());
        if self.keys.is_none() || mtu < HEADER_LEN + TAG_LEN + 32 || self.next_pn == u64::MAX {
            return None;
        }
        let closing = matches!(self.state, State::Closing { .. });
        if closing && self.disconnect_sends >= 1 {
            return None;
        }
        if matches!(self.state, State::Established)
            && now >= self.last_ping + self.config.heartbeat_interval
        {
            // One Ping per interval; an unanswered one is simply replaced.
            self.last_ping = now;
            self.ping_due = true;
        }
        if self.should_rekey(now) {
            // The byte threshold is crossed by traffic, not by a timer.
            self.start_rekey();
        }
        let pn = self.next_pn;
        let body_end = mtu - TAG_LEN;
        let cursor = self.sent.frame_cursor();
        let mut eliciting = false;
        let mut channel = Channel::Unreliable;
        let len = {
            let mut w = Writer::new(&mut buf[HEADER_LEN..body_end]);
            if closing {
                let reason = self.closing_reason.unwrap_or(DisconnectReason::Graceful);
                let _ = Disconnect { reason }.encode_frame(&mut w);
                self.disconnect_sends += 1;
                eliciting = true;
            } else {
                if let Some((largest, bits)) = self.accepted.ack_state() {
                    let delay = self.largest_recv_time.map_or(0, |t| {
                        now.saturating_duration_since(t)
                            .as_micros()
                            .min(u128::from(u32::MAX)) as u32
                    });
                    let _ = Ack {
                        largest,
                        delay_us: delay,
                        bits,
                    }
                    .encode_frame(&mut w);
                }
                // A full sent history takes no more ack-eliciting content
                // until acks or the retransmission timeout drain it.
                let room = self.sent.has_room();
                if room {
                    eliciting |= self.write_control(now, &mut w);
                }
                if room && matches!(self.state, State::Established) {
                    let window_room = self
                        .congestion
                        .window
                        .saturating_sub(self.sent.bytes_in_flight);
                    if window_room >= mtu {
                        let (e, ch) = self.write_pieces(&mut w);
                        eliciting |= e;
                        if let Some(ch) = ch {
                            channel = ch;
                        }
                        eliciting |= self.write_unreliable(&mut w);
                    }
                }
            }
            w.position()
        };
        let ack_due =
            self.ack_pending >= ACK_EAGERNESS || self.ack_deadline.is_some_and(|d| now >= d);
        if !(eliciting || (ack_due && len > 0)) {
            self.sent.truncate_frames(cursor);
            return None;
        }
        let keys = self.keys.as_ref()?;
        let mut flags = SEALED_FLAGS;
        flags.set(HeaderFlags::REKEY, keys.phase_bit());
        flags.set(HeaderFlags::ACKNOWLEDGMENT, !eliciting);
        let mut plain_len = len;
        if len > self.config.compression_threshold
            && compress::should_compress(
                &buf[HEADER_LEN..HEADER_LEN + len],
                self.config.compression_threshold,
            )
        {
            let mut scratch = [0u8; MAX_DECOMPRESSED];
            if let Some(n) =
                compress::compress_into(&buf[HEADER_LEN..HEADER_LEN + len], &mut scratch)
            {
                buf[HEADER_LEN..HEADER_LEN + n].copy_from_slice(&scratch[..n]);
                plain_len = n;
                flags.set(HeaderFlags::COMPRESSED, true);
            }
        }
        let header = PacketHeader {
            connection_id: self.connection_id,
            channel,
            flags,
            sequence: pn,
        };
        header.emit(&mut Packet::new_unchecked(&mut buf[..HEADER_LEN]));
        let (head, rest) = buf.split_at_mut(HEADER_LEN);
        let tag = keys
            .send_key(side)
            .seal(self.connection_id, pn, head, &mut rest[..plain_len]);
        rest[plain_len..plain_len + TAG_LEN].copy_from_slice(&tag);
        let size = HEADER_LEN + plain_len + TAG_LEN;
        self.next_pn += 1;
        if let Some(k) = self.keys.as_mut() {
            k.bytes += size as u64;
        }
        let frame_count = (self.sent.frame_cursor() - cursor) as u16;
        self.sent.push(SentPacket {
            pn,
            time: now,
            bytes: size as u16,
            ack_eliciting: eliciting,
            first_frame: cursor,
            frame_count,
            acked: false,
            lost: false,
        });
        if !eliciting {
            self.stats.acks_sent += 1;
        }
        self.ack_pending = 0;
        self.ack_deadline = None;
        self.compact_unreliable_bytes();
        Some(size)
    }

    /// Writes pending control frames; returns whether any was written.
    fn write_control(&mut self, now: Instant, w: &mut Writer<'_>) -> bool {
        let mut any = false;
        while let Some(&id) = self.pongs.front() {
            if (Pong { id }).encode_frame(w).is_err() {
                break;
            }
            self.pongs.pop_front();
            any = true;
        }
        if self.ping_due
            && (Ping {
                id: self.next_ping_id,
            })
            .encode_frame(w)
            .is_ok()
        {
            self.ping_sent = Some((self.next_ping_id, now));
            self.next_ping_id = self.next_ping_id.wrapping_add(1);
            self.ping_due = false;
            any = true;
        }
        let c = self.control;
        if c.crypto_test {
            if let State::ClientKeyed(k) = &self.state {
                if (CryptoTest {
                    challenge: k.challenge,
                })
                .encode_frame(w)
                .is_ok()
                {
                    self.control.crypto_test = false;
                    self.sent
                        .push_frame(SentFrame::Control(ControlKind::CryptoTest));
                    any = true;
                }
            }
        }
        if let Some(challenge) = c.crypto_test_ack {
            if (CryptoTestAck { challenge }).encode_frame(w).is_ok() {
                self.control.crypto_test_ack = None;
                self.sent
                    .push_frame(SentFrame::Control(ControlKind::CryptoTestAck));
                any = true;
            }
        }
        if c.reliable_handshake {
            let frame = ReliableHandshake {
                receive_window: self.config.receive_window.min(u64::from(u16::MAX)) as u16,
                max_message_bytes: self.config.max_message_bytes.min(u32::MAX as usize) as u32,
            };
            if frame.encode_frame(w).is_ok() {
                self.control.reliable_handshake = false;
                self.sent
                    .push_frame(SentFrame::Control(ControlKind::ReliableHandshake));
                any = true;
            }
        }
        if c.new_connection_id {
            if let Some(connection_id) = self.pending_id {
                if (NewConnectionId { connection_id }).encode_frame(w).is_ok() {
                    self.control.new_connection_id = false;
                    self.sent
                        .push_frame(SentFrame::Control(ControlKind::NewConnectionId));
                    any = true;
                }
            }
        }
        if c.rekey_request {
            if let Some(req) = self.rekey.request {
                if req.encode_frame(w).is_ok() {
                    self.control.rekey_request = false;
                    self.sent
                        .push_frame(SentFrame::Control(ControlKind::RekeyRequest));
                    any = true;
                }
            }
        }
        if c.rekey_response {
            if let Some(resp) = self.rekey.responded {
                if resp.encode_frame(w).is_ok() {
                    self.control.rekey_response = false;
                    self.sent
                        .push_frame(SentFrame::Control(ControlKind::RekeyResponse));
                    any = true;
                }
            }
        }
        if c.integrity_challenge {
            if let Some((challenge, _)) = self.integrity_pending {
                if challenge.encode_frame(w).is_ok() {
                    self.control.integrity_challenge = false;
                    self.sent
                        .push_frame(SentFrame::Control(ControlKind::IntegrityChallenge));
                    any = true;
                }
            }
        }
        if let Some(answer) = c.integrity_answer {
            if answer.encode_frame(w).is_ok() {
                self.control.integrity_answer = None;
                self.last_integrity_answer = Some(answer);
                self.sent
                    .push_frame(SentFrame::Control(ControlKind::IntegrityAnswer));
                any = true;
            }
        }
        any
    }

    /// Writes reliable pieces that are due; returns (any, first channel).
    fn write_pieces(&mut self, w: &mut Writer<'_>) -> (bool, Option<Channel>) {
        let mut any = false;
        let mut first = None;
        while let Some(&p) = self.pending_pieces.front() {
            let sender = match p.channel {
                Channel::ReliableOrdered => &mut self.ordered_tx,
                _ => &mut self.unordered_tx,
            };
            if p.id >= sender.base_id().saturating_add(self.peer_window) {
                // Flow control: wait for acks to move the window.
                break;
            }
            let Some(slot) = sender.slot_mut(p.id) else {
                self.pending_pieces.pop_front();
                continue;
            };
            let Some(state) = slot.pieces.get(usize::from(p.piece)).copied() else {
                self.pending_pieces.pop_front();
                continue;
            };
            if state.acked || state.in_flight {
                self.pending_pieces.pop_front();
                continue;
            }
            let written = if slot.fragmented {
                Fragment {
                    channel: p.channel,
                    message_id: p.id,
                    fragment_id: slot.fragment_id,
                    index: p.piece,
                    total_size: slot.data.len() as u32,
                    data: slot.piece(p.piece),
                }
                .encode_frame(w)
            } else {
                Message {
                    channel: p.channel,
                    message_id: p.id,
                    data: &slot.data,
                }
                .encode_frame(w)
            };
            if written.is_err() {
                break;
            }
            slot.pieces[usize::from(p.piece)].in_flight = true;
            if state.losses > 0 {
                self.stats.retransmissions += 1;
            }
            self.pending_pieces.pop_front();
            self.sent.push_frame(SentFrame::Piece(p));
            first.get_or_insert(p.channel);
            any = true;
        }
        (any, first)
    }

    /// Writes queued unreliable messages that fit; returns whether any.
    fn write_unreliable(&mut self, w: &mut Writer<'_>) -> bool {
        let mut any = false;
        let max = self.config.max_unfragmented();
        while let Some(&(token, start, len)) = self.unreliable.front() {
            if len <= max {
                let data = &self.unreliable_bytes[start..start + len];
                if (Message {
                    channel: Channel::Unreliable,
                    message_id: 0,
                    data,
                })
                .encode_frame(w)
                .is_err()
                {
                    break;
                }
                self.unreliable.pop_front();
                self.sent.push_frame(SentFrame::Unreliable(token));
                any = true;
                continue;
            }
            // Fragmented: as many pieces as fit, the rest in later packets.
            let pieces = len.div_ceil(FRAGMENT_PIECE_LEN) as u16;
            let (mut next, fragment_id) = match self.unreliable_progress {
                Some(progress) => progress,
                None => {
                    let id = self.next_fragment_id;
                    self.next_fragment_id = id.wrapping_add(1);
                    self.unreliable_frags.push_back(FragmentedUnreliable {
                        token,
                        outstanding: 0,
                        all_sent: false,
                        failed: false,
                    });
                    (0, id)
                }
            };
            while next < pieces {
                let a = usize::from(next) * FRAGMENT_PIECE_LEN;
                let b = (a + FRAGMENT_PIECE_LEN).min(len);
                let piece = Fragment {
                    channel: Channel::Unreliable,
                    message_id: 0,
                    fragment_id,
                    index: next,
                    total_size: len as u32,
                    data: &self.unreliable_bytes[start + a..start + b],
                };
                if piece.encode_frame(w).is_err() {
                    break;
                }
                self.sent.push_frame(SentFrame::UnreliablePiece(token));
                if let Some(f) = self.unreliable_frags.iter_mut().find(|f| f.token == token) {
                    f.outstanding += 1;
                }
                next += 1;
                any = true;
            }
            if next < pieces {
                self.unreliable_progress = Some((next, fragment_id));
                break;
            }
            self.unreliable_progress = None;
            self.unreliable.pop_front();
            if let Some(f) = self.unreliable_frags.iter_mut().find(|f| f.token == token) {
                f.all_sent = true;
            }
        }
        any
    }

    /// A piece of a fragmented unreliable message was acknowledged or lost
    /// (or, `abandoned`, the message was dropped before all pieces left).
    fn unreliable_piece_settled(&mut self, token: u64, acked: bool, abandoned: bool) {
        let Some(i) = self.unreliable_frags.iter().position(|f| f.token == token) else {
            return;
        };
        let f = &mut self.unreliable_frags[i];
        if abandoned {
            f.all_sent = true;
        } else {
            f.outstanding = f.outstanding.saturating_sub(1);
        }
        if (!acked || abandoned) && !f.failed {
            f.failed = true;
            self.events.push_back(EventRecord::UnreliableLost(token));
        }
        let f = self.unreliable_frags[i];
        if f.all_sent && f.outstanding == 0 {
            if !f.failed {
                self.events.push_back(EventRecord::UnreliableAcked(token));
            }
            self.unreliable_frags.remove(i);
        }
    }
}

/// Largest decompressed datagram payload accepted.
const MAX_DECOMPRESSED: usize = 4096;

fn handshake_backoff(base: Duration, attempts: u32) -> Duration {
    (base * 2u32.saturating_pow(attempts.saturating_sub(1).min(3))).min(Duration::from_secs(2))
}
