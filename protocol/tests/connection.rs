//! Two endpoints in memory over a seeded simulated link: handshake,
//! delivery guarantees under loss, security properties, rekey, heartbeat,
//! migration, fragmentation and backpressure.

mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use common::{LinkConfig, Owned, Sim};
use tos_protocol::connection::{SendError, TransportConfig};
use tos_protocol::wire::Channel;
use tos_protocol::wire::control::{DenyReason, DisconnectReason};

fn connected_pair(seed: u64, link: LinkConfig, transport: TransportConfig) -> Sim {
    let mut sim = Sim::new(seed, link, transport);
    let cfg = sim.client_config(Arc::new(sim.servers[0].config_transport()));
    sim.add_client(cfg);
    assert!(
        sim.drive(Duration::from_secs(10), |s| s.established(0)
            && s.servers[0].handles().count() == 1
            && s.server_established()),
        "handshake did not complete"
    );
    sim
}

#[test]
fn handshake_completes_and_messages_flow_on_every_channel() {
    let mut sim = connected_pair(1, LinkConfig::perfect(10), TransportConfig::default());
    assert!(sim.clients[0].events.contains(&Owned::Connected));
    assert!(
        sim.server_events
            .iter()
            .any(|(_, _, e)| *e == Owned::Connected)
    );
    for ch in Channel::ALL {
        sim.clients[0]
            .conn
            .send(ch, format!("hello {ch:?}").as_bytes())
            .unwrap();
    }
    let h = sim.server_handle();
    sim.servers[0]
        .connection_mut(h)
        .unwrap()
        .send(Channel::ReliableOrdered, b"welcome")
        .unwrap();
    assert!(sim.drive(Duration::from_secs(2), |s| s.server_messages().len() == 3));
    assert!(
        sim.drive(Duration::from_secs(2), |s| s.clients[0].events.contains(
            &Owned::Message(Channel::ReliableOrdered, b"welcome".to_vec())
        ))
    );
    let msgs = sim.server_messages();
    assert!(msgs.contains(&(Channel::Unreliable, b"hello Unreliable".to_vec())));
    assert!(msgs.contains(&(Channel::ReliableOrdered, b"hello ReliableOrdered".to_vec())));
    assert!(msgs.contains(&(
        Channel::ReliableUnordered,
        b"hello ReliableUnordered".to_vec()
    )));
}

/// Sends `count` messages on `channel` from the client, pushing more as the
/// queue drains, and drives until the server has them or time runs out.
fn stream(sim: &mut Sim, channel: Channel, count: u32, limit: Duration) {
    stream_sized(sim, channel, count, 4, limit);
}

fn stream_sized(sim: &mut Sim, channel: Channel, count: u32, size: usize, limit: Duration) {
    let mut next = 0u32;
    // Incompressible filler, so byte counts are what they seem.
    let mut rng = common::Rng(u64::from(count));
    let mut payload: Vec<u8> = (0..size.max(4)).map(|_| rng.next_u64() as u8).collect();
    let ok = sim.drive(limit, |s| {
        while next < count {
            payload[..4].copy_from_slice(&next.to_le_bytes());
            match s.clients[0].conn.send(channel, &payload) {
                Ok(_) => next += 1,
                Err(SendError::QueueFull) => break,
                Err(e) => panic!("send failed: {e}"),
            }
        }
        let got = s
            .server_messages()
            .iter()
            .filter(|(c, _)| *c == channel)
            .count();
        got >= count as usize && next == count
    });
    assert!(ok, "stream on {channel:?} did not finish");
}

fn ids(sim: &Sim, channel: Channel) -> Vec<u32> {
    sim.server_messages()
        .into_iter()
        .filter(|(c, _)| *c == channel)
        .map(|(_, d)| u32::from_le_bytes(d[..4].try_into().unwrap()))
        .collect()
}

