//! Items, equipment and chat through the real server: an inventory
//! planted in a character's row comes back at entry; equip, use and
//! pick-up work and every bad request (an item you do not have, a wrong
//! equipment slot, a pick-up with a full bag or of nothing, a potion on
//! cooldown) is refused with its reason and counted, the server unharmed
//! (and a skill on cooldown or without MP comes back as its ActionResult);
//! say, shout and whisper reach the right players across cores, and an
//! overlong line, a flood and a whisper to nobody are refused; the bag and
//! the gear cross core borders; a dropped item is refused to another
//! player during the owner window and out of reach, and of two players
//! grabbing it at once exactly one gets it.
//! 127.0.0.1 only, bounded.

mod common;

use std::time::Duration;

use common::play::{
    action_result, bag, find, heard, inventory, plant, refused, refused_raw, speak, stats,
};
use common::{Player, TestServer, enter, spec};
use tos_protocol::wire::Channel;
use tos_protocol::wire::game::{
    ChatChannel, ClientMessage, EquipSlot, MAX_CHAT_LEN, RefusalReason, ServerMessage, client_type,
    stats_cause,
};

const SWORD: u16 = 1;
const TUNIC: u16 = 4;
const POTION: u16 = 8;
const BONE: u16 = 11;

/// Enters, leaves, stops the server, plants `items` into the character's
/// row, restarts and enters again.
fn with_items(
    server: &mut TestServer,
    account: &str,
    template: u16,
    items: Vec<tos_store::SavedItem>,
) -> Player {
    let p = enter(server.handle(), spec(account, template));
    let id = p.entered.unwrap().character_id;
    p.leave();
    assert!(server.stop(), "a clean stop");
    plant(&server.database(), id, items, 1, 0);
    server.restart();
    enter(server.handle(), spec(account, template))
}

