//! The link and the directory against a real NATS server: hand-offs with
//! acknowledgements, lost acknowledgements (never both, never neither),
//! leases (acquire, conflict, expiry, release), NATS going down and coming
//! back, garbage on a hand-off subject, and NPCs handed off under transit
//! leases.

mod common;

use std::time::{Duration, Instant};

use common::*;
use tos_cluster::{
    DirectoryAnswer, DirectoryError, HandoffOutcome, KeptReason, LinkCommand, LinkError, LinkEvent,
    NatsLink, RefuseReason, Storage, is_transit, transit_key,
};

const WAIT: Duration = Duration::from_secs(10);

fn acquire(link: &NatsLink, character: u64, name: &str) -> Result<DirectoryAnswer, LinkError> {
    ask(
        link,
        LinkCommand::Acquire {
            request: character * 1000 + 1,
            character,
            name: name.to_owned(),
        },
    )
}

fn holder(link: &NatsLink, character: u64) -> Option<String> {
    match ask(
        link,
        LinkCommand::FindLease {
            request: 77,
            character,
        },
    ) {
        Ok(DirectoryAnswer::Lease(lease)) => lease.map(|(node, _)| node),
        other => panic!("lease lookup failed: {other:?}"),
    }
}

fn hand_off(link: &NatsLink, handoff: u64, to: &str, character: u64) {
    link.send(LinkCommand::HandOff {
        handoff,
        to: to.to_owned(),
        character,
        payload: vec![7; 300],
    })
    .expect("queued");
}

fn outcome(link: &NatsLink, handoff: u64) -> HandoffOutcome {
    wait_for(link, WAIT, "hand-off outcome", |e| match e {
        LinkEvent::Handoff {
            handoff: h,
            outcome,
            ..
        } if *h == handoff => Some(outcome.clone()),
        _ => None,
    })
}

fn offer(link: &NatsLink) -> (u64, u64, Vec<u8>) {
    wait_for(link, WAIT, "offer", |e| match e {
        LinkEvent::Offer {
            token,
            character,
            payload,
            ..
        } => Some((*token, *character, payload.clone())),
        _ => None,
    })
}

fn taken(link: &NatsLink, token: u64) -> Result<u64, RefuseReason> {
    wait_for(link, WAIT, "taken / not taken", |e| match e {
        LinkEvent::Taken {
            token: t,
            character,
        } if *t == token => Some(Ok(*character)),
        LinkEvent::NotTaken { token: t, reason } if *t == token => Some(Err(*reason)),
        _ => None,
    })
}

fn drop_directory(link: &NatsLink) {
    assert_eq!(
        ask(link, LinkCommand::DropDirectory { request: 99 }),
        Ok(DirectoryAnswer::Dropped)
    );
}