#[test]
fn ten_thousand_reliable_ordered_messages_survive_a_hostile_link() {
    let mut sim = connected_pair(7, LinkConfig::hostile(), TransportConfig::default());
    stream(
        &mut sim,
        Channel::ReliableOrdered,
        10_000,
        Duration::from_secs(600),
    );
    let got = ids(&sim, Channel::ReliableOrdered);
    assert_eq!(
        got,
        (0..10_000).collect::<Vec<_>>(),
        "exactly once, in order"
    );
    let stats = sim.clients[0].conn.stats();
    assert!(
        stats.packets_lost > 0 && stats.retransmissions > 0,
        "{stats:?}"
    );
    assert!(sim.clients[0].conn.is_established());
}

#[test]
fn reliable_unordered_messages_arrive_exactly_once() {
    let mut sim = connected_pair(8, LinkConfig::hostile(), TransportConfig::default());
    stream(
        &mut sim,
        Channel::ReliableUnordered,
        5_000,
        Duration::from_secs(600),
    );
    let mut got = ids(&sim, Channel::ReliableUnordered);
    assert_eq!(got.len(), 5_000);
    got.sort_unstable();
    assert_eq!(got, (0..5_000).collect::<Vec<_>>());
}

#[test]
fn unreliable_messages_never_arrive_twice_and_every_one_is_acked_or_lost() {
    let mut sim = connected_pair(9, LinkConfig::hostile(), TransportConfig::default());
    let mut tokens = HashSet::new();
    for i in 0..2_000u32 {
        tokens.insert(
            sim.clients[0]
                .conn
                .send(Channel::Unreliable, &i.to_le_bytes())
                .unwrap(),
        );
        // One per step so they travel in separate packets.
        sim.step();
        sim.now += Duration::from_millis(2);
    }
    sim.drive(Duration::from_secs(5), |_| false);
    let got = ids(&sim, Channel::Unreliable);
    let unique: HashSet<_> = got.iter().collect();
    assert_eq!(unique.len(), got.len(), "a message arrived twice");
    assert!(
        got.len() > 1_000 && got.len() < 2_000,
        "{} of 2000 arrived",
        got.len()
    );
    // Each token is reported exactly once, acked or lost.
    let mut reported = HashSet::new();
    for e in &sim.clients[0].events {
        if let Owned::UnreliableAcked(t) | Owned::UnreliableLost(t) = e {
            assert!(reported.insert(*t), "token {t} reported twice");
        }
    }
    assert_eq!(reported, tokens);
    let acked = sim.clients[0]
        .events
        .iter()
        .filter(|e| matches!(e, Owned::UnreliableAcked(_)))
        .count();
    assert!(
        acked <= got.len(),
        "acked {acked} but only {} arrived",
        got.len()
    );
}

#[test]
fn heartbeat_timeout_disconnects() {
    let transport = TransportConfig {
        heartbeat_interval: Duration::from_millis(200),
        idle_timeout: Duration::from_millis(600),
        ..TransportConfig::default()
    };
    let mut sim = connected_pair(10, LinkConfig::perfect(5), transport);
    // Pings keep an idle connection alive.
    sim.drive(Duration::from_secs(3), |_| false);
    assert!(sim.clients[0].conn.is_established());
    assert!(sim.clients[0].conn.stats().rtt_us > 0);
    sim.drop_all = true;
    assert!(sim.drive(Duration::from_secs(3), |s| {
        s.clients[0]
            .events
            .contains(&Owned::Disconnected(DisconnectReason::Timeout, false))
            && s.server_events
                .iter()
                .any(|(_, _, e)| *e == Owned::Disconnected(DisconnectReason::Timeout, false))
    }));
    assert!(
        sim.drive(Duration::from_secs(3), |s| s.servers[0].connection_count()
            == 0),
        "the server forgets a timed-out connection"
    );
}

#[test]
fn graceful_close_reaches_the_peer() {
    let mut sim = connected_pair(11, LinkConfig::perfect(5), TransportConfig::default());
    let now = sim.now;
    sim.clients[0].conn.close(now, DisconnectReason::Graceful);
    assert!(
        sim.drive(Duration::from_secs(2), |s| s.server_events.iter().any(
            |(_, _, e)| *e == Owned::Disconnected(DisconnectReason::Graceful, true)
        ))
    );
    assert!(
        sim.drive(Duration::from_secs(5), |s| s.servers[0].connection_count()
            == 0)
    );
    assert_eq!(
        sim.clients[0].conn.send(Channel::ReliableOrdered, b"x"),
        Err(SendError::Closed)
    );
}