#[test]
fn items_and_equipment_and_every_bad_item_request() {
    let mut server = TestServer::start(1);
    // A full bag: potions, a sword, a tunic, then bone fragments.
    let mut items = vec![bag(0, POTION, 5), bag(1, SWORD, 1), bag(2, TUNIC, 1)];
    items.extend((3..40).map(|s| bag(s, BONE, 1)));
    let mut p = with_items(&mut server, "hoarder", 1, items);
    let counters = std::sync::Arc::clone(&server.handle().game().unwrap().services.counters);
    let (bagged, worn) = inventory(&mut p);
    assert_eq!(bagged.len(), 40, "the planted bag comes back");
    assert!(worn.is_empty());
    assert_eq!(
        (bagged[0].template, bagged[0].count),
        (POTION, 5),
        "{bagged:?}"
    );
    let before = stats(&mut p);
    assert_eq!((before.cause, before.level), (stats_cause::ENTERED, 1));

    // Bad requests: each refused with its reason.
    let use_item = |slot| ClientMessage::UseItem { slot };
    let equip = |slot, equip_slot| ClientMessage::Equip { slot, equip_slot };
    assert_eq!(refused(&mut p, use_item(45)), RefusalReason::NoSuchItem);
    assert_eq!(refused(&mut p, use_item(1)), RefusalReason::NotUsable);
    let chest = EquipSlot::Chest as u8;
    let weapon = EquipSlot::Weapon as u8;
    assert_eq!(refused(&mut p, equip(1, chest)), RefusalReason::WrongSlot);
    assert_eq!(refused(&mut p, equip(0, weapon)), RefusalReason::WrongSlot);
    assert_eq!(refused(&mut p, equip(1, 200)), RefusalReason::WrongSlot);
    assert_eq!(
        refused(&mut p, equip(50, weapon)),
        RefusalReason::NoSuchItem
    );
    assert_eq!(
        refused(
            &mut p,
            ClientMessage::Unequip {
                equip_slot: EquipSlot::Head as u8
            }
        ),
        RefusalReason::NoSuchItem
    );
    // A full bag: the pick-up is refused before the shard hears of it.
    assert_eq!(
        refused(
            &mut p,
            ClientMessage::PickUp {
                input_seq: 1_000,
                item: 1
            }
        ),
        RefusalReason::InventoryFull
    );

    // Equip the sword: it leaves the bag, attack goes up.
    p.send(Channel::ReliableOrdered, equip(1, weapon));
    let (bagged, worn) = inventory(&mut p);
    assert_eq!(bagged.len(), 39);
    assert_eq!(worn.len(), 1);
    assert_eq!((worn[0].slot, worn[0].template), (EquipSlot::Weapon, SWORD));
    let after = stats(&mut p);
    assert_eq!(after.cause, stats_cause::EQUIPMENT);
    assert!(
        after.p_atk >= before.p_atk + 7.9,
        "the sword adds 8 attack: {} -> {}",
        before.p_atk,
        after.p_atk
    );

    // A free slot now: a pick-up reaches the shard, which finds no item.
    let own = p.entity().unwrap();
    for (seq, item) in [(1_001, 987_654), (1_002, own)] {
        p.send(
            Channel::ReliableOrdered,
            ClientMessage::PickUp {
                input_seq: seq,
                item,
            },
        );
        let code = action_result(&mut p, seq);
        assert_eq!(
            tos_shards::ActionRefusal::from_code(code),
            Some(tos_shards::ActionRefusal::NoSuchItem),
            "pick-up of {item}: code {code}"
        );
    }

    // A potion: one used, the second on cooldown.
    p.send(Channel::ReliableOrdered, use_item(0));
    let (bagged, _) = inventory(&mut p);
    assert_eq!((bagged[0].template, bagged[0].count), (POTION, 4));
    assert_eq!(refused(&mut p, use_item(0)), RefusalReason::ItemCooldown);

    // Casting is the shard's business (helper C tests its rules); its
    // refusals arrive as ActionResult codes: a skill on cooldown, a skill
    // without the MP for it (a fighter has 30 MP: Whirlwind costs 15,
    // Vanish 40).
    use tos_shards::ActionRefusal as A;
    let cast = |p: &mut Player, seq: u32, skill: u16| {
        p.send(
            Channel::ReliableOrdered,
            ClientMessage::Action {
                input_seq: seq,
                action_id: skill,
                target: 0,
            },
        );
        A::from_code(action_result(p, seq))
    };
    assert_eq!(cast(&mut p, 2_001, 9), None, "Whirlwind is cast");
    assert_eq!(cast(&mut p, 2_002, 9), Some(A::OnCooldown));
    assert_eq!(cast(&mut p, 2_003, 5), Some(A::NotEnoughMana));

    // The reservations of the refused pick-ups were released: the sword
    // comes off into the free slot.
    p.send(
        Channel::ReliableOrdered,
        ClientMessage::Unequip { equip_slot: weapon },
    );
    let (bagged, worn) = inventory(&mut p);
    assert_eq!(bagged.len(), 40);
    assert!(worn.is_empty());
    assert_eq!(stats(&mut p).p_atk, before.p_atk);

    // Counted.
    assert!(counters.refusals_of(RefusalReason::NoSuchItem) >= 3);
    assert!(counters.refusals_of(RefusalReason::WrongSlot) >= 3);
    assert!(counters.refusals_of(RefusalReason::NotUsable) >= 1);
    assert!(counters.refusals_of(RefusalReason::InventoryFull) >= 1);
    assert!(counters.refusals_of(RefusalReason::ItemCooldown) >= 1);
    let count = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
    assert!(count(&counters.items_used_total) >= 1);
    assert!(count(&counters.equipment_changes_total) >= 2);
    let mut metrics = String::new();
    counters.render_prometheus(&mut metrics);
    assert!(
        metrics.contains("tos_game_refusals_total{reason=\"WrongSlot\"}"),
        "{metrics}"
    );
    // Unharmed: the player still walks and is answered.
    assert!(
        common::play(
            std::slice::from_mut(&mut p),
            Duration::from_secs(2),
            |_, _| [100.0, 0.0, 0.0],
            |ps| ps[0].snapshots > 20,
        ),
        "snapshots keep coming"
    );
}

