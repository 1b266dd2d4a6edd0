//! Zone transfer, sans-IO: a `Session` against two protocol-level nodes
//! (the protocol crate's server `Endpoint` with a few scripted game
//! messages, no `tos-server`): the first logs the client in and puts it in
//! the world, then sends a ZoneTransfer; the second accepts the transfer
//! ticket and starts the connection in the world. Checked: the old
//! connection is closed cleanly by the client, the ticket reaches the new
//! node sealed to its key, the old entities are removed before the new
//! node's are created, the gap and counters, sends refused in the gap and
//! going to the new node after it, and the failures (ticket refused, new
//! node silent) ending the session with one event.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tos_client::{
    EntityEvent, LoginSpec, Session, SessionConfig, SessionError, SessionEvent, SnapshotHandling,
    TransferFailure,
};
use tos_protocol::delta::{QuantizedEntity, encode_create};
use tos_protocol::endpoint::{ConnectionHandle, Endpoint, EndpointConfig, EndpointEvent};
use tos_protocol::quant::Quantizer;
use tos_protocol::wire::account::{CharacterSummary, WorldParams, encode_character_list};
use tos_protocol::wire::control::{DenyReason, DisconnectReason};
use tos_protocol::wire::game::{ClientMessage, DeltaSync, ServerMessage};
use tos_protocol::wire::{Channel, Writer};

const CLIENT: &str = "127.0.0.1:50000";
const WEST: &str = "127.0.0.1:7001";
const EAST: &str = "127.0.0.1:7002";
const TICKET: &[u8] = b"TOSX\x01abcd";
const CHARACTER: u64 = 77;

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn world() -> WorldParams {
    WorldParams::from_quantizer(&Quantizer::seed_default(), 1.0, 1_000.0)
}

/// What the east node does with the transfer ticket.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Answer {
    Accept,
    Refuse,
    Silent,
}

/// One scripted node: a server endpoint and the little game it plays.
struct Node {
    addr: SocketAddr,
    endpoint: Endpoint,
    /// Entities this node shows (network id, position).
    entities: Vec<(u32, [f32; 3])>,
    /// The player's entity id on this node.
    player: u32,
    /// Whether the node starts connections in the world (a transfer
    /// target) or logs them in first.
    transfer_target: bool,
    answer: Answer,
    client: Option<ConnectionHandle>,
    tickets: Vec<Vec<u8>>,
    in_world: bool,
    /// A transfer target that sends its first snapshot before WorldEntered
    /// (they travel on different channels: either may arrive first).
    snapshot_first: bool,
    /// WorldEntered goes out with the next datagrams (after a snapshot).
    enter_next: bool,
    tick: u32,
    /// The client's Disconnect arrived (reason, by the peer).
    disconnected: Option<(DisconnectReason, bool)>,
    claims: u32,
}

impl Node {
    fn new(addr: &str, secret: u8, player: u32, entities: Vec<(u32, [f32; 3])>) -> Self {
        let config =
            EndpointConfig::new([secret; 32], [secret ^ 0x55; 32], Instant::now(), [7; 32]);
        Self {
            addr: self::addr(addr),
            endpoint: Endpoint::new(config),
            entities,
            player,
            transfer_target: false,
            answer: Answer::Accept,
            client: None,
            tickets: Vec::new(),
            in_world: false,
            snapshot_first: false,
            enter_next: false,
            tick: u32::from(secret) * 1_000,
            disconnected: None,
            claims: 0,
        }
    }

    fn key(&self) -> [u8; 32] {
        self.endpoint.static_public_key()
    }

    fn send(&mut self, channel: Channel, msg: &ServerMessage<'_>) {
        let mut buf = [0u8; 1024];
        let mut w = Writer::new(&mut buf);
        msg.encode(&mut w).unwrap();
        let n = w.position();
        let h = self.client.expect("a client");
        self.endpoint.send(h, channel, &buf[..n]).unwrap();
    }