#[test]
fn two_links_exchange_handoffs_with_acks() {
    let Some(url) = nats_url() else { return };
    let cluster = unique_cluster("ack");
    let west = link(&cluster, "west", &url, |_| {});
    let east = link(&cluster, "east", &url, |_| {});
    wait_up(&west);
    wait_up(&east);

    assert!(matches!(
        acquire(&west, 1, "Aelin"),
        Ok(DirectoryAnswer::Acquired { .. })
    ));
    for round in 0..3u64 {
        let (from, to, to_name) = if round % 2 == 0 {
            (&west, &east, "east")
        } else {
            (&east, &west, "west")
        };
        hand_off(from, round, to_name, 1);
        let (token, character, payload) = offer(to);
        assert_eq!((character, payload.len()), (1, 300));
        to.send(LinkCommand::Accept { token }).unwrap();
        assert_eq!(taken(to, token), Ok(1));
        assert_eq!(outcome(from, round), HandoffOutcome::Delivered);
        assert_eq!(holder(&west, 1).as_deref(), Some(to_name));
        // Whisper lookup follows the player, case-insensitively.
        assert_eq!(
            ask(
                &west,
                LinkCommand::FindPlayer {
                    request: 5,
                    name: "aELIN".into()
                }
            ),
            Ok(DirectoryAnswer::Player(Some((to_name.to_owned(), 1))))
        );
    }
    assert_eq!(west.stats().delivered + east.stats().delivered, 3);
    assert_eq!(west.stats().settled + east.stats().settled, 0);

    // A refusal leaves the entity with the sender, lease unchanged.
    hand_off(&east, 10, "west", 1);
    refuse_next_offer(&west);
    assert_eq!(
        outcome(&east, 10),
        HandoffOutcome::Kept(KeptReason::Refused(RefuseReason::Rejected))
    );
    assert_eq!(holder(&west, 1).as_deref(), Some("east"));

    // A node that does not run: nobody answers, the sender keeps it.
    hand_off(&east, 11, "north", 1);
    assert_eq!(
        outcome(&east, 11),
        HandoffOutcome::Kept(KeptReason::NoResponder)
    );
    // A character this node does not hold cannot be handed off.
    hand_off(&west, 12, "east", 1);
    assert_eq!(
        outcome(&west, 12),
        HandoffOutcome::Kept(KeptReason::NotHeld)
    );
    // A record over the limit is refused before anything is sent.
    east.send(LinkCommand::HandOff {
        handoff: 13,
        to: "west".into(),
        character: 1,
        payload: vec![0; tos_cluster::wire::MAX_PAYLOAD + 1],
    })
    .unwrap();
    assert_eq!(
        outcome(&east, 13),
        HandoffOutcome::Kept(KeptReason::Encode(tos_cluster::WireError::FieldTooLong(
            "payload"
        )))
    );
    assert_eq!(holder(&west, 1).as_deref(), Some("east"));
    drop_directory(&west);
}

#[test]
fn a_late_accept_loses_to_the_senders_settlement() {
    let Some(url) = nats_url() else { return };
    let cluster = unique_cluster("late");
    // The sender gives up after 300 ms; the receiver's offer would wait 5 s.
    let (west, east) = impatient_sender(&cluster, &url);
    assert!(acquire(&west, 2, "Bran").is_ok());

    hand_off(&west, 1, "east", 2);
    let (token, _, _) = offer(&east);
    // The ack is lost (here: it comes too late): the sender settles first
    // and keeps the entity.
    assert_eq!(
        outcome(&west, 1),
        HandoffOutcome::Kept(KeptReason::AckTimeout)
    );
    east.send(LinkCommand::Accept { token }).unwrap();
    assert_eq!(taken(&east, token), Err(RefuseReason::Superseded));
    // Exactly one holder: the sender.
    assert_eq!(holder(&east, 2).as_deref(), Some("west"));
    assert_eq!(west.stats().settled, 1);

    // The sender's renewed revision works for the next hand-off.
    hand_off(&west, 2, "east", 2);
    let (token, _, _) = offer(&east);
    east.send(LinkCommand::Accept { token }).unwrap();
    assert_eq!(taken(&east, token), Ok(2));
    assert_eq!(outcome(&west, 2), HandoffOutcome::Delivered);
    assert_eq!(holder(&west, 2).as_deref(), Some("east"));
    drop_directory(&west);
}

#[test]
fn an_offer_the_game_leaves_waiting_expires_and_the_sender_keeps_it() {
    let Some(url) = nats_url() else { return };
    let cluster = unique_cluster("expire");
    let west = link(&cluster, "west", &url, |c| {
        c.handoff_timeout = Duration::from_millis(300)
    });
    let east = link(&cluster, "east", &url, |c| {
        c.handoff_timeout = Duration::from_millis(300)
    });
    wait_up(&west);
    wait_up(&east);
    assert!(acquire(&west, 3, "Cora").is_ok());
    hand_off(&west, 1, "east", 3);
    let (token, _, _) = offer(&east);
    // The game layer never answers.
    assert_eq!(taken(&east, token), Err(RefuseReason::Expired));
    // An answer after that finds nothing to take.
    east.send(LinkCommand::Accept { token }).unwrap();
    assert_eq!(taken(&east, token), Err(RefuseReason::Expired));
    assert!(matches!(outcome(&west, 1), HandoffOutcome::Kept(_)));
    assert_eq!(holder(&west, 3).as_deref(), Some("west"));
    drop_directory(&west);
}