#[test]
fn ticket_rejection_is_reported_to_the_client() {
    let mut sim = Sim::new(12, LinkConfig::perfect(5), TransportConfig::default());
    sim.ticket_policy = |t| (t != b"good").then_some(DenyReason::TicketRejected);
    let cfg = sim.client_config(Arc::new(TransportConfig::default()));
    sim.add_client(cfg);
    assert!(sim.drive(Duration::from_secs(3), |s| {
        s.clients[0]
            .events
            .contains(&Owned::Denied(DenyReason::TicketRejected))
    }));
    assert!(sim.clients[0].conn.is_closed());
    assert_eq!(sim.servers[0].connection_count(), 0);
}

#[test]
fn rekey_mid_stream_loses_nothing() {
    let transport = TransportConfig {
        rekey_after_bytes: 16 * 1024,
        rekey_grace: Duration::from_millis(50),
        ..TransportConfig::default()
    };
    let link = LinkConfig {
        loss: 0.1,
        duplicate: 0.05,
        reorder: 0.2,
        reorder_delay: Duration::from_millis(30),
        ..LinkConfig::perfect(10)
    };
    let mut sim = connected_pair(13, link, transport);
    // 3,000 messages of 100 bytes: about 300 KB, many times the threshold.
    stream_sized(
        &mut sim,
        Channel::ReliableOrdered,
        3_000,
        100,
        Duration::from_secs(300),
    );
    assert_eq!(
        ids(&sim, Channel::ReliableOrdered),
        (0..3_000).collect::<Vec<_>>()
    );
    let generation = sim.clients[0].conn.key_generation();
    assert!(generation >= 3, "only {generation} rotations");
    let h = sim.server_handle();
    assert_eq!(
        sim.servers[0].connection(h).unwrap().key_generation(),
        generation
    );
    assert!(
        sim.clients[0]
            .events
            .iter()
            .any(|e| matches!(e, Owned::Rekeyed(_)))
    );
}

#[test]
fn time_based_rekey() {
    let transport = TransportConfig {
        rekey_after: Duration::from_millis(500),
        rekey_grace: Duration::from_millis(100),
        ..TransportConfig::default()
    };
    let mut sim = connected_pair(14, LinkConfig::perfect(5), transport);
    sim.drive(Duration::from_secs(3), |_| false);
    assert!(
        sim.clients[0].conn.key_generation() >= 4,
        "{}",
        sim.clients[0].conn.key_generation()
    );
    assert!(sim.clients[0].conn.is_established());
}

#[test]
fn migration_to_another_core_keeps_the_stream() {
    let mut sim = Sim::with_cores(
        15,
        LinkConfig {
            loss: 0.05,
            ..LinkConfig::perfect(10)
        },
        TransportConfig::default(),
        2,
    );
    let cfg = sim.client_config(Arc::new(TransportConfig::default()));
    sim.add_client(cfg);
    assert!(sim.drive(Duration::from_secs(10), |s| s.established(0)));
    let first_core = sim
        .servers
        .iter()
        .position(|s| s.connection_count() == 1)
        .unwrap();
    let other = 1 - first_core;
    // Half the stream, then move the connection, then the rest.
    let mut next = 0u32;
    let mut migrated = false;
    let ok = sim.drive(Duration::from_secs(120), |s| {
        while next < 4_000 {
            if s.clients[0]
                .conn
                .send(Channel::ReliableOrdered, &next.to_le_bytes())
                .is_err()
            {
                break;
            }
            next += 1;
            if next == 2_000 && !migrated {
                migrated = true;
                let now = s.now;
                let h = s.servers[first_core].handles().next().unwrap();
                let conn = s.servers[first_core]
                    .take_connection(h, other as u8, now)
                    .unwrap();
                s.servers[other].insert_migrated(conn, now);
            }
        }
        ids(s, Channel::ReliableOrdered).len() >= 4_000
    });
    assert!(ok, "stream stalled after migration");
    assert_eq!(
        ids(&sim, Channel::ReliableOrdered),
        (0..4_000).collect::<Vec<_>>()
    );
    let new_id = sim.clients[0].conn.connection_id();
    assert_eq!(
        new_id as u8 as usize, other,
        "the client uses the new core's id"
    );
    assert!(sim.clients[0].events.contains(&Owned::IdChanged(new_id)));
    assert_eq!(sim.servers[first_core].connection_count(), 0);
    assert_eq!(sim.servers[other].connection_count(), 1);
}