    fn enter(&mut self) {
        let at = self.entities[0].1;
        self.send(
            Channel::ReliableOrdered,
            &ServerMessage::WorldEntered {
                entity_id: self.player,
                server_tick: self.tick,
                character_id: CHARACTER,
                position: at,
                yaw: 90.0,
                world: world(),
            },
        );
        self.in_world = true;
    }

    /// A snapshot creating every entity of this node.
    fn snapshot(&mut self) {
        self.tick += 1;
        let q = Quantizer::seed_default();
        let mut records = [0u8; 512];
        let mut w = Writer::new(&mut records);
        for &(id, at) in &self.entities {
            let state = QuantizedEntity {
                position: q.quantize_position(at).unwrap(),
                ..QuantizedEntity::default()
            };
            encode_create(&mut w, id, 0, &state).unwrap();
        }
        let n = w.position();
        let sync = ServerMessage::DeltaSync(DeltaSync {
            tick: self.tick,
            baseline_tick: 0,
            input_ack: 0,
            record_count: self.entities.len() as u32,
            records: &records[..n],
        });
        self.send(Channel::Unreliable, &sync);
    }

    fn on_message(&mut self, data: &[u8]) {
        match ClientMessage::decode(data).expect("the client speaks the protocol") {
            ClientMessage::Login { .. } => self.send(
                Channel::ReliableOrdered,
                &ServerMessage::Authenticated {
                    account_id: 5,
                    ticket: b"session ticket",
                    expires_at: 4_000_000_000,
                },
            ),
            ClientMessage::CharacterList => {
                let mut buf = [0u8; 256];
                let mut w = Writer::new(&mut buf);
                let me = CharacterSummary {
                    character_id: CHARACTER,
                    name: "Walker",
                    template: 1,
                    level: 1,
                    faction: 0,
                    deleted_at: 0,
                    position: self.entities[0].1,
                };
                encode_character_list(&mut w, 4, &[me]).unwrap();
                let n = w.position();
                let h = self.client.unwrap();
                self.endpoint
                    .send(h, Channel::ReliableOrdered, &buf[..n])
                    .unwrap();
            }
            ClientMessage::EnterToWorld { character_id, .. } => {
                assert_eq!(character_id, CHARACTER);
                self.enter();
            }
            ClientMessage::SyncEntity(_) => self.claims += 1,
            other => panic!("{} got an unexpected {other:?}", self.addr),
        }
    }

    fn events(&mut self, now: Instant) {
        if self.enter_next {
            self.enter_next = false;
            self.enter();
        }
        let mut incoming = Vec::new();
        let mut messages = Vec::new();
        let mut connected = false;
        while let Some(e) = self.endpoint.poll_event() {
            match e {
                EndpointEvent::Incoming { handle, ticket, .. } => {
                    incoming.push((handle, ticket.to_vec()));
                }
                EndpointEvent::Connection { event, .. } => match event {
                    tos_protocol::connection::Event::Connected => connected = true,
                    tos_protocol::connection::Event::Message { data, .. } => {
                        messages.push(data.to_vec());
                    }
                    tos_protocol::connection::Event::Disconnected { reason, by_peer } => {
                        self.disconnected = Some((reason, by_peer));
                    }
                    _ => {}
                },
                EndpointEvent::Removed { .. } => {}
            }
        }
        for (handle, ticket) in incoming {
            self.tickets.push(ticket);
            match self.answer {
                Answer::Accept => {
                    assert!(self.endpoint.accept(handle, now));
                    self.client = Some(handle);
                }
                Answer::Refuse => self.endpoint.refuse(handle, DenyReason::TicketRejected),
                Answer::Silent => {}
            }
        }
        if connected && self.transfer_target {
            // Straight into the world: no login, no character list.
            if self.snapshot_first {
                self.snapshot();
                self.enter_next = true;
            } else {
                self.enter();
                self.snapshot();
            }
        }
        for m in messages {
            self.on_message(&m);
        }
    }
}

/// Two nodes and a client on a perfect link.
struct World {
    now: Instant,
    session: Session,
    west: Node,
    east: Node,
    events: Vec<SessionEvent>,
}