fn say(channel: ChatChannel, target: &'static str, text: &'static str) -> ClientMessage<'static> {
    ClientMessage::Chat {
        channel,
        target,
        text,
    }
}

#[test]
fn chat_reaches_the_right_players_across_cores_and_bad_lines_are_refused() {
    // Two cores: template 1 starts in the west (core 0), template 2 in the
    // east (core 1).
    let mut server = TestServer::start(2);
    let mut a = enter(server.handle(), spec("talker", 1));
    // A new fighter starts with its template's kit: a sword, 5 potions.
    let (kit, _) = inventory(&mut a);
    let kit: Vec<_> = kit.iter().map(|i| (i.slot, i.template, i.count)).collect();
    assert_eq!(kit, [(0, SWORD, 1), (1, POTION, 5)]);
    let c = enter(server.handle(), spec("neighbour", 1));
    let b = enter(server.handle(), spec("faraway", 2));
    let c_id = c.entered.unwrap().character_id;
    let at = a.entered.unwrap().position;
    for p in [a, b, c] {
        p.leave();
    }
    assert!(server.stop());
    // The neighbour stands 5 m from the talker.
    server.place(c_id, [at[0] + 500.0, at[1], at[2]]);
    server.restart();
    let mut a = enter(server.handle(), spec("talker", 1));
    let mut c = enter(server.handle(), spec("neighbour", 1));
    let mut b = enter(server.handle(), spec("faraway", 2));
    let services = &server.handle().game().unwrap().services;
    let counters = std::sync::Arc::clone(&services.counters);
    let core_of = |p: &Player| services.registry.core_of(p.entered.unwrap().character_id);
    assert_eq!(core_of(&a), core_of(&c));
    assert_ne!(
        core_of(&a),
        core_of(&b),
        "east and west are different cores"
    );

    // A shout from the east reaches the west (another core).
    speak(&mut b, say(ChatChannel::Shout, "", "for the horde"));
    assert_eq!(
        heard(&mut a, ChatChannel::Shout),
        ("Faraway".into(), "for the horde".into())
    );
    assert_eq!(heard(&mut c, ChatChannel::Shout).1, "for the horde");
    // A whisper by name (any case) across cores, echoed to the sender.
    speak(&mut a, say(ChatChannel::Whisper, "FARAWAY", "psst"));
    assert_eq!(
        heard(&mut b, ChatChannel::Whisper),
        ("Talker".into(), "psst".into())
    );
    assert_eq!(
        heard(&mut a, ChatChannel::WhisperSent),
        ("Faraway".into(), "psst".into())
    );
    // A say: the neighbour hears it, the far player does not.
    speak(&mut a, say(ChatChannel::Say, "", "hello"));
    assert_eq!(
        heard(&mut c, ChatChannel::Say),
        ("Talker".into(), "hello".into())
    );
    b.pump_until(Duration::from_millis(500), |_| false);
    assert!(
        !b.inbox.iter().any(|m| matches!(
            ServerMessage::decode(m),
            Ok(ServerMessage::ChatMessage {
                channel: ChatChannel::Say,
                ..
            })
        )),
        "a say does not carry 2 km"
    );

    // Bad lines.
    assert_eq!(
        refused(&mut c, say(ChatChannel::Whisper, "Nobody", "hi")),
        RefusalReason::NoSuchPlayer
    );
    assert_eq!(
        refused(&mut c, say(ChatChannel::Say, "", "   ")),
        RefusalReason::ChatTooLong
    );
    assert_eq!(
        refused(&mut c, say(ChatChannel::Say, "", "fake\nline")),
        RefusalReason::Malformed
    );
    // 201 bytes do not even decode: answered ChatTooLong.
    let mut long = vec![client_type::CHAT, ChatChannel::Say as u8, 0];
    long.extend_from_slice(&[0xc9, 0x01]);
    long.extend(std::iter::repeat_n(b'a', MAX_CHAT_LEN + 1));
    assert_eq!(refused_raw(&mut c, &long), RefusalReason::ChatTooLong);
    // A flood: the talker has used 2 of its 5 tokens; of 8 more lines at
    // once, at least 4 are refused.
    a.inbox.clear();
    for _ in 0..8 {
        a.send(Channel::ReliableOrdered, say(ChatChannel::Say, "", "spam"));
    }
    let mut floods = 0;
    a.pump_until(Duration::from_secs(3), |p| {
        floods = p
            .inbox
            .iter()
            .filter(|m| {
                matches!(
                    ServerMessage::decode(m),
                    Ok(ServerMessage::Refused {
                        reason: RefusalReason::ChatFlood,
                        ..
                    })
                )
            })
            .count();
        floods >= 4
    });
    assert!(floods >= 4, "{floods} lines refused as a flood");
    assert!(counters.refusals_of(RefusalReason::ChatFlood) >= 4);
    assert!(counters.refusals_of(RefusalReason::NoSuchPlayer) >= 1);
    assert!(counters.refusals_of(RefusalReason::ChatTooLong) >= 2);
    // Still serving: the neighbour can still talk and be heard.
    speak(&mut c, say(ChatChannel::Say, "", "still here"));
    find(&mut a, "the neighbour's line", |m| match m {
        ServerMessage::ChatMessage { text, .. } if *text == "still here" => Some(()),
        _ => None,
    });
}

