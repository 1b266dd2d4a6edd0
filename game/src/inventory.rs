//! A playing character's inventory and equipment as a plain state
//! machine: slots with stacks, a slot and a weight limit, pick-up
//! reservations, equip and unequip into the right slot only, consumable
//! cooldowns, and the gear bonuses the worn items add up to.
//!
//! It does no I/O and knows nothing of the shard: [`crate::core`] asks it
//! whether a request is allowed, tells the shard, and then commits the
//! change here. It travels with the session on a hand-off between cores
//! (inside [`crate::session::PlayingCharacter`]) and is saved as a list of
//! [`SavedItem`]s in the character's row.
//!
//! Item ownership: an item is in exactly one place — a bag slot, a worn
//! slot, or (before a pick-up) the world. A pick-up first *reserves* room
//! here (so the item can always be added when the shard says it is ours),
//! then the shard despawns the item and reports it looted; the reservation
//! is released when the pick-up's result arrives, or after a timeout if
//! it never does (the hand-off of a player mid-pick-up).

use tos_protocol::wire::game::{
    EQUIP_SLOTS, EquipSlot, EquippedItem, InventoryItem, MAX_INVENTORY_SLOTS, RefusalReason,
};
use tos_shards::combat::MAX_CARRIED_MS;
use tos_shards::combat::formula::ms_to_ticks;
use tos_store::{ItemPlace, SavedItem};

/// Inventory slots of every character.
pub const CAPACITY: u8 = 40;
/// The most a character may carry, worn items included (game weight
/// units; the example data weighs a potion 50 and a sword 1,500).
pub const WEIGHT_LIMIT: u32 = 60_000;
/// Pick-ups in flight per character: a client spamming PickUp cannot
/// reserve the whole inventory.
pub const MAX_PENDING_PICKUPS: usize = 4;

/// Stat bonuses of worn items: the data files' type, summed with
/// [`StatBonus::plus`] and handed to the shard as they are.
pub use tos_config::StatBonus;

/// What using a consumable does.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct ConsumableRule {
    /// HP restored.
    pub hp: f32,
    /// MP restored.
    pub mp: f32,
    /// Time before an item of the same template can be used again, ms.
    pub cooldown_ms: u32,
}

/// The game-layer rules of one item template.
#[derive(Debug, Clone, PartialEq)]
pub struct ItemRule {
    /// The template id.
    pub template: u16,
    /// The most items of this template one slot holds (1 = no stacking).
    pub stack_max: u16,
    /// Weight of one item.
    pub weight: u32,
    /// Where it is worn, if it is equipment.
    pub equip: Option<EquipSlot>,
    /// What using it does, if it is a consumable.
    pub consumable: Option<ConsumableRule>,
    /// What wearing it adds.
    pub bonus: StatBonus,
}

/// Every item template's rules, indexed by template id.
#[derive(Debug, Clone, Default)]
pub struct ItemBook {
    rules: Vec<Option<ItemRule>>,
}

impl ItemBook {
    /// A book of `rules`; refuses a template given twice, a stack size of
    /// 0, or equipment that stacks (one worn slot holds one item).
    pub fn new(rules: impl IntoIterator<Item = ItemRule>) -> Result<Self, String> {
        let mut book = Self::default();
        for r in rules {
            let t = usize::from(r.template);
            if r.stack_max == 0 {
                return Err(format!("item {}: stack_max must be at least 1", r.template));
            }
            if r.equip.is_some() && r.stack_max != 1 {
                return Err(format!("item {}: equipment cannot stack", r.template));
            }
            if book.rules.len() <= t {
                book.rules.resize(t + 1, None);
            }
            if book.rules[t].is_some() {
                return Err(format!("item {} is defined twice", r.template));
            }
            book.rules[t] = Some(r);
        }
        Ok(book)
    }

    /// The book of the game data's item templates (`items.ron`, already
    /// validated by `tos_config`).
    pub fn from_data(data: &tos_config::CombatData) -> Result<Self, String> {
        Self::new(data.items.iter().map(rule_of))
    }