impl World {
    fn new(answer: Answer) -> Self {
        Self::with(answer, SnapshotHandling::Events)
    }

    fn with(answer: Answer, handling: SnapshotHandling) -> Self {
        let now = Instant::now();
        let west = Node::new(
            WEST,
            1,
            10,
            vec![(10, [100.0, 0.0, 0.0]), (11, [300.0, 0.0, 0.0])],
        );
        let mut east = Node::new(
            EAST,
            2,
            500,
            vec![(500, [120.0, 0.0, 0.0]), (501, [900.0, 0.0, 0.0])],
        );
        east.transfer_target = true;
        east.answer = answer;
        let spec = walker();
        let mut config = SessionConfig::new(west.key(), spec);
        config.seed = Some([9; 32]);
        config.snapshots = handling;
        config.transfer_timeout = Duration::from_secs(2);
        let session = Session::connect(config, west.addr, now).unwrap();
        Self {
            now,
            session,
            west,
            east,
            events: Vec::new(),
        }
    }

    /// Moves every datagram until the link is quiet, then lets `dt` pass.
    fn step(&mut self, dt: Duration) {
        let client = addr(CLIENT);
        let mut buf = vec![0u8; 2048];
        for _ in 0..64 {
            let mut moved = false;
            while let Some(t) = self.session.poll_transmit(self.now, &mut buf) {
                moved = true;
                let node = if t.destination == self.west.addr {
                    &mut self.west
                } else if t.destination == self.east.addr {
                    &mut self.east
                } else {
                    panic!("a datagram to {}", t.destination);
                };
                node.endpoint
                    .handle_datagram(self.now, client, &mut buf[..t.size]);
            }
            for node in [&mut self.west, &mut self.east] {
                node.events(self.now);
                while let Some(t) = node.endpoint.poll_transmit(self.now, &mut buf) {
                    moved = true;
                    assert_eq!(t.destination, client);
                    if node.answer == Answer::Silent && node.transfer_target {
                        continue;
                    }
                    let from = node.addr;
                    self.session
                        .handle_datagram(self.now, from, &mut buf[..t.size]);
                }
            }
            while let Some(e) = self.session.poll_event() {
                self.events.push(e);
            }
            if !moved {
                break;
            }
        }
        self.now += dt;
        self.session.handle_timeout(self.now);
        for node in [&mut self.west, &mut self.east] {
            node.endpoint.handle_timeout(self.now);
        }
        while let Some(e) = self.session.poll_event() {
            self.events.push(e);
        }
    }

    fn until(&mut self, what: &str, mut done: impl FnMut(&SessionEvent) -> bool) -> usize {
        for _ in 0..2_000 {
            if let Some(i) = self.events.iter().position(&mut done) {
                return i;
            }
            self.step(Duration::from_millis(5));
        }
        panic!("no {what}; events: {:?}", self.events);
    }

    /// In the world on the west node, seeing its entities, then sent east.
    fn enter_and_cross(&mut self) {
        self.until("entering", |e| matches!(e, SessionEvent::EnteredWorld(_)));
        self.west.snapshot();
        self.step(Duration::from_millis(16));
        self.west.snapshot();
        self.step(Duration::from_millis(16));
        assert_eq!(self.session.receiver().visible_count(), 2);
        let key = self.east.key();
        self.west.send(
            Channel::ReliableOrdered,
            &ServerMessage::ZoneTransfer {
                address: EAST,
                static_key: key,
                ticket: TICKET,
            },
        );
    }
}