#[test]
fn the_inventory_and_gear_cross_core_borders() {
    // Two cores, stripes: the border is x = 0 (see world.rs).
    let mut server = TestServer::start(2);
    let p = enter(server.handle(), spec("carrier", 1));
    let id = p.entered.unwrap().character_id;
    p.leave();
    assert!(server.stop());
    plant(
        &server.database(),
        id,
        vec![bag(0, POTION, 3), bag(1, SWORD, 1)],
        1,
        0,
    );
    server.place(id, [-1_000.0, 1_000.0, 0.0]);
    server.restart();
    let mut p = enter(server.handle(), spec("carrier", 1));
    let registry = std::sync::Arc::clone(&server.handle().game().unwrap().services.registry);
    assert_eq!(registry.core_of(id), Some(0));
    let (bagged, _) = inventory(&mut p);
    assert_eq!(bagged.len(), 2);
    let base = stats(&mut p);
    p.send(
        Channel::ReliableOrdered,
        ClientMessage::Equip {
            slot: 1,
            equip_slot: EquipSlot::Weapon as u8,
        },
    );
    inventory(&mut p);
    let geared = stats(&mut p);
    assert!(geared.p_atk > base.p_atk);
    let mut players = vec![p];
    assert!(
        common::play(
            &mut players,
            Duration::from_secs(15),
            |_, _| [900.0, 0.0, 0.0],
            |ps| ps[0].position[0] > 1_000.0 && ps[0].snapshots > 30,
        ),
        "the walk did not finish"
    );
    common::play(
        &mut players,
        Duration::from_millis(500),
        |_, _| [0.0; 3],
        |_| false,
    );
    let mut p = players.pop().unwrap();
    assert_eq!(registry.core_of(id), Some(1), "handed to core 1");
    // Core 1 has the bag and the gear: a potion is drunk from the same
    // stack, and taking the sword off lowers the attack back.
    p.inbox.clear();
    p.send(Channel::ReliableOrdered, ClientMessage::UseItem { slot: 0 });
    let (bagged, worn) = inventory(&mut p);
    assert_eq!((bagged[0].template, bagged[0].count), (POTION, 2));
    assert_eq!(worn.len(), 1, "the sword is still worn");
    p.send(
        Channel::ReliableOrdered,
        ClientMessage::Unequip {
            equip_slot: EquipSlot::Weapon as u8,
        },
    );
    let (_, worn) = inventory(&mut p);
    assert!(worn.is_empty());
    let after = stats(&mut p);
    assert!(
        (after.p_atk - base.p_atk).abs() < 0.01,
        "the gear came off on core 1: {} vs {}",
        after.p_atk,
        base.p_atk
    );
}