#[test]
fn large_messages_are_fragmented_and_reassembled() {
    let mut sim = connected_pair(
        16,
        LinkConfig {
            loss: 0.1,
            reorder: 0.3,
            reorder_delay: Duration::from_millis(20),
            ..LinkConfig::perfect(10)
        },
        // A 200 KB message needs budgets above the per-connection defaults
        // (docs/SECURITY.md): a server opts in explicitly.
        TransportConfig {
            receive_buffer_bytes: 256 * 1024,
            send_queue_bytes: 256 * 1024,
            ..TransportConfig::default()
        },
    );
    let big: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
    sim.clients[0]
        .conn
        .send(Channel::ReliableOrdered, &big)
        .unwrap();
    sim.clients[0]
        .conn
        .send(Channel::ReliableUnordered, &big[..5000])
        .unwrap();
    assert!(sim.drive(Duration::from_secs(60), |s| s.server_messages().len() == 2));
    let msgs = sim.server_messages();
    assert!(msgs.contains(&(Channel::ReliableOrdered, big.clone())));
    assert!(msgs.contains(&(Channel::ReliableUnordered, big[..5000].to_vec())));
    let max = TransportConfig::default().max_message_bytes;
    assert_eq!(
        sim.clients[0]
            .conn
            .send(Channel::ReliableOrdered, &vec![0; max + 1]),
        Err(SendError::TooLarge { max })
    );
    assert_eq!(
        sim.clients[0]
            .conn
            .send(Channel::Unreliable, &vec![0; max + 1]),
        Err(SendError::TooLarge { max })
    );
}

#[test]
fn a_full_reliable_queue_is_an_error_not_growth() {
    let transport = TransportConfig {
        send_queue_messages: 16,
        ..TransportConfig::default()
    };
    let mut sim = connected_pair(17, LinkConfig::perfect(10), transport);
    sim.drop_all = true;
    for i in 0..16u32 {
        sim.clients[0]
            .conn
            .send(Channel::ReliableOrdered, &i.to_le_bytes())
            .unwrap();
    }
    assert_eq!(
        sim.clients[0].conn.send(Channel::ReliableOrdered, b"more"),
        Err(SendError::QueueFull)
    );
    // Acks free the queue.
    sim.drop_all = false;
    assert!(sim.drive(Duration::from_secs(10), |s| {
        s.clients[0]
            .conn
            .send(Channel::ReliableOrdered, b"more")
            .is_ok()
    }));
}

#[test]
fn too_many_retries_disconnects() {
    let transport = TransportConfig {
        max_retries: 3,
        idle_timeout: Duration::from_secs(60),
        ..TransportConfig::default()
    };
    let mut sim = connected_pair(18, LinkConfig::perfect(10), transport);
    sim.drop_all = true;
    sim.clients[0]
        .conn
        .send(Channel::ReliableOrdered, b"lost forever")
        .unwrap();
    assert!(
        sim.drive(Duration::from_secs(30), |s| s.clients[0].events.contains(
            &Owned::Disconnected(DisconnectReason::TooManyRetries, false)
        ))
    );
}