#[test]
fn a_zone_transfer_moves_the_session_to_the_new_node() {
    let mut w = World::new(Answer::Accept);
    w.enter_and_cross();
    // The ZoneTransfer is delivered; the east node is not reached yet.
    let client = addr(CLIENT);
    let mut buf = vec![0u8; 2048];
    while let Some(t) = w.west.endpoint.poll_transmit(w.now, &mut buf) {
        w.session
            .handle_datagram(w.now, w.west.addr, &mut buf[..t.size]);
    }
    let mut started = false;
    while let Some(e) = w.session.poll_event() {
        if let SessionEvent::ZoneTransferStarted { from, to } = e {
            assert_eq!((from, to), (w.west.addr, w.east.addr));
            started = true;
        }
        w.events.push(e);
    }
    assert!(started, "events: {:?}", w.events);
    assert!(w.session.is_transferring());
    assert_eq!(w.session.server_address(), w.east.addr);
    // In the gap nothing can be sent, and nothing is queued.
    assert_eq!(
        w.session.send_move([0.0; 3], [0.0; 3], 0.0, 0, 0.016),
        Err(SessionError::Transferring)
    );
    assert_eq!(w.session.send_action(1, 0), Err(SessionError::Transferring));
    // The old node gets the client's Disconnect first, then the new node
    // the Connect.
    let first = w.session.poll_transmit(w.now, &mut buf).unwrap();
    assert_eq!(first.destination, w.west.addr);
    w.west
        .endpoint
        .handle_datagram(w.now, client, &mut buf[..first.size]);
    w.west.events(w.now);
    assert_eq!(
        w.west.disconnected,
        Some((DisconnectReason::Graceful, true)),
        "the client closed the old connection cleanly"
    );

    let mark = w.events.len();
    w.now += Duration::from_millis(40);
    let done = w.until("the transfer", |e| {
        matches!(e, SessionEvent::ZoneTransferred { .. })
    });
    assert_eq!(w.east.tickets, vec![TICKET.to_vec()], "the ticket, opened");
    let SessionEvent::ZoneTransferred {
        entered,
        from,
        to,
        gap,
    } = w.events[done]
    else {
        unreachable!()
    };
    assert_eq!((from, to), (w.west.addr, w.east.addr));
    assert_eq!(entered.entity_id, 500);
    assert_eq!(entered.character_id, CHARACTER);
    assert!(gap >= Duration::from_millis(40), "gap {gap:?}");
    // Old entities removed before the transfer is reported, new ones
    // created after it, and no Connected or Disconnected in between.
    let removed: Vec<u32> = w.events[mark..done]
        .iter()
        .filter_map(|e| match e {
            SessionEvent::Entity(EntityEvent::Removed { id, .. }) => Some(*id),
            _ => None,
        })
        .collect();
    let mut sorted = removed.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, vec![10, 11]);
    for e in &w.events[mark..] {
        assert!(
            !matches!(
                e,
                SessionEvent::Connected
                    | SessionEvent::Disconnected { .. }
                    | SessionEvent::EnteredWorld(_)
            ),
            "{e:?}"
        );
    }
    w.step(Duration::from_millis(1));
    let mut created: Vec<u32> = w.events[done..]
        .iter()
        .filter_map(|e| match e {
            SessionEvent::Entity(EntityEvent::Created(s)) => Some(s.id),
            _ => None,
        })
        .collect();
    created.sort_unstable();
    assert_eq!(created, vec![500, 501]);
    assert!(!w.session.is_transferring());
    assert_eq!(w.session.entered().unwrap().entity_id, 500);
    assert_eq!(w.session.entities_in_view(), 2);
    assert_eq!(w.session.interpolator().len(), 2);
    let stats = w.session.stats();
    assert_eq!((stats.zone_transfers, stats.transfer_failures), (1, 0));
    assert_eq!(stats.last_transfer_gap, Some(gap));

    // Claims go to the new node now; the old one hears nothing more.
    let west_claims = w.west.claims;
    let seq = w
        .session
        .send_move([130.0, 0.0, 0.0], [0.0; 3], 0.0, 0, 0.016)
        .unwrap();
    assert!(seq > 0);
    w.step(Duration::from_millis(16));
    assert_eq!(w.east.claims, 1);
    assert_eq!(w.west.claims, west_claims);
    // The old connection finished closing: nothing more goes west.
    for _ in 0..400 {
        w.step(Duration::from_millis(10));
    }
    while let Some(t) = w.session.poll_transmit(w.now, &mut buf) {
        assert_eq!(t.destination, w.east.addr);
    }
    assert!(!w.session.is_ended());
}