/// The Item entity lying nearest `at` (within 2 m) in `p`'s view.
fn item_near(p: &mut Player, at: [f32; 3]) -> u32 {
    let quantizer = p.entered.unwrap().world.quantizer().unwrap();
    let mut found = None;
    let ok = p.pump_until(Duration::from_secs(5), |p| {
        found = p
            .receiver
            .visible()
            .filter(|&(_, kind, _)| kind == 6)
            .filter_map(|(id, _, q)| {
                let pos = quantizer.dequantize_position(q.position).ok()?;
                let d = (pos[0] - at[0]).hypot(pos[1] - at[1]);
                (d < 200.0).then_some((id, d))
            })
            .min_by(|a, b| a.1.total_cmp(&b.1))
            .map(|(id, _)| id);
        found.is_some()
    });
    assert!(ok, "no item entity near {at:?}");
    found.unwrap()
}

fn potions(p: &mut Player) -> u16 {
    let (bagged, _) = inventory(p);
    bagged
        .iter()
        .filter(|i| i.template == POTION)
        .map(|i| i.count)
        .sum()
}

#[test]
fn dropped_items_are_picked_up_once_by_the_right_player_in_reach() {
    use tos_shards::ActionRefusal as A;
    let mut server = TestServer::start(1);
    let accounts = ["dropper", "snatcher", "distant"];
    let mut ids = Vec::new();
    let mut at = [0.0; 3];
    for (k, a) in accounts.iter().enumerate() {
        let p = enter(server.handle(), spec(a, 1));
        if k == 0 {
            at = p.entered.unwrap().position;
        }
        ids.push(p.entered.unwrap().character_id);
        p.leave();
    }
    assert!(server.stop());
    // The snatcher 1 m from the dropper, the distant one 20 m away.
    server.place(ids[1], [at[0] + 100.0, at[1], at[2]]);
    server.place(ids[2], [at[0] + 2_000.0, at[1], at[2]]);
    server.restart();
    let mut ps: Vec<Player> = accounts
        .iter()
        .map(|a| enter(server.handle(), spec(a, 1)))
        .collect();
    for p in ps.iter_mut() {
        assert_eq!(potions(p), 5, "the starting kit");
    }
    let pick = |p: &mut Player, seq: u32, item: u32| {
        p.send(
            Channel::ReliableOrdered,
            ClientMessage::PickUp {
                input_seq: seq,
                item,
            },
        );
        A::from_code(action_result(p, seq))
    };
    // Two potions dropped: they leave the bag.
    ps[0].send(
        Channel::ReliableOrdered,
        ClientMessage::DropItem { slot: 1, count: 2 },
    );
    assert_eq!(potions(&mut ps[0]), 3);
    let item = item_near(&mut ps[1], at);
    // Someone else's loot during the owner window, and out of reach.
    assert_eq!(pick(&mut ps[1], 1, item), Some(A::NotYourLoot));
    assert_eq!(pick(&mut ps[2], 1, item), Some(A::ItemTooFar));
    // The dropper takes them back: they stack onto the potions again.
    assert_eq!(pick(&mut ps[0], 1, item), None);
    assert_eq!(potions(&mut ps[0]), 5);
    // Dropping more than the slot holds, or from an empty slot.
    assert_eq!(
        refused(&mut ps[0], ClientMessage::DropItem { slot: 1, count: 6 }),
        RefusalReason::NoSuchItem
    );
    assert_eq!(
        refused(&mut ps[0], ClientMessage::DropItem { slot: 9, count: 1 }),
        RefusalReason::NoSuchItem
    );
    // One potion dropped, the owner window left to run out, then both
    // grab it in the same moment: exactly one gets it.
    ps[0].send(
        Channel::ReliableOrdered,
        ClientMessage::DropItem { slot: 1, count: 1 },
    );
    assert_eq!(potions(&mut ps[0]), 4);
    let item = item_near(&mut ps[1], at);
    common::play(
        &mut ps,
        Duration::from_millis(10_300),
        |_, _| [0.0; 3],
        |_| false,
    );
    for p in ps.iter_mut().take(2) {
        p.inbox.clear();
        p.send(
            Channel::ReliableOrdered,
            ClientMessage::PickUp { input_seq: 2, item },
        );
        p.pump();
    }
    let results: Vec<Option<A>> = ps
        .iter_mut()
        .take(2)
        .map(|p| A::from_code(action_result(p, 2)))
        .collect();
    assert_eq!(
        results.iter().filter(|r| r.is_none()).count(),
        1,
        "exactly one pick-up succeeds: {results:?}"
    );
    assert!(results.contains(&Some(A::NoSuchItem)), "{results:?}");
    let winner = results.iter().position(Option::is_none).unwrap();
    let total = potions(&mut ps[winner]) + if winner == 0 { 5 } else { 4 };
    assert_eq!(total, 10, "no potion made or lost");
    let counters = &server.handle().game().unwrap().services.counters;
    let count = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
    assert!(count(&counters.items_dropped_total) >= 2);
    assert!(count(&counters.items_looted_total) >= 2);
    assert_eq!(count(&counters.items_lost_total), 0);
}