    /// The rules of a template.
    pub fn get(&self, template: u16) -> Option<&ItemRule> {
        self.rules.get(usize::from(template))?.as_ref()
    }

    fn weight(&self, template: u16) -> u32 {
        self.get(template).map_or(0, |r| r.weight)
    }

    fn stack_max(&self, template: u16) -> u16 {
        self.get(template).map_or(1, |r| r.stack_max)
    }
}

/// The game-layer rules of an item template of the data files.
pub fn rule_of(t: &tos_config::ItemTemplate) -> ItemRule {
    ItemRule {
        template: t.id,
        stack_max: t.max_stack.max(1),
        weight: t.weight,
        equip: t.slot.map(tos_config::EquipSlot::wire),
        consumable: t.consumable.map(|c| ConsumableRule {
            hp: c.hp as f32,
            mp: c.mp as f32,
            cooldown_ms: c.cooldown_ms,
        }),
        bonus: t.bonus,
    }
}

/// A new character's bag from its template's starting items (validated
/// against the item data at load): each entry into the first free slots,
/// stacking as the item allows.
pub fn starting_items(kit: &[(u16, u16)], book: &ItemBook) -> Vec<SavedItem> {
    let mut inv = Inventory::default();
    for &(template, count) in kit {
        inv.add(template, count, book);
    }
    inv.to_saved()
}

/// A stack of items in one slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stack {
    /// The template.
    pub template: u16,
    /// How many (≥ 1).
    pub count: u16,
}

/// A pick-up waiting for the shard's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Pending {
    input_seq: u32,
    /// The tick after which the reservation lapses.
    expires: u32,
}

/// What an equip did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Equipped {
    /// The item now worn.
    pub template: u16,
    /// The item it replaced, now in the freed bag slot.
    pub replaced: Option<u16>,
}

/// One character's inventory and equipment.
#[derive(Debug, Clone, PartialEq)]
pub struct Inventory {
    bag: Vec<Option<Stack>>,
    worn: [Option<u16>; EQUIP_SLOTS],
    weight_limit: u32,
    pending: Vec<Pending>,
    /// Template → the tick it can be used again.
    cooldowns: Vec<(u16, u32)>,
    /// Bumped by every change of what is where (not by reservations or
    /// cooldowns): the save pass compares it instead of the lists.
    revision: u32,
}

impl Default for Inventory {
    fn default() -> Self {
        Self::new(CAPACITY, WEIGHT_LIMIT)
    }
}

impl Inventory {
    /// An empty inventory of `capacity` slots (at most 64).
    pub fn new(capacity: u8, weight_limit: u32) -> Self {
        let capacity = usize::from(capacity).min(MAX_INVENTORY_SLOTS);
        Self {
            bag: vec![None; capacity],
            worn: [None; EQUIP_SLOTS],
            weight_limit,
            pending: Vec::with_capacity(MAX_PENDING_PICKUPS),
            cooldowns: Vec::new(),
            revision: 0,
        }
    }

    /// Changes with every change of what is where.
    pub fn revision(&self) -> u32 {
        self.revision
    }

    /// The inventory a saved list describes. Items in a place that does not
    /// exist (a slot past the capacity, a second item in one place) move to
    /// the first free bag slot; the count of items that found no room is
    /// returned (only a hand-edited row can have any).
    pub fn from_saved(items: &[SavedItem], capacity: u8, weight_limit: u32) -> (Self, usize) {
        let mut inv = Self::new(capacity, weight_limit);
        let mut homeless = Vec::new();
        for i in items {
            let stack = Stack {
                template: i.template,
                count: i.count,
            };
            let placed = match i.place {
                ItemPlace::Bag(s) => match inv.bag.get_mut(usize::from(s)) {
                    Some(slot @ None) => {
                        *slot = Some(stack);
                        true
                    }
                    _ => false,
                },
                ItemPlace::Worn(s) => match inv.worn.get_mut(usize::from(s)) {
                    Some(slot @ None) if i.count == 1 => {
                        *slot = Some(i.template);
                        true
                    }
                    _ => false,
                },
            };
            if !placed && i.count > 0 {
                homeless.push(stack);
            }
        }
        let mut lost = 0;
        for stack in homeless {
            match inv.bag.iter_mut().find(|s| s.is_none()) {
                Some(slot) => *slot = Some(stack),
                None => lost += 1,
            }
        }
        (inv, lost)
    }