#[test]
fn nat_rebinding_updates_the_peer_address() {
    let mut sim = connected_pair(19, LinkConfig::perfect(5), TransportConfig::default());
    sim.clients[0].addr = "127.0.0.1:50999".parse().unwrap();
    sim.clients[0]
        .conn
        .send(Channel::ReliableOrdered, b"from a new port")
        .unwrap();
    assert!(sim.drive(Duration::from_secs(2), |s| s.server_messages().len() == 1));
    let h = sim.server_handle();
    assert_eq!(
        sim.servers[0].connection(h).unwrap().remote_address(),
        sim.clients[0].addr
    );
    // Replies follow the new address.
    sim.servers[0]
        .connection_mut(h)
        .unwrap()
        .send(Channel::ReliableOrdered, b"back")
        .unwrap();
    assert!(sim.drive(Duration::from_secs(2), |s| {
        s.clients[0]
            .events
            .contains(&Owned::Message(Channel::ReliableOrdered, b"back".to_vec()))
    }));
}

#[test]
fn content_refused_for_lack_of_room_is_sent_again_not_lost() {
    // Regression: a refused packet used to be acknowledged anyway.
    let transport = TransportConfig {
        receive_buffer_bytes: 1_000,
        ..TransportConfig::default()
    };
    let mut sim = connected_pair(20, LinkConfig::perfect(10), transport);
    let a = vec![1u8; 900];
    let b = vec![2u8; 900];
    sim.clients[0]
        .conn
        .send(Channel::ReliableOrdered, &a)
        .unwrap();
    sim.clients[0]
        .conn
        .send(Channel::ReliableOrdered, &b)
        .unwrap();
    let ok = sim.drive(Duration::from_secs(10), |s| s.server_messages().len() == 2);
    let h = sim.server_handle();
    assert!(
        ok,
        "the refused message never came: client {:?} server {:?} msgs {}",
        sim.clients[0].conn.stats(),
        sim.servers[0].connection(h).unwrap().stats(),
        sim.server_messages().len()
    );
    assert_eq!(
        sim.server_messages(),
        vec![(Channel::ReliableOrdered, a), (Channel::ReliableOrdered, b)]
    );
    let h = sim.server_handle();
    assert!(
        sim.servers[0]
            .connection(h)
            .unwrap()
            .stats()
            .refused_packets
            > 0
    );
    assert!(sim.clients[0].conn.stats().retransmissions > 0);
}

#[test]
fn a_reassembled_message_refused_for_lack_of_room_is_delivered_later() {
    // Regression: a completed but undeliverable reassembly swallowed the
    // repeated piece.
    let transport = TransportConfig {
        receive_buffer_bytes: 3_000,
        ..TransportConfig::default()
    };
    let mut sim = connected_pair(21, LinkConfig::perfect(10), transport);
    let small = vec![3u8; 900];
    let big: Vec<u8> = (0..2_500u32).map(|i| i as u8).collect();
    sim.clients[0]
        .conn
        .send(Channel::ReliableUnordered, &small)
        .unwrap();
    sim.clients[0]
        .conn
        .send(Channel::ReliableUnordered, &big)
        .unwrap();
    assert!(
        sim.drive(Duration::from_secs(20), |s| s.server_messages().len() == 2),
        "{:?}",
        sim.servers[0].stats()
    );
    assert!(
        sim.server_messages()
            .contains(&(Channel::ReliableUnordered, big))
    );
}

