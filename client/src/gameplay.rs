//! What the server tells a playing character about itself: its inventory
//! and equipment, its level and statistics, combat events it is part of,
//! and chat lines (server messages 14–17, PROTOCOL.md §6.6). The session
//! hands those messages here and reports what changed as
//! [`SessionEvent`]s; the state stays here for the game to read.

use std::collections::{HashMap, VecDeque};

use tos_protocol::wire::game::{
    CharacterStats, ChatChannel, EQUIP_SLOTS, InventoryItem, ServerMessage,
};

use crate::session::SessionEvent;

/// Chat lines kept until the game takes them; beyond it the oldest are
/// dropped (and counted) rather than memory growing when a caller never
/// polls chat.
pub const MAX_CHAT_LINES: usize = 256;

/// The character's inventory and equipment, as the server last sent them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InventoryView {
    /// Slots the character has.
    pub capacity: u8,
    /// Weight carried.
    pub weight: u32,
    /// Most weight the character may carry.
    pub weight_limit: u32,
    /// Occupied slots, in slot order.
    pub items: Vec<InventoryItem>,
    /// Per equipment slot (`EquipSlot` order): the item template worn.
    pub equipped: [Option<u16>; EQUIP_SLOTS],
}

impl InventoryView {
    /// The first slot holding `template`, if any.
    pub fn slot_of(&self, template: u16) -> Option<u8> {
        self.items
            .iter()
            .find(|i| i.template == template)
            .map(|i| i.slot)
    }

    /// How many of `template` the inventory holds, all stacks together.
    pub fn count_of(&self, template: u16) -> u32 {
        self.items
            .iter()
            .filter(|i| i.template == template)
            .map(|i| u32::from(i.count))
            .sum()
    }

    /// Whether every slot is taken.
    pub fn is_full(&self) -> bool {
        self.items.len() >= usize::from(self.capacity)
    }
}

/// Entities whose EntityInfo is kept; past it the oldest answers are
/// forgotten (a client asks again when it needs one).
pub const MAX_INSPECTED: usize = 1024;

/// What the server said an entity is (the answer to an Inspect).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntityDetails {
    /// Its type byte (as in snapshots).
    pub entity_type: u8,
    /// NPC, character or item template.
    pub template: u16,
    /// Its level (0 for items).
    pub level: u16,
    /// Items: how many lie there.
    pub count: u16,
    /// Its name, when the answering server knows it (else empty).
    pub name: String,
}

/// One chat line received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatLine {
    /// Say, Shout, Whisper (to this character) or WhisperSent (the
    /// server's confirmation of a whisper this character sent).
    pub channel: ChatChannel,
    /// The speaker's name (the recipient's for WhisperSent).
    pub from: String,
    /// The line.
    pub text: String,
}

/// The gameplay state of a session.
#[derive(Debug, Default)]
pub(crate) struct Gameplay {
    inventory: InventoryView,
    stats: Option<CharacterStats>,
    chat: VecDeque<ChatLine>,
    chat_dropped: u64,
    inspected: HashMap<u32, EntityDetails>,
    inspected_order: VecDeque<u32>,
}

impl Gameplay {
    /// Takes a gameplay message; returns the event it causes, or `None`
    /// when the message is not a gameplay one.
    pub(crate) fn handle_message(&mut self, msg: &ServerMessage<'_>) -> Option<SessionEvent> {
        match msg {
            ServerMessage::Inventory(inv) => {
                self.inventory.capacity = inv.capacity;
                self.inventory.weight = inv.weight;
                self.inventory.weight_limit = inv.weight_limit;
                self.inventory.items.clear();
                self.inventory.items.extend(inv.items());
                self.inventory.equipped = [None; EQUIP_SLOTS];
                for e in inv.equipped() {
                    self.inventory.equipped[e.slot.index()] = Some(e.template);
                }
                Some(SessionEvent::InventoryChanged {
                    items: self.inventory.items.len() as u32,
                })
            }
            ServerMessage::CharacterStats(s) => {
                let previous = self.stats.map(|p| p.level);
                self.stats = Some(*s);
                Some(SessionEvent::StatsChanged {
                    cause: s.cause,
                    level: s.level,
                    leveled_up: previous.is_some_and(|p| s.level > p),
                })
            }
            ServerMessage::CombatEvent {
                source,
                target,
                skill,
                amount,
                flags,
            } => Some(SessionEvent::Combat {
                source: *source,
                target: *target,
                skill: *skill,
                amount: *amount,
                flags: *flags,
            }),
            ServerMessage::ChatMessage {
                channel,
                from,
                text,
            } => {
                if self.chat.len() >= MAX_CHAT_LINES {
                    self.chat.pop_front();
                    self.chat_dropped += 1;
                }
                self.chat.push_back(ChatLine {
                    channel: *channel,
                    from: (*from).to_string(),
                    text: (*text).to_string(),
                });
                Some(SessionEvent::Chat { channel: *channel })
            }
            ServerMessage::EntityInfo {
                entity,
                entity_type,
                template,
                level,
                count,
                name,
            } => {
                if !self.inspected.contains_key(entity) {
                    if self.inspected_order.len() >= MAX_INSPECTED {
                        if let Some(old) = self.inspected_order.pop_front() {
                            self.inspected.remove(&old);
                        }
                    }
                    self.inspected_order.push_back(*entity);
                }
                self.inspected.insert(
                    *entity,
                    EntityDetails {
                        entity_type: *entity_type,
                        template: *template,
                        level: *level,
                        count: *count,
                        name: (*name).to_string(),
                    },
                );
                Some(SessionEvent::Inspected { entity: *entity })
            }
            _ => None,
        }
    }