#[test]
fn inspect_tells_what_an_entity_is_and_refuses_what_is_not_in_sight() {
    let mut server = TestServer::start(1);
    let mut p = with_items(&mut server, "inspector", 1, vec![bag(0, POTION, 3)]);
    let me = p.entered.unwrap().entity_id;
    let info = |p: &mut Player, entity: u32| {
        p.send(Channel::ReliableOrdered, ClientMessage::Inspect { entity });
        find(p, "an EntityInfo", |m| match *m {
            ServerMessage::EntityInfo {
                entity: e,
                entity_type,
                template,
                level,
                count,
                name,
            } if e == entity => Some((entity_type, template, level, count, name.to_string())),
            _ => None,
        })
    };
    // Itself: a player (type 0) of template 1 at level 1, by its name.
    assert_eq!(info(&mut p, me), (0, 1, 1, 0, "Inspector".to_string()));
    // A potion dropped at its feet: an item (type 6) of the potion's
    // template, the stack's count and the item's name from items.ron. (The
    // world's templateless background entities include items that were
    // never dropped by anyone: the potion is the item that was not there
    // before.)
    let before: Vec<u32> = p
        .receiver
        .visible()
        .filter(|&(_, kind, _)| kind == 6)
        .map(|(id, _, _)| id)
        .collect();
    p.send(
        Channel::ReliableOrdered,
        ClientMessage::DropItem { slot: 0, count: 2 },
    );
    inventory(&mut p);
    let mut item = None;
    assert!(p.pump_until(Duration::from_secs(10), |p| {
        item = p
            .receiver
            .visible()
            .find(|&(id, kind, _)| kind == 6 && !before.contains(&id))
            .map(|(id, _, _)| id);
        item.is_some()
    }));
    let item = item.unwrap();
    let (kind, template, level, count, name) = info(&mut p, item);
    assert_eq!((kind, template, level, count), (6, POTION, 0, 2));
    assert!(!name.is_empty(), "the item's name from the data files");
    // Nothing of that id here: refused with its reason, and counted.
    let counters = std::sync::Arc::clone(&server.handle().game().unwrap().services.counters);
    let before = counters.refusals_of(RefusalReason::NoSuchEntity);
    assert_eq!(
        refused(
            &mut p,
            ClientMessage::Inspect {
                entity: 0x0fff_ffff
            }
        ),
        RefusalReason::NoSuchEntity
    );
    assert_eq!(
        counters.refusals_of(RefusalReason::NoSuchEntity),
        before + 1
    );
    // The server is unharmed: it still answers.
    assert_eq!(info(&mut p, me).0, 0);
}