#[test]
fn unreliable_messages_larger_than_a_datagram_arrive_whole_or_not_at_all() {
    // Perfect link: every one arrives whole and is reported acknowledged.
    // A 20 KB message is above the default per-connection budgets
    // (docs/SECURITY.md): opt in.
    let transport = TransportConfig {
        receive_buffer_bytes: 64 * 1024,
        unreliable_queue_bytes: 64 * 1024,
        ..TransportConfig::default()
    };
    let mut sim = connected_pair(22, LinkConfig::perfect(10), transport);
    let mut rng = common::Rng(5);
    let sizes = [1_500usize, 5_000, 20_000];
    let mut sent = Vec::new();
    for &n in &sizes {
        let data: Vec<u8> = (0..n).map(|_| rng.next_u64() as u8).collect();
        let token = sim.clients[0]
            .conn
            .send(Channel::Unreliable, &data)
            .unwrap();
        sent.push((token, data));
    }
    assert!(sim.drive(Duration::from_secs(5), |s| s.server_messages().len() == 3));
    for (_, data) in &sent {
        assert!(
            sim.server_messages()
                .contains(&(Channel::Unreliable, data.clone()))
        );
    }
    assert!(
        sim.drive(Duration::from_secs(2), |s| sent
            .iter()
            .all(|(t, _)| s.clients[0]
                .events
                .contains(&Owned::UnreliableAcked(*t))))
    );

    // Lossy link: each message arrives whole or not at all, never twice, and
    // each token is reported exactly once (acked only if it arrived).
    let mut sim = connected_pair(
        23,
        LinkConfig {
            loss: 0.05,
            reorder: 0.2,
            reorder_delay: Duration::from_millis(20),
            ..LinkConfig::perfect(10)
        },
        TransportConfig {
            receive_buffer_bytes: 64 * 1024,
            unreliable_queue_bytes: 64 * 1024,
            ..TransportConfig::default()
        },
    );
    let mut messages = Vec::new();
    for i in 0..60u32 {
        let mut data: Vec<u8> = (0..3_000).map(|_| rng.next_u64() as u8).collect();
        data[..4].copy_from_slice(&i.to_le_bytes());
        let token = sim.clients[0]
            .conn
            .send(Channel::Unreliable, &data)
            .unwrap();
        messages.push((token, data));
        sim.step();
        sim.now += Duration::from_millis(5);
    }
    sim.drive(Duration::from_secs(5), |_| false);
    let got = sim.server_messages();
    assert!(
        got.len() < 60 && got.len() > 20,
        "{} of 60 arrived",
        got.len()
    );
    for (_, d) in &got {
        assert!(
            messages.iter().any(|(_, m)| m == d),
            "a message arrived altered"
        );
        assert_eq!(
            got.iter().filter(|(_, x)| x == d).count(),
            1,
            "a message arrived twice"
        );
    }
    for (token, data) in &messages {
        let acked = sim.clients[0]
            .events
            .iter()
            .filter(|e| **e == Owned::UnreliableAcked(*token))
            .count();
        let lost = sim.clients[0]
            .events
            .iter()
            .filter(|e| **e == Owned::UnreliableLost(*token))
            .count();
        assert_eq!(
            acked + lost,
            1,
            "token {token} reported {acked} acked, {lost} lost"
        );
        if acked == 1 {
            assert!(
                got.iter().any(|(_, d)| d == data),
                "acked but never delivered"
            );
        }
    }
}

#[test]
fn a_removed_migrated_connection_leaves_no_id_behind() {
    let mut sim = Sim::with_cores(24, LinkConfig::perfect(5), TransportConfig::default(), 2);
    let cfg = sim.client_config(Arc::new(TransportConfig::default()));
    sim.add_client(cfg);
    assert!(sim.drive(Duration::from_secs(5), |s| s.established(0)));
    let from = sim
        .servers
        .iter()
        .position(|s| s.connection_count() == 1)
        .unwrap();
    let to = 1 - from;
    let old_id = sim.clients[0].conn.connection_id();
    let now = sim.now;
    let h = sim.servers[from].handles().next().unwrap();
    let conn = sim.servers[from].take_connection(h, to as u8, now).unwrap();
    assert!(
        sim.servers[from].handle_by_id(old_id).is_none(),
        "the old core forgets the id"
    );
    sim.servers[to].insert_migrated(conn, now);
    assert!(sim.drive(
        Duration::from_secs(5),
        |s| s.clients[0].conn.connection_id() != old_id
    ));
    let new_id = sim.clients[0].conn.connection_id();
    assert!(
        sim.servers[to].handle_by_id(old_id).is_some(),
        "the old id is an alias during the grace"
    );
    assert!(sim.servers[to].handle_by_id(new_id).is_some());
    let now = sim.now;
    sim.clients[0].conn.close(now, DisconnectReason::Graceful);
    assert!(
        sim.drive(Duration::from_secs(5), |s| s.servers[to].connection_count()
            == 0)
    );
    assert!(sim.servers[to].handle_by_id(old_id).is_none());
    assert!(sim.servers[to].handle_by_id(new_id).is_none());
}