    /// The list the store saves: bag slots in order, then worn slots.
    pub fn to_saved(&self) -> Vec<SavedItem> {
        let mut out = Vec::with_capacity(self.bag.len() + EQUIP_SLOTS);
        self.saved_into(&mut out);
        out
    }

    /// [`Inventory::to_saved`] into a reused vector.
    pub fn saved_into(&self, out: &mut Vec<SavedItem>) {
        out.clear();
        for (i, s) in self.bag.iter().enumerate() {
            if let Some(s) = s {
                out.push(SavedItem {
                    place: ItemPlace::Bag(i as u8),
                    template: s.template,
                    count: s.count,
                });
            }
        }
        for (i, w) in self.worn.iter().enumerate() {
            if let Some(t) = w {
                out.push(SavedItem {
                    place: ItemPlace::Worn(i as u8),
                    template: *t,
                    count: 1,
                });
            }
        }
    }

    /// Number of bag slots.
    pub fn capacity(&self) -> u8 {
        self.bag.len() as u8
    }

    /// The weight limit.
    pub fn weight_limit(&self) -> u32 {
        self.weight_limit
    }

    /// What the bag and the worn items weigh.
    pub fn weight(&self, book: &ItemBook) -> u32 {
        let bag: u64 = self
            .bag
            .iter()
            .flatten()
            .map(|s| u64::from(book.weight(s.template)) * u64::from(s.count))
            .sum();
        let worn: u64 = self
            .worn
            .iter()
            .flatten()
            .map(|&t| u64::from(book.weight(t)))
            .sum();
        u32::try_from(bag + worn).unwrap_or(u32::MAX)
    }

    /// The stack in a bag slot.
    pub fn slot(&self, slot: u8) -> Option<Stack> {
        self.bag.get(usize::from(slot)).copied().flatten()
    }

    /// The item worn in an equip slot.
    pub fn worn(&self, slot: EquipSlot) -> Option<u16> {
        self.worn[slot.index()]
    }

    /// How many of a template the bag holds.
    pub fn count_of(&self, template: u16) -> u32 {
        self.bag
            .iter()
            .flatten()
            .filter(|s| s.template == template)
            .map(|s| u32::from(s.count))
            .sum()
    }

    fn free_slots(&self) -> usize {
        self.bag.iter().filter(|s| s.is_none()).count()
    }

    /// Free slots not promised to a pick-up in flight.
    fn unreserved_slots(&self) -> usize {
        self.free_slots().saturating_sub(self.pending.len())
    }