#[test]
fn a_lost_ack_after_the_take_delivers() {
    let Some(url) = nats_url() else { return };
    let cluster = unique_cluster("lostack");
    let west = link(&cluster, "west", &url, |c| {
        c.handoff_timeout = Duration::from_millis(300)
    });
    // Takes the lease but never acknowledges.
    let east = link(&cluster, "east", &url, |c| c.drop_acks = true);
    wait_up(&west);
    wait_up(&east);
    assert!(acquire(&west, 4, "Dara").is_ok());
    hand_off(&west, 1, "east", 4);
    let (token, _, _) = offer(&east);
    east.send(LinkCommand::Accept { token }).unwrap();
    assert_eq!(taken(&east, token), Ok(4));
    // No ack, but the directory says east: the sender forgets it.
    assert_eq!(outcome(&west, 1), HandoffOutcome::Delivered);
    assert_eq!(west.stats().settled, 1);
    assert_eq!(holder(&west, 4).as_deref(), Some("east"));
    drop_directory(&west);
}

#[test]
fn leases_conflict_expire_and_release() {
    let Some(url) = nats_url() else { return };
    let cluster = unique_cluster("lease");
    let ttl = Duration::from_secs(2);
    let west = link(&cluster, "west", &url, |c| {
        c.lease_ttl = ttl;
        c.handoff_timeout = Duration::from_millis(400);
    });
    let east = link(&cluster, "east", &url, |c| {
        c.lease_ttl = ttl;
        c.handoff_timeout = Duration::from_millis(400);
    });
    wait_up(&west);
    wait_up(&east);

    assert!(matches!(
        acquire(&west, 5, "Eda"),
        Ok(DirectoryAnswer::Acquired { .. })
    ));
    // Acquiring again here is harmless.
    assert!(acquire(&west, 5, "Eda").is_ok());
    assert_eq!(
        acquire(&east, 5, "Eda"),
        Err(LinkError::Directory(DirectoryError::Conflict {
            owner: "west".into()
        }))
    );
    // Renewals keep it across three lifetimes.
    std::thread::sleep(ttl * 3);
    assert_eq!(holder(&east, 5).as_deref(), Some("west"));
    assert!(acquire(&east, 5, "Eda").is_err());

    // Released: free for the next login, and gone from the online list.
    assert_eq!(
        ask(
            &west,
            LinkCommand::Release {
                request: 6,
                character: 5
            }
        ),
        Ok(DirectoryAnswer::Released)
    );
    assert_eq!(
        ask(
            &west,
            LinkCommand::FindPlayer {
                request: 7,
                name: "eda".into()
            }
        ),
        Ok(DirectoryAnswer::Player(None))
    );
    assert!(acquire(&east, 5, "Eda").is_ok());
    assert_eq!(
        ask(
            &west,
            LinkCommand::Release {
                request: 8,
                character: 5
            }
        ),
        Err(LinkError::NotHeld)
    );

    // East dies (its link stops, no more renewals): the lease expires by
    // itself and west can take the character.
    drop(east);
    let started = Instant::now();
    loop {
        match acquire(&west, 5, "Eda") {
            Ok(_) => break,
            Err(LinkError::Directory(DirectoryError::Conflict { .. })) => {
                assert!(started.elapsed() < ttl * 10, "the lease never expired");
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(e) => panic!("unexpected {e}"),
        }
    }
    let waited = started.elapsed();
    assert!(
        waited >= ttl / 2,
        "expired after {waited:?}, before its TTL"
    );
    assert_eq!(holder(&west, 5).as_deref(), Some("west"));
    drop_directory(&west);
}

#[test]
fn quadrant_claims_conflict_across_nodes() {
    let Some(url) = nats_url() else { return };
    let cluster = unique_cluster("quad");
    let west = link(&cluster, "west", &url, |_| {});
    let east = link(&cluster, "east", &url, |_| {});
    wait_up(&west);
    wait_up(&east);
    let half = |x0: u16| -> Vec<[u16; 3]> { (x0..x0 + 2).map(|x| [x, 0, 0]).collect() };
    assert_eq!(
        ask(
            &west,
            LinkCommand::ClaimQuadrants {
                request: 1,
                quadrants: half(0)
            }
        ),
        Ok(DirectoryAnswer::Claimed)
    );
    // Claiming again (a restart) is fine; another node is refused.
    assert_eq!(
        ask(
            &west,
            LinkCommand::ClaimQuadrants {
                request: 2,
                quadrants: half(0)
            }
        ),
        Ok(DirectoryAnswer::Claimed)
    );
    assert_eq!(
        ask(
            &east,
            LinkCommand::ClaimQuadrants {
                request: 3,
                quadrants: half(1)
            }
        ),
        Err(LinkError::Directory(DirectoryError::Conflict {
            owner: "west".into()
        }))
    );
    assert_eq!(
        ask(
            &east,
            LinkCommand::FindQuadrant {
                request: 4,
                quadrant: [1, 0, 0]
            }
        ),
        Ok(DirectoryAnswer::Quadrant(Some("west".into())))
    );
    assert_eq!(
        ask(
            &west,
            LinkCommand::UnclaimQuadrants {
                request: 5,
                quadrants: half(0)
            }
        ),
        Ok(DirectoryAnswer::Unclaimed)
    );
    assert_eq!(
        ask(
            &east,
            LinkCommand::ClaimQuadrants {
                request: 6,
                quadrants: half(1)
            }
        ),
        Ok(DirectoryAnswer::Claimed)
    );
    drop_directory(&west);
}

#[test]
fn nats_down_refuses_crossings_and_the_link_recovers() {
    let Some(binary) = nats_server_binary() else {
        return;
    };
    let mut server = PrivateNats::start(binary);
    let url = server.url();
    let cluster = unique_cluster("down");
    let west = link(&cluster, "west", &url, |c| c.storage = Storage::File);
    let east = link(&cluster, "east", &url, |c| c.storage = Storage::File);
    wait_up(&west);
    wait_up(&east);
    assert!(acquire(&west, 8, "Finn").is_ok());

    server.kill();
    wait_for(&west, WAIT, "Down", |e| {
        (*e == LinkEvent::Down).then_some(())
    });
    assert!(!west.is_up());
    // Crossings are refused at once with a clear reason; nothing is sent.
    let asked = Instant::now();
    hand_off(&west, 1, "east", 8);
    assert_eq!(
        outcome(&west, 1),
        HandoffOutcome::Kept(KeptReason::NatsDown)
    );
    assert!(asked.elapsed() < Duration::from_secs(1));
    assert_eq!(
        ask(
            &west,
            LinkCommand::FindLease {
                request: 2,
                character: 8
            }
        ),
        Err(LinkError::NatsDown)
    );

    server.restart();
    wait_up(&west);
    wait_up(&east);
    // The lease survived (file storage) and crossings work again.
    hand_off(&west, 3, "east", 8);
    let (token, _, _) = offer(&east);
    east.send(LinkCommand::Accept { token }).unwrap();
    assert_eq!(taken(&east, token), Ok(8));
    assert_eq!(outcome(&west, 3), HandoffOutcome::Delivered);
    assert_eq!(holder(&west, 8).as_deref(), Some("east"));
}

#[test]
fn a_link_started_while_nats_is_down_comes_up_later() {
    let Some(binary) = nats_server_binary() else {
        return;
    };
    let mut server = PrivateNats::start(binary);
    server.kill();
    let cluster = unique_cluster("late-up");
    let west = link(&cluster, "west", &server.url(), |_| {});
    assert_eq!(
        ask(
            &west,
            LinkCommand::FindQuadrant {
                request: 1,
                quadrant: [0, 0, 0]
            }
        ),
        Err(LinkError::NatsDown)
    );
    server.restart();
    wait_up(&west);
    assert_eq!(
        ask(
            &west,
            LinkCommand::FindQuadrant {
                request: 2,
                quadrant: [0, 0, 0]
            }
        ),
        Ok(DirectoryAnswer::Quadrant(None))
    );
}

#[test]
fn garbage_on_the_handoff_subject_is_refused_and_counted() {
    let Some(url) = nats_url() else { return };
    let cluster = unique_cluster("garbage");
    let east = link(&cluster, "east", &url, |_| {});
    wait_up(&east);
    publish_raw(
        &url,
        &format!("{cluster}.handoff.east"),
        b"\x01\x01\xff\xff\xff",
    );
    publish_raw(&url, &format!("{cluster}.handoff.east"), b"");
    let deadline = Instant::now() + WAIT;
    while east.stats().malformed_in < 2 {
        assert!(Instant::now() < deadline, "malformed offers not counted");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(east.stats().offers_in, 2);
    assert!(
        east.events()
            .try_iter()
            .all(|e| !matches!(e, LinkEvent::Offer { .. }))
    );
}

#[test]
fn bad_settings_are_refused_before_starting() {
    let mut config = tos_cluster::LinkConfig::new("ok", "Bad Name", "nats://127.0.0.1:4222");
    assert!(matches!(
        NatsLink::start(config.clone()),
        Err(LinkError::Config(_))
    ));
    config.node = "fine".into();
    config.nats_url = "nats://:::x".into();
    assert!(matches!(NatsLink::start(config), Err(LinkError::Config(_))));
}

#[test]
fn full_queues_push_back_and_no_event_is_lost() {
    let Some(url) = nats_url() else { return };
    let cluster = unique_cluster("bounds");
    let west = link(&cluster, "west", &url, |c| {
        c.command_capacity = 4;
        c.event_capacity = 2;
        c.max_pending = 2;
    });
    wait_up(&west);
    // Nobody reads events while 40 requests go in: the command queue says
    // Busy when full, and the events wait in the bounded backlog.
    let mut sent = Vec::new();
    let mut busy = 0;
    for request in 100..140u64 {
        match west.send(LinkCommand::FindQuadrant {
            request,
            quadrant: [0, 0, 0],
        }) {
            Ok(()) => sent.push(request),
            Err(LinkError::Busy) => {
                busy += 1;
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => panic!("unexpected {e}"),
        }
    }
    assert!(busy > 0, "a 4-slot queue never filled");
    let mut answered = Vec::new();
    while answered.len() < sent.len() {
        match west
            .events()
            .recv_timeout(WAIT)
            .expect("every request answered")
        {
            LinkEvent::Reply { request, result } => {
                assert_eq!(result, Ok(DirectoryAnswer::Quadrant(None)));
                answered.push(request);
            }
            _ => continue,
        }
    }
    answered.sort_unstable();
    assert_eq!(answered, sent);
    assert!(west.stats().events_backlogged > 0);
    drop_directory(&west);
}

#[test]
fn link_settings_come_from_the_cluster_file() {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/cluster-2nodes.ron");
    let cluster = tos_cluster::Cluster::load(&path).expect("example loads");
    let east = cluster.node_index("east").expect("east");
    let config = tos_cluster::LinkConfig::for_node(&cluster, east).expect("node");
    assert_eq!(
        (config.cluster.as_str(), config.node.as_str()),
        ("shadowland", "east")
    );
    assert_eq!(config.nats_url, "nats://127.0.0.1:4222");
    assert_eq!(config.lease_ttl, Duration::from_secs(30));
    assert_eq!(config.handoff_timeout, Duration::from_secs(2));
    assert!(tos_cluster::LinkConfig::for_node(&cluster, 2).is_none());
}

#[test]
fn nats_lost_mid_crossing_settles_on_exactly_one_node() {
    let Some(binary) = nats_server_binary() else {
        return;
    };
    let mut server = PrivateNats::start(binary);
    let url = server.url();
    let cluster = unique_cluster("mid");
    let west = link(&cluster, "west", &url, |c| {
        c.storage = Storage::File;
        c.handoff_timeout = Duration::from_millis(800);
    });
    let east = link(&cluster, "east", &url, |c| c.storage = Storage::File);
    wait_up(&west);
    wait_up(&east);
    assert!(acquire(&west, 11, "Gale").is_ok());

    hand_off(&west, 1, "east", 11);
    let (token, _, _) = offer(&east);
    // NATS dies between the offer and the accept: the receiver cannot take
    // the lease, the sender gets no ack; both wait for the directory.
    server.kill();
    wait_for(&east, WAIT, "Down", |e| {
        (*e == LinkEvent::Down).then_some(())
    });
    east.send(LinkCommand::Accept { token }).unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    server.restart();

    let sender = outcome(&west, 1);
    let receiver = taken(&east, token);
    let holder = holder(&west, 11);
    match (&sender, receiver) {
        (HandoffOutcome::Delivered, Ok(11)) => assert_eq!(holder.as_deref(), Some("east")),
        (HandoffOutcome::Kept(KeptReason::AckTimeout), Err(RefuseReason::Superseded)) => {
            assert_eq!(holder.as_deref(), Some("west"))
        }
        other => panic!("both or neither: {other:?}, lease with {holder:?}"),
    }
}

#[test]
fn a_lease_that_expired_during_an_outage_is_taken_again() {
    let Some(binary) = nats_server_binary() else {
        return;
    };
    let mut server = PrivateNats::start(binary);
    let url = server.url();
    let cluster = unique_cluster("outage");
    let ttl = Duration::from_secs(1);
    let west = link(&cluster, "west", &url, |c| {
        c.storage = Storage::File;
        c.lease_ttl = ttl;
        c.handoff_timeout = Duration::from_millis(200);
    });
    wait_up(&west);
    let revision = match acquire(&west, 12, "Hale") {
        Ok(DirectoryAnswer::Acquired { revision }) => revision,
        other => panic!("acquire: {other:?}"),
    };
    // NATS is away for longer than the TTL: on restart it drops the lease
    // as too old; the holder, still running the character, takes it again.
    server.kill();
    std::thread::sleep(ttl * 5 / 2);
    server.restart();
    wait_up(&west);
    let deadline = Instant::now() + WAIT;
    loop {
        let lease = ask(
            &west,
            LinkCommand::FindLease {
                request: 3,
                character: 12,
            },
        );
        if let Ok(DirectoryAnswer::Lease(Some((node, r)))) = lease {
            if r != revision {
                assert_eq!(node, "west");
                break;
            }
        }
        assert!(Instant::now() < deadline, "the lease was not taken again");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_lease_released_by_the_receiver_before_settlement_is_delivered() {
    let Some(url) = nats_url() else { return };
    let cluster = unique_cluster("released");
    let west = link(&cluster, "west", &url, |c| {
        c.handoff_timeout = Duration::from_millis(1500)
    });
    let east = link(&cluster, "east", &url, |c| c.drop_acks = true);
    wait_up(&west);
    wait_up(&east);
    assert!(acquire(&west, 13, "Ivo").is_ok());
    hand_off(&west, 1, "east", 13);
    let (token, _, _) = offer(&east);
    east.send(LinkCommand::Accept { token }).unwrap();
    assert_eq!(taken(&east, token), Ok(13));
    // The player logs out on east before west has settled its lost ack.
    assert_eq!(
        ask(
            &east,
            LinkCommand::Release {
                request: 2,
                character: 13
            }
        ),
        Ok(DirectoryAnswer::Released)
    );
    // West must not take the lease back with its stale copy.
    assert_eq!(outcome(&west, 1), HandoffOutcome::Delivered);
    assert_eq!(holder(&west, 13), None);
    drop_directory(&west);
}

fn hand_off_npc(link: &NatsLink, handoff: u64, to: &str, key: u64) {
    link.send(LinkCommand::HandOffTransit {
        handoff,
        to: to.to_owned(),
        key,
        payload: vec![9; 200],
    })
    .expect("queued");
}

#[test]
fn npcs_move_under_transit_leases_exactly_once() {
    let Some(url) = nats_url() else { return };
    let cluster = unique_cluster("transit");
    let (west, east) = impatient_sender(&cluster, &url);
    let (a, b, c, d) = (
        transit_key(0, 1),
        transit_key(0, 2),
        transit_key(1, 1),
        transit_key(0, 3),
    );
    assert!(is_transit(a) && !is_transit(1));
    assert_ne!(a, c, "two nodes' serials never meet");

    // Delivered: the receiver takes the transit lease and runs the NPC.
    hand_off_npc(&west, 1, "east", a);
    let (token, key, payload) = offer(&east);
    assert_eq!((key, payload.len()), (a, 200));
    east.send(LinkCommand::Accept { token }).unwrap();
    assert_eq!(taken(&east, token), Ok(a));
    assert_eq!(outcome(&west, 1), HandoffOutcome::Delivered);
    assert_eq!(holder(&west, a).as_deref(), Some("east"));

    // The ack comes too late: the sender settles first and keeps it; the
    // receiver's late take fails. Exactly one runs it.
    hand_off_npc(&west, 2, "east", b);
    let (token, _, _) = offer(&east);
    assert_eq!(
        outcome(&west, 2),
        HandoffOutcome::Kept(KeptReason::AckTimeout)
    );
    east.send(LinkCommand::Accept { token }).unwrap();
    assert_eq!(taken(&east, token), Err(RefuseReason::Superseded));
    assert_eq!(holder(&east, b).as_deref(), Some("west"));

    // A refusal keeps it with the sender; a key in use is not offered twice.
    hand_off_npc(&east, 3, "west", c);
    refuse_next_offer(&west);
    assert_eq!(
        outcome(&east, 3),
        HandoffOutcome::Kept(KeptReason::Refused(RefuseReason::Rejected))
    );
    // `a` is the east's now (it took it above): the west cannot use it.
    hand_off_npc(&west, 4, "east", a);
    assert_eq!(
        outcome(&west, 4),
        HandoffOutcome::Kept(KeptReason::InProgress)
    );
    // A character id is not a transit key.
    hand_off_npc(&west, 5, "east", 5);
    assert_eq!(outcome(&west, 5), HandoffOutcome::Kept(KeptReason::NotHeld));
    // A node that does not run: kept at once.
    hand_off_npc(&west, 7, "north", d);
    assert_eq!(
        outcome(&west, 7),
        HandoffOutcome::Kept(KeptReason::NoResponder)
    );
    drop_directory(&west);
}

/// West gives up on a hand-off after 300 ms; east's offers would wait 5 s,
/// so a late answer from east meets west's settlement. Both are up.
fn impatient_sender(cluster: &str, url: &str) -> (NatsLink, NatsLink) {
    let west = link(cluster, "west", url, |c| {
        c.handoff_timeout = Duration::from_millis(300)
    });
    let east = link(cluster, "east", url, |c| {
        c.handoff_timeout = Duration::from_secs(5)
    });
    wait_up(&west);
    wait_up(&east);
    (west, east)
}

/// Waits for `link`'s next offer and refuses it as the game would.
fn refuse_next_offer(link: &NatsLink) {
    let (token, _, _) = offer(link);
    link.send(LinkCommand::Refuse {
        token,
        reason: RefuseReason::Rejected,
    })
    .unwrap();
}