#[test]
fn a_refused_transfer_ticket_ends_the_session_with_one_event() {
    let mut w = World::new(Answer::Refuse);
    w.enter_and_cross();
    let i = w.until("the failure", |e| {
        matches!(e, SessionEvent::ZoneTransferFailed { .. })
    });
    assert_eq!(
        w.events[i],
        SessionEvent::ZoneTransferFailed {
            to: w.east.addr,
            failure: TransferFailure::Denied(DenyReason::TicketRejected),
        }
    );
    w.step(Duration::from_millis(10));
    assert!(w.session.is_ended());
    assert!(
        !w.events.iter().any(|e| matches!(
            e,
            SessionEvent::Disconnected { .. } | SessionEvent::Denied { .. }
        )),
        "{:?}",
        w.events
    );
    assert_eq!(w.session.stats().transfer_failures, 1);
    assert_eq!(
        w.west.disconnected,
        Some((DisconnectReason::Graceful, true)),
        "the old connection was closed cleanly all the same"
    );
}

#[test]
fn a_silent_new_node_fails_the_transfer_at_the_timeout() {
    let mut w = World::new(Answer::Silent);
    w.enter_and_cross();
    let start = w.now;
    let i = w.until("the failure", |e| {
        matches!(e, SessionEvent::ZoneTransferFailed { .. })
    });
    assert_eq!(
        w.events[i],
        SessionEvent::ZoneTransferFailed {
            to: w.east.addr,
            failure: TransferFailure::TimedOut,
        }
    );
    let waited = w.now - start;
    assert!(
        waited >= Duration::from_secs(2) && waited < Duration::from_millis(2_100),
        "{waited:?}"
    );
    assert!(w.session.is_ended());
}

#[test]
fn a_transfer_to_a_name_instead_of_an_address_fails_at_once() {
    let mut w = World::new(Answer::Accept);
    w.until("entering", |e| matches!(e, SessionEvent::EnteredWorld(_)));
    let key = w.east.key();
    w.west.send(
        Channel::ReliableOrdered,
        &ServerMessage::ZoneTransfer {
            address: "east.example:7002",
            static_key: key,
            ticket: TICKET,
        },
    );
    let i = w.until("the failure", |e| {
        matches!(e, SessionEvent::ZoneTransferFailed { .. })
    });
    assert!(matches!(
        w.events[i],
        SessionEvent::ZoneTransferFailed {
            failure: TransferFailure::BadAddress,
            ..
        }
    ));
    assert!(w.session.is_ended());
}

#[test]
fn a_snapshot_before_world_entered_and_a_headless_session_transfer_too() {
    for handling in [SnapshotHandling::Events, SnapshotHandling::Apply] {
        let mut w = World::with(Answer::Accept, handling);
        w.east.snapshot_first = true;
        w.enter_and_cross();
        let mark = w.events.len();
        let done = w.until("the transfer", |e| {
            matches!(e, SessionEvent::ZoneTransferred { .. })
        });
        w.step(Duration::from_millis(1));
        let transferred = w.events[mark..]
            .iter()
            .filter(|e| matches!(e, SessionEvent::ZoneTransferred { .. }))
            .count();
        assert_eq!(transferred, 1, "{handling:?}");
        let SessionEvent::ZoneTransferred { entered, .. } = w.events[done] else {
            unreachable!()
        };
        assert_eq!(entered.entity_id, 500);
        let first_snapshot = w.events[mark..]
            .iter()
            .position(|e| matches!(e, SessionEvent::Snapshot { .. }))
            .unwrap();
        assert!(
            mark + first_snapshot < done,
            "the snapshot came first, the transfer completed with WorldEntered"
        );
        // Whatever the order, every old entity is removed before a new one
        // is created.
        let last_removed = w.events[mark..]
            .iter()
            .rposition(|e| matches!(e, SessionEvent::Entity(EntityEvent::Removed { .. })));
        let first_created = w.events[mark..]
            .iter()
            .position(|e| matches!(e, SessionEvent::Entity(EntityEvent::Created(_))));
        if handling == SnapshotHandling::Events {
            assert!(
                last_removed.unwrap() < first_created.unwrap(),
                "{:?}",
                w.events
            );
            assert_eq!(w.session.entities_in_view(), 2);
        } else {
            assert_eq!(
                (last_removed, first_created),
                (None, None),
                "no entity events"
            );
        }
        // The receiver holds the new node's world only.
        let mut ids: Vec<u32> = w
            .session
            .receiver()
            .visible()
            .map(|(id, _, _)| id)
            .collect();
        ids.sort_unstable();
        assert_eq!(ids, vec![500, 501], "{handling:?}");
        assert_eq!(w.session.stats().zone_transfers, 1);
        assert!(
            w.session
                .send_move([0.0; 3], [0.0; 3], 0.0, 0, 0.016)
                .is_ok()
        );
    }
}