    /// The occupied bag slots, as the wire lists them.
    pub fn items(&self) -> impl Iterator<Item = InventoryItem> + '_ {
        self.bag.iter().enumerate().filter_map(|(i, s)| {
            s.map(|s| InventoryItem {
                slot: i as u8,
                template: s.template,
                count: s.count,
            })
        })
    }

    /// The worn items, as the wire lists them.
    pub fn equipped(&self) -> impl Iterator<Item = EquippedItem> + '_ {
        EquipSlot::ALL
            .iter()
            .zip(&self.worn)
            .filter_map(|(&slot, w)| w.map(|template| EquippedItem { slot, template }))
    }

    /// What the worn items add up to.
    pub fn gear(&self, book: &ItemBook) -> StatBonus {
        self.worn
            .iter()
            .flatten()
            .filter_map(|t| book.get(*t))
            .fold(StatBonus::default(), |g, r| g.plus(r.bonus))
    }

    // --------------------------------------------------------------
    // Pick-up
    // --------------------------------------------------------------

    /// Reserves room for a pick-up (`input_seq`) until the tick `expires`.
    /// `item` is the item's template and count when the game layer knows
    /// them (then stacking and weight are checked exactly); otherwise one
    /// free slot is reserved, which any single stack fits in.
    pub fn reserve_pickup(
        &mut self,
        input_seq: u32,
        expires: u32,
        item: Option<(u16, u16)>,
        book: &ItemBook,
    ) -> Result<(), RefusalReason> {
        if self.pending.len() >= MAX_PENDING_PICKUPS {
            return Err(RefusalReason::RateLimited);
        }
        if let Some((template, count)) = item {
            let extra = u64::from(book.weight(template)) * u64::from(count);
            if u64::from(self.weight(book)) + extra > u64::from(self.weight_limit) {
                return Err(RefusalReason::TooHeavy);
            }
        }
        // Always one whole free slot: the stack the item would join may
        // fill up before it arrives.
        if self.unreserved_slots() == 0 {
            return Err(RefusalReason::InventoryFull);
        }
        self.pending.push(Pending { input_seq, expires });
        Ok(())
    }

    /// The pick-up `input_seq` got its verdict: its reservation is
    /// released. False if there was none (not a pick-up of ours).
    pub fn settle_pickup(&mut self, input_seq: u32) -> bool {
        match self.pending.iter().position(|p| p.input_seq == input_seq) {
            Some(i) => {
                self.pending.swap_remove(i);
                true
            }
            None => false,
        }
    }

    /// Whether a pick-up with this sequence is in flight.
    pub fn is_pending(&self, input_seq: u32) -> bool {
        self.pending.iter().any(|p| p.input_seq == input_seq)
    }

    /// Drops reservations whose verdict never came by `tick`, and
    /// cooldowns that ran out.
    pub fn expire(&mut self, tick: u32) {
        self.pending.retain(|p| p.expires > tick);
        self.cooldowns.retain(|&(_, ready)| ready > tick);
    }

    /// Adds items: onto stacks of the template with room first, then into
    /// free slots. Returns how many found no room (0 = all added).
    pub fn add(&mut self, template: u16, count: u16, book: &ItemBook) -> u16 {
        self.revision = self.revision.wrapping_add(1);
        let max = book.stack_max(template);
        let mut left = count;
        for s in self.bag.iter_mut().flatten() {
            if left == 0 {
                break;
            }
            if s.template == template && s.count < max {
                let n = left.min(max - s.count);
                s.count += n;
                left -= n;
            }
        }
        for slot in &mut self.bag {
            if left == 0 {
                break;
            }
            if slot.is_none() {
                let n = left.min(max);
                *slot = Some(Stack { template, count: n });
                left -= n;
            }
        }
        left
    }

    /// Whether `count` items of bag slot `slot` can be taken out (to drop
    /// them): the slot's template if so.
    pub fn check_take(&self, slot: u8, count: u16) -> Result<u16, RefusalReason> {
        match self.slot(slot) {
            Some(s) if count >= 1 && count <= s.count => Ok(s.template),
            _ => Err(RefusalReason::NoSuchItem),
        }
    }

    /// Takes `count` items out of bag slot `slot` (checked with
    /// [`Inventory::check_take`]); the slot empties at 0.
    pub fn take(&mut self, slot: u8, count: u16) {
        let Some(entry) = self.bag.get_mut(usize::from(slot)) else {
            return;
        };
        let Some(stack) = entry.as_mut() else {
            return;
        };
        self.revision = self.revision.wrapping_add(1);
        stack.count = stack.count.saturating_sub(count);
        if stack.count == 0 {
            *entry = None;
        }
    }

    // --------------------------------------------------------------
    // Equipment
    // --------------------------------------------------------------

    /// Wears the item of bag slot `slot` in equip slot `equip` (a raw
    /// wire byte). The item must be equipment of exactly that slot; an
    /// item already worn there moves into the freed bag slot.
    pub fn equip(
        &mut self,
        slot: u8,
        equip: u8,
        book: &ItemBook,
    ) -> Result<Equipped, RefusalReason> {
        let stack = self.slot(slot).ok_or(RefusalReason::NoSuchItem)?;
        let target = EquipSlot::from_u8(equip).ok_or(RefusalReason::WrongSlot)?;
        let rule = book.get(stack.template).ok_or(RefusalReason::WrongSlot)?;
        if rule.equip != Some(target) || stack.count != 1 {
            return Err(RefusalReason::WrongSlot);
        }
        self.revision = self.revision.wrapping_add(1);
        let replaced = self.worn[target.index()].replace(stack.template);
        self.bag[usize::from(slot)] = replaced.map(|template| Stack { template, count: 1 });
        Ok(Equipped {
            template: stack.template,
            replaced,
        })
    }

    /// Takes off the item worn in `equip` (a raw wire byte) into the first
    /// free bag slot not promised to a pick-up. Returns its template.
    pub fn unequip(&mut self, equip: u8) -> Result<u16, RefusalReason> {
        let target = EquipSlot::from_u8(equip).ok_or(RefusalReason::NoSuchItem)?;
        let template = self.worn[target.index()].ok_or(RefusalReason::NoSuchItem)?;
        if self.unreserved_slots() == 0 {
            return Err(RefusalReason::InventoryFull);
        }
        let free = self
            .bag
            .iter_mut()
            .find(|s| s.is_none())
            .ok_or(RefusalReason::InventoryFull)?;
        *free = Some(Stack { template, count: 1 });
        self.worn[target.index()] = None;
        self.revision = self.revision.wrapping_add(1);
        Ok(template)
    }

    // --------------------------------------------------------------
    // Consumables
    // --------------------------------------------------------------

    /// Whether the item of bag slot `slot` can be used at `tick`: its
    /// template and effect if so.
    pub fn check_use(
        &self,
        slot: u8,
        tick: u32,
        book: &ItemBook,
    ) -> Result<(u16, ConsumableRule), RefusalReason> {
        let stack = self.slot(slot).ok_or(RefusalReason::NoSuchItem)?;
        let effect = book
            .get(stack.template)
            .and_then(|r| r.consumable)
            .ok_or(RefusalReason::NotUsable)?;
        if self
            .cooldowns
            .iter()
            .any(|&(t, ready)| t == stack.template && ready > tick)
        {
            return Err(RefusalReason::ItemCooldown);
        }
        Ok((stack.template, effect))
    }

    /// The item cooldowns still running at `tick`, as (template,
    /// milliseconds left) at `tick_hz`: they travel with a player to
    /// another node.
    pub fn carried_cooldowns(&self, tick: u32, tick_hz: u32) -> Vec<(u16, u32)> {
        let hz = u64::from(tick_hz.max(1));
        self.cooldowns
            .iter()
            .filter(|&&(_, ready)| ready > tick)
            .map(|&(template, ready)| {
                let ms = u64::from(ready - tick) * 1000 / hz;
                (template, ms.min(u64::from(MAX_CARRIED_MS)) as u32)
            })
            .filter(|&(_, ms)| ms > 0)
            .collect()
    }

    /// Starts carried item cooldowns (from another node) at `tick`;
    /// times are cut to an hour.
    pub fn restore_cooldowns(&mut self, carried: &[(u16, u32)], tick: u32, tick_hz: u32) {
        for &(template, ms) in carried {
            let ticks = ms_to_ticks(ms.min(MAX_CARRIED_MS), tick_hz);
            if ticks == 0 {
                continue;
            }
            let ready = tick.saturating_add(ticks);
            match self.cooldowns.iter_mut().find(|(t, _)| *t == template) {
                Some(c) => c.1 = c.1.max(ready),
                None => self.cooldowns.push((template, ready)),
            }
        }
    }

    /// Consumes one item of bag slot `slot` (checked with
    /// [`Inventory::check_use`]) and starts its template's cooldown of
    /// `cooldown_ticks`.
    pub fn consume(&mut self, slot: u8, tick: u32, cooldown_ticks: u32) {
        let Some(entry) = self.bag.get_mut(usize::from(slot)) else {
            return;
        };
        let Some(stack) = entry.as_mut() else {
            return;
        };
        let template = stack.template;
        self.revision = self.revision.wrapping_add(1);
        stack.count -= 1;
        if stack.count == 0 {
            *entry = None;
        }
        if cooldown_ticks > 0 {
            let ready = tick.saturating_add(cooldown_ticks);
            match self.cooldowns.iter_mut().find(|(t, _)| *t == template) {
                Some(c) => c.1 = ready,
                None => self.cooldowns.push((template, ready)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn item_cooldowns_are_carried_as_time_left() {
        let a = super::Inventory {
            cooldowns: vec![(3, 1_060), (4, 900)],
            ..Default::default()
        };
        // At tick 1,000 and 60 Hz: template 3 has 60 ticks (1 s) left,
        // template 4 is ready.
        let carried = a.carried_cooldowns(1_000, 60);
        assert_eq!(carried, [(3, 1_000)]);
        let mut b = super::Inventory::default();
        b.restore_cooldowns(&carried, 50, 60);
        assert_eq!(b.cooldowns, [(3, 110)]);
        assert_eq!(b.carried_cooldowns(50, 60), carried);
        b.restore_cooldowns(&[(3, u32::MAX)], 50, 60);
        assert_eq!(b.carried_cooldowns(50, 60), [(3, 3_600_000)]);
    }

    use super::*;

    const POTION: u16 = 100;
    const SWORD: u16 = 2;
    const AXE: u16 = 3;
    const CHEST: u16 = 20;
    const ORE: u16 = 200;

    fn book() -> ItemBook {
        let equip = |template, slot, p_atk, p_def| ItemRule {
            template,
            stack_max: 1,
            weight: 1_500,
            equip: Some(slot),
            consumable: None,
            bonus: StatBonus {
                p_atk,
                p_def,
                ..StatBonus::default()
            },
        };
        ItemBook::new([
            ItemRule {
                template: POTION,
                stack_max: 20,
                weight: 50,
                equip: None,
                consumable: Some(ConsumableRule {
                    hp: 50.0,
                    mp: 0.0,
                    cooldown_ms: 10_000,
                }),
                bonus: StatBonus::default(),
            },
            equip(SWORD, EquipSlot::Weapon, 10.0, 0.0),
            equip(AXE, EquipSlot::Weapon, 14.0, 0.0),
            equip(CHEST, EquipSlot::Chest, 0.0, 25.0),
            ItemRule {
                template: ORE,
                stack_max: 100,
                weight: 10_000,
                equip: None,
                consumable: None,
                bonus: StatBonus::default(),
            },
        ])
        .unwrap()
    }

    #[test]
    fn stacks_fill_before_new_slots_and_the_slot_limit_holds() {
        let b = book();
        let mut inv = Inventory::new(3, u32::MAX);
        assert_eq!(inv.add(POTION, 15, &b), 0);
        assert_eq!(inv.add(POTION, 10, &b), 0);
        // 20 + 5 in two slots.
        assert_eq!(inv.slot(0).unwrap().count, 20);
        assert_eq!(inv.slot(1).unwrap().count, 5);
        assert_eq!(inv.add(SWORD, 1, &b), 0);
        // Full: the potion stack still has room, a sword does not fit.
        assert_eq!(inv.add(SWORD, 1, &b), 1);
        assert_eq!(inv.add(POTION, 20, &b), 5);
        assert_eq!(inv.count_of(POTION), 40);
    }

    #[test]
    fn pickups_reserve_room_and_release_it() {
        let b = book();
        let mut inv = Inventory::new(2, u32::MAX);
        inv.reserve_pickup(1, 10, None, &b).unwrap();
        inv.reserve_pickup(2, 10, None, &b).unwrap();
        // Both free slots are promised: a third pick-up and an unequip
        // that needs a slot are refused.
        assert_eq!(
            inv.reserve_pickup(3, 10, None, &b),
            Err(RefusalReason::InventoryFull)
        );
        inv.worn[EquipSlot::Chest.index()] = Some(CHEST);
        assert_eq!(
            inv.unequip(EquipSlot::Chest as u8),
            Err(RefusalReason::InventoryFull)
        );
        // One pick-up is refused by the shard: its room comes back.
        assert!(inv.settle_pickup(1));
        assert!(!inv.settle_pickup(1), "settled once");
        inv.reserve_pickup(3, 10, None, &b).unwrap();
        // The other never hears back: it lapses at its expiry tick.
        inv.expire(9);
        assert!(inv.is_pending(2));
        inv.expire(10);
        assert!(!inv.is_pending(2) && !inv.is_pending(3));
    }

    #[test]
    fn pickups_in_flight_are_bounded_and_weight_is_checked() {
        let b = book();
        let mut inv = Inventory::new(40, 25_000);
        for seq in 0..MAX_PENDING_PICKUPS as u32 {
            inv.reserve_pickup(seq, 100, None, &b).unwrap();
        }
        assert_eq!(
            inv.reserve_pickup(99, 100, None, &b),
            Err(RefusalReason::RateLimited)
        );
        let mut inv = Inventory::new(40, 25_000);
        assert_eq!(inv.add(ORE, 2, &b), 0);
        assert_eq!(
            inv.reserve_pickup(1, 100, Some((ORE, 1)), &b),
            Err(RefusalReason::TooHeavy)
        );
        inv.reserve_pickup(1, 100, Some((POTION, 5)), &b).unwrap();
        assert_eq!(inv.weight(&b), 20_000);
    }

    #[test]
    fn equipment_goes_into_its_own_slot_only() {
        let b = book();
        let mut inv = Inventory::new(10, u32::MAX);
        inv.add(SWORD, 1, &b);
        inv.add(POTION, 3, &b);
        inv.add(CHEST, 1, &b);
        inv.add(AXE, 1, &b);
        // A sword is not chest armour, a potion is not equipment, slot 8
        // does not exist, slot 9 holds nothing.
        assert_eq!(
            inv.equip(0, EquipSlot::Chest as u8, &b),
            Err(RefusalReason::WrongSlot)
        );
        assert_eq!(
            inv.equip(1, EquipSlot::Weapon as u8, &b),
            Err(RefusalReason::WrongSlot)
        );
        assert_eq!(inv.equip(0, 8, &b), Err(RefusalReason::WrongSlot));
        assert_eq!(
            inv.equip(9, EquipSlot::Weapon as u8, &b),
            Err(RefusalReason::NoSuchItem)
        );
        assert_eq!(inv.gear(&b), StatBonus::default());
        let e = inv.equip(0, EquipSlot::Weapon as u8, &b).unwrap();
        assert_eq!((e.template, e.replaced), (SWORD, None));
        assert_eq!(inv.slot(0), None);
        inv.equip(2, EquipSlot::Chest as u8, &b).unwrap();
        let g = inv.gear(&b);
        assert_eq!((g.p_atk, g.p_def), (10.0, 25.0));
        // The axe replaces the sword, which takes the axe's slot.
        let e = inv.equip(3, EquipSlot::Weapon as u8, &b).unwrap();
        assert_eq!(e.replaced, Some(SWORD));
        assert_eq!(inv.slot(3).map(|s| s.template), Some(SWORD));
        assert_eq!(inv.gear(&b).p_atk, 14.0);
        // Unequip: back into the first free slot; nothing worn → refused.
        assert_eq!(inv.unequip(EquipSlot::Weapon as u8), Ok(AXE));
        assert_eq!(inv.slot(0).map(|s| s.template), Some(AXE));
        assert_eq!(
            inv.unequip(EquipSlot::Weapon as u8),
            Err(RefusalReason::NoSuchItem)
        );
        assert_eq!(inv.unequip(200), Err(RefusalReason::NoSuchItem));
        assert_eq!(inv.gear(&b).p_atk, 0.0);
        // No item was made or lost on the way.
        assert_eq!(inv.count_of(SWORD) + inv.count_of(AXE), 2);
    }

    #[test]
    fn consumables_are_used_once_each_with_a_cooldown() {
        let b = book();
        let mut inv = Inventory::new(10, u32::MAX);
        inv.add(POTION, 2, &b);
        inv.add(SWORD, 1, &b);
        assert_eq!(inv.check_use(5, 0, &b), Err(RefusalReason::NoSuchItem));
        assert_eq!(inv.check_use(1, 0, &b), Err(RefusalReason::NotUsable));
        let (t, effect) = inv.check_use(0, 0, &b).unwrap();
        assert_eq!((t, effect.hp), (POTION, 50.0));
        inv.consume(0, 0, 300);
        assert_eq!(inv.count_of(POTION), 1);
        assert_eq!(inv.check_use(0, 299, &b), Err(RefusalReason::ItemCooldown));
        inv.expire(299);
        assert_eq!(inv.check_use(0, 299, &b), Err(RefusalReason::ItemCooldown));
        inv.check_use(0, 300, &b).unwrap();
        inv.consume(0, 300, 300);
        // The last one used: the slot is empty.
        assert_eq!(inv.slot(0), None);
        assert_eq!(inv.check_use(0, 1_000, &b), Err(RefusalReason::NoSuchItem));
    }

    #[test]
    fn items_are_taken_out_only_as_many_as_there_are() {
        let b = book();
        let mut inv = Inventory::new(4, u32::MAX);
        inv.add(POTION, 3, &b);
        assert_eq!(inv.check_take(0, 0), Err(RefusalReason::NoSuchItem));
        assert_eq!(inv.check_take(0, 4), Err(RefusalReason::NoSuchItem));
        assert_eq!(inv.check_take(1, 1), Err(RefusalReason::NoSuchItem));
        assert_eq!(inv.check_take(0, 2), Ok(POTION));
        let rev = inv.revision();
        inv.take(0, 2);
        assert_eq!(inv.count_of(POTION), 1);
        assert_ne!(inv.revision(), rev, "a change to save");
        inv.take(0, 1);
        assert_eq!(inv.slot(0), None);
    }

    #[test]
    fn saved_lists_round_trip_and_bad_places_find_a_home() {
        let b = book();
        let mut inv = Inventory::new(5, u32::MAX);
        inv.add(POTION, 7, &b);
        inv.add(SWORD, 1, &b);
        inv.add(CHEST, 1, &b);
        inv.equip(2, EquipSlot::Chest as u8, &b).unwrap();
        let saved = inv.to_saved();
        assert_eq!(saved.len(), 3);
        let (back, lost) = Inventory::from_saved(&saved, 5, u32::MAX);
        assert_eq!(lost, 0);
        assert_eq!(back.to_saved(), saved);
        // A slot past the capacity, a stack worn, two items in one place.
        let odd = [
            SavedItem {
                place: ItemPlace::Bag(9),
                template: ORE,
                count: 3,
            },
            SavedItem {
                place: ItemPlace::Worn(0),
                template: POTION,
                count: 2,
            },
            SavedItem {
                place: ItemPlace::Bag(0),
                template: SWORD,
                count: 1,
            },
            SavedItem {
                place: ItemPlace::Bag(0),
                template: AXE,
                count: 1,
            },
        ];
        let (inv, lost) = Inventory::from_saved(&odd, 4, u32::MAX);
        assert_eq!(lost, 0);
        assert_eq!(inv.items().count(), 4);
        assert_eq!(inv.equipped().count(), 0);
        let (_, lost) = Inventory::from_saved(&odd, 3, u32::MAX);
        assert_eq!(lost, 1, "no room for the fourth");
    }

    #[test]
    fn the_embedded_items_make_a_book() {
        let data = tos_config::CombatData::embedded().unwrap();
        let b = ItemBook::from_data(&data).unwrap();
        for t in &data.items {
            let r = b.get(t.id).unwrap();
            assert_eq!(r.equip.is_some(), t.slot.is_some(), "item {}", t.id);
            assert_eq!(r.consumable.is_some(), t.consumable.is_some());
            assert_eq!(r.stack_max, t.max_stack);
        }
    }

    #[test]
    fn bad_books_are_refused() {
        let mut stacking_sword = book().get(SWORD).unwrap().clone();
        stacking_sword.stack_max = 5;
        assert!(ItemBook::new([stacking_sword]).is_err());
        let potion = book().get(POTION).unwrap().clone();
        assert!(ItemBook::new([potion.clone(), potion.clone()]).is_err());
        let mut empty = potion;
        empty.stack_max = 0;
        assert!(ItemBook::new([empty]).is_err());
    }
}