    /// Forgets what inspected entities were: after a zone transfer the
    /// new node's network ids name other entities.
    pub(crate) fn forget_entities(&mut self) {
        self.inspected.clear();
        self.inspected_order.clear();
    }

    pub(crate) fn details(&self, entity: u32) -> Option<&EntityDetails> {
        self.inspected.get(&entity)
    }

    pub(crate) fn inventory(&self) -> &InventoryView {
        &self.inventory
    }

    pub(crate) fn stats(&self) -> Option<&CharacterStats> {
        self.stats.as_ref()
    }

    pub(crate) fn poll_chat(&mut self) -> Option<ChatLine> {
        self.chat.pop_front()
    }

    pub(crate) fn chat_dropped(&self) -> u64 {
        self.chat_dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tos_protocol::wire::Writer;
    use tos_protocol::wire::game::{EquipSlot, EquippedItem, encode_inventory, stats_cause};

    fn stats(level: u16, cause: u8) -> CharacterStats {
        CharacterStats {
            cause,
            level,
            exp: 10,
            exp_next: 68,
            hp_max: 100.0,
            mp_max: 50.0,
            stats: [1, 2, 3, 4, 5, 6],
            p_atk: 1.0,
            m_atk: 1.0,
            p_def: 1.0,
            m_def: 1.0,
        }
    }

    #[test]
    fn inventory_messages_replace_the_view() {
        let mut g = Gameplay::default();
        let mut buf = [0u8; 256];
        let mut w = Writer::new(&mut buf);
        let items = [
            InventoryItem {
                slot: 0,
                template: 7,
                count: 3,
            },
            InventoryItem {
                slot: 2,
                template: 7,
                count: 2,
            },
        ];
        let worn = [EquippedItem {
            slot: EquipSlot::Chest,
            template: 40,
        }];
        encode_inventory(&mut w, 20, 30, 1000, &items, &worn).unwrap();
        let n = w.position();
        let msg = ServerMessage::decode(&buf[..n]).unwrap();
        assert_eq!(
            g.handle_message(&msg),
            Some(SessionEvent::InventoryChanged { items: 2 })
        );
        assert_eq!(g.inventory().count_of(7), 5);
        assert_eq!(g.inventory().slot_of(7), Some(0));
        assert_eq!(g.inventory().slot_of(8), None);
        assert_eq!(g.inventory().equipped[EquipSlot::Chest.index()], Some(40));
        assert_eq!(g.inventory().equipped[EquipSlot::Weapon.index()], None);
        assert!(!g.inventory().is_full());
    }

    #[test]
    fn a_level_up_is_reported_once_against_the_previous_stats() {
        let mut g = Gameplay::default();
        let e = g.handle_message(&ServerMessage::CharacterStats(stats(
            1,
            stats_cause::ENTERED,
        )));
        assert_eq!(
            e,
            Some(SessionEvent::StatsChanged {
                cause: stats_cause::ENTERED,
                level: 1,
                leveled_up: false
            })
        );
        let e = g.handle_message(&ServerMessage::CharacterStats(stats(
            2,
            stats_cause::LEVEL_UP,
        )));
        assert!(matches!(
            e,
            Some(SessionEvent::StatsChanged {
                leveled_up: true,
                level: 2,
                ..
            })
        ));
        let e = g.handle_message(&ServerMessage::CharacterStats(stats(
            2,
            stats_cause::EXPERIENCE,
        )));
        assert!(matches!(
            e,
            Some(SessionEvent::StatsChanged {
                leveled_up: false,
                ..
            })
        ));
        assert_eq!(g.stats().map(|s| s.level), Some(2));
    }

    #[test]
    fn chat_is_bounded_and_drops_the_oldest() {
        let mut g = Gameplay::default();
        for i in 0..MAX_CHAT_LINES + 3 {
            let text = format!("line {i}");
            g.handle_message(&ServerMessage::ChatMessage {
                channel: ChatChannel::Say,
                from: "Ann",
                text: &text,
            });
        }
        assert_eq!(g.chat_dropped(), 3);
        assert_eq!(g.poll_chat().map(|l| l.text), Some("line 3".to_string()));
        let mut n = 1;
        while g.poll_chat().is_some() {
            n += 1;
        }
        assert_eq!(n, MAX_CHAT_LINES);
    }

    #[test]
    fn inspected_entities_are_kept_up_to_a_bound() {
        let mut g = Gameplay::default();
        for e in 0..MAX_INSPECTED as u32 + 5 {
            let ev = g.handle_message(&ServerMessage::EntityInfo {
                entity: e,
                entity_type: 2,
                template: 5,
                level: 7,
                count: 0,
                name: "Wolf",
            });
            assert_eq!(ev, Some(SessionEvent::Inspected { entity: e }));
        }
        assert!(g.details(0).is_none(), "the oldest is forgotten");
        let d = g
            .details(MAX_INSPECTED as u32 + 4)
            .expect("the newest is kept");
        assert_eq!((d.template, d.level, d.name.as_str()), (5, 7, "Wolf"));
        assert_eq!(g.inspected.len(), MAX_INSPECTED);
    }

    #[test]
    fn other_messages_are_not_gameplay() {
        let mut g = Gameplay::default();
        assert_eq!(
            g.handle_message(&ServerMessage::ActionResult {
                input_seq: 1,
                result: 0
            }),
            None
        );
    }
}