/// The UDP driver through a transfer: the two nodes on real loopback
/// sockets, the client's datagrams to whichever node the session names,
/// the new node's answers taken from its address.
#[test]
fn the_udp_driver_follows_a_transfer_to_another_address() {
    use std::net::UdpSocket;
    use tos_client::UdpClient;

    let west_socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let east_socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    for s in [&west_socket, &east_socket] {
        s.set_nonblocking(true).unwrap();
    }
    let (west_addr, east_addr) = (
        west_socket.local_addr().unwrap(),
        east_socket.local_addr().unwrap(),
    );
    let mut west = Node::new(WEST, 1, 10, vec![(10, [100.0, 0.0, 0.0])]);
    let mut east = Node::new(EAST, 2, 500, vec![(500, [120.0, 0.0, 0.0])]);
    (west.addr, east.addr) = (west_addr, east_addr);
    east.transfer_target = true;
    let spec = walker();
    let mut client = UdpClient::connect(
        west_addr,
        SessionConfig::new(west.key(), spec),
        Instant::now(),
    )
    .unwrap();
    let mut events = Vec::new();
    let mut buf = vec![0u8; 2048];
    let mut sent_transfer = false;
    let end = Instant::now() + Duration::from_secs(10);
    while Instant::now() < end {
        let now = Instant::now();
        client.poll(now).unwrap();
        while let Some(e) = client.poll_event() {
            events.push(e);
        }
        for (node, socket) in [(&mut west, &west_socket), (&mut east, &east_socket)] {
            while let Ok((n, from)) = socket.recv_from(&mut buf) {
                node.endpoint.handle_datagram(now, from, &mut buf[..n]);
            }
            node.events(now);
            node.endpoint.handle_timeout(now);
            while let Some(t) = node.endpoint.poll_transmit(now, &mut buf) {
                let _ = socket.send_to(&buf[..t.size], t.destination);
            }
        }
        if !sent_transfer
            && events
                .iter()
                .any(|e| matches!(e, SessionEvent::EnteredWorld(_)))
        {
            west.snapshot();
            let key = east.key();
            let address = east_addr.to_string();
            west.send(
                Channel::ReliableOrdered,
                &ServerMessage::ZoneTransfer {
                    address: &address,
                    static_key: key,
                    ticket: TICKET,
                },
            );
            sent_transfer = true;
        }
        if events
            .iter()
            .any(|e| matches!(e, SessionEvent::ZoneTransferred { .. }))
            && west.disconnected.is_some()
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    assert!(
        events.iter().any(|e| matches!(
            e,
            SessionEvent::ZoneTransferred { to, .. } if *to == east_addr
        )),
        "{events:?}"
    );
    assert_eq!(west.disconnected, Some((DisconnectReason::Graceful, true)));
    assert_eq!(client.session().server_address(), east_addr);
    assert_eq!(east.tickets, vec![TICKET.to_vec()]);
}

/// The account every scripted test logs in with.
fn walker() -> LoginSpec {
    LoginSpec {
        account: "walker".into(),
        password: "correct horse battery".into(),
        register: false,
        character_name: "Walker".into(),
        template: 1,
        appearance: vec![],
        ticketed: false,
        login_only: false,
    }
}
