//! The per-tick pass over one view: credit by the adaptive rates, entries
//! that left interest, and the due Removes and entries, with priorities.
//!
//! This is the one walk over every entry of every view every tick, so it
//! is kept narrow: 16-byte entries (four to a cache line), distances and
//! priorities in `f32`, fixed-point credit, and entries freed only after
//! the walk so that the loop works on plain slices.
//!
//! # Entries that cannot leave
//!
//! Most entries are well inside interest and far from the boundary between
//! the near and distant rates, so whether they stay in view and which rate
//! they earn cannot change for a while. A full check (the entity's 32-byte
//! summary: slot, position, visibility, speed) marks such an entry `SAFE`,
//! with its band (`FAR`) and its priority factor; on the next ticks the
//! entry reads only its entity's 4-byte [`Moves`](super::Moves) word (the
//! change tick, for the rate, and whether the entity was flagged). This is
//! exact, not a sampling of the leave check:
//!
//! - every entity stays within the anchor radius of its anchor, or it is
//!   flagged when a summary is built (so is a slot, visibility or faction
//!   change); a flagged entity's entries get full checks for
//!   [`ANCHOR_TICKS`] ticks;
//! - the viewer stays within the view slack of where it stood at the view's
//!   last full pass, or the pass checks every entry;
//! - an entry is `SAFE` only if its distance is at least twice both radii
//!   inside the leave distance and away from the band boundary;
//! - each entity's anchor is reset every [`ANCHOR_TICKS`] ticks (one group
//!   of slots per tick, at the tick's first summary build), and its entries
//!   get a full check at the first pass after that reset, so none goes
//!   longer than [`ANCHOR_TICKS`] ticks without one;
//! - a view whose previous pass is [`ANCHOR_TICKS`] or more ticks old (or
//!   that was reset or moved to another shard) checks every entry.
//!
//! The priority's distance and speed factors of a `SAFE` entry are those of
//! its last full check (at most [`ANCHOR_TICKS`] ticks old, in 1/85 steps);
//! credit, rates and everything that decides what is sent and when it
//! leaves are those of this tick.

use super::due::DueQueue;
use super::record_cache::RecordCache;
use super::view::{
    CREDIT_ONE, ClientView, Cold, FAR, Hot, KNOWN, Phase, REMOVE_PENDING, RESEND, SAFE,
};
use super::{
    ANCHOR_TICKS, PREFETCH_AHEAD, PRIORITY_BUCKETS, Scratch, Viewer, WorldView, dist2_f32,
};
use crate::util::prefetch;

/// Entries ahead (four to a cache line) whose line the pass fetches.
const HOT_AHEAD: usize = 48;

/// The distance and speed factors of a priority (`near × fast`, 1 to 4),
/// in the byte an entry keeps.
#[inline]
fn factor(near_fast: f32) -> u8 {
    // `as` saturates: no clamp needed; + 0.5 rounds (the argument is
    // never negative), without a call to `roundf`.
    ((near_fast - 1.0) * 85.0 + 0.5) as u8
}

/// The priority of an entry with `credit` and the factor byte `f`.
#[inline]
fn priority(credit: u16, f: u8) -> f32 {
    f32::from(credit) * (1.0 + f32::from(f) * (1.0 / 85.0))
}

/// The bits of the lowest priority a due entry can have (credit just due,
/// factor 1), in the bucket scale below.
const BUCKET_BASE: u32 = (CREDIT_ONE as f32).to_bits() >> 20;

/// The priority bucket of a priority: a positive `f32`'s exponent and top
/// three mantissa bits, so eight buckets per doubling, ordered as the
/// priorities are; 0 is a just-due entry. The highest priority (saturated
/// credit, factor 4) is 8 doublings above, bucket 64.
#[inline]
fn bucket(priority: f32) -> u16 {
    ((priority.to_bits() >> 20).saturating_sub(BUCKET_BASE) as usize).min(PRIORITY_BUCKETS - 1)
        as u16
}

/// What the per-tick pass decided about an entry that left interest.
enum Leave {
    Stay,
    Remove,
    Await,
    Forget,
}

/// Where the pass puts the entries it finds due.
struct DueLists<'a> {
    queue: &'a mut DueQueue,
    cold: &'a [Cold],
    cache: &'a RecordCache,
}

/// Adds `rate` to entry `slot`'s credit. If it is now due and at or
/// above the view's floor, lists it with its priority bucket and starts
/// fetching what the writer reads for it (its cold part and its entity's
/// cache ways) a moment later, while the pass goes on with the next
/// entries.
#[inline]
fn accrue(h: &mut Hot, slot: usize, rate: u16, due: &mut DueLists<'_>) {
    h.credit = h.credit.saturating_add(rate);
    if h.credit >= CREDIT_ONE
        && due
            .queue
            .push(bucket(priority(h.credit, h.factor)), slot as u16)
    {
        if let Some(c) = due.cold.get(slot) {
            prefetch(c);
        }
        prefetch(due.cache.slot_ptr(h.index));
    }
}

/// Lists the due entries the pass held back below `floor` (the writer
/// emptied the lists above it with room left), in slot order as the pass
/// would have: Active entries with credit due, below the floor. Those sent
/// since the pass have no credit; those taken but not sent are above it.
pub(super) fn list_held_back(view: &ClientView, floor: u16, queue: &mut DueQueue) {
    for (slot, h) in view.hot.iter().enumerate() {
        if h.phase == Phase::Active && h.credit >= CREDIT_ONE {
            let b = bucket(priority(h.credit, h.factor));
            if b < floor {
                queue.push(b, slot as u16);
            }
        }
    }
}

/// Ticks since the view's previous pass if its `SAFE` flags hold at `now`
/// (see the module docs); otherwise 0, after re-anchoring the view: this
/// pass checks every entry.
fn safe_flags_hold(view: &mut ClientView, w: &WorldView<'_>, viewer: &Viewer, now: u32) -> u32 {
    let gap = now.wrapping_sub(view.last_pass);
    let hold = view.safe_valid
        && (1..ANCHOR_TICKS).contains(&gap)
        && view.anchor_faction == viewer.faction
        && dist2_f32(view.anchor, viewer.position) <= w.params.view_slack2;
    if !hold {
        view.anchor = viewer.position;
        view.anchor_faction = viewer.faction;
    }
    view.last_pass = now;
    view.safe_valid = true;
    if hold { gap } else { 0 }
}

/// The per-tick pass over one view: accumulates credit, finds entries that
/// left interest, and collects due Removes (in slot order) and due entries
/// (listed by priority bucket) into the scratch lists.
#[inline(never)]
pub(super) fn prioritize(
    view: &mut ClientView,
    w: &WorldView<'_>,
    viewer: &Viewer,
    now: u32,
    scratch: &mut Scratch,
) {
    let ents = w.ents;
    let p = w.params;
    let gap = safe_flags_hold(view, w, viewer, now);
    let Scratch {
        summary,
        moves,
        removes,
        due: queue,
        forget,
        cache,
        ..
    } = scratch;
    removes.clear();
    queue.clear(view.hot.len(), view.due_floor);
    forget.clear();
    // Local slices (entries are freed after the walk), so that the loop
    // keeps their bounds in registers.
    let hot = &mut view.hot[..];
    let cold = &view.cold[..];
    let summary = &summary[..];
    let moves = &moves[..];
    let mut due = DueLists { queue, cold, cache };
    let n = hot.len();
    let now16 = now as u16;
    // Entries with this flag take the short path if the flags hold at all
    // and no anchor reset of their entity's group fell since the last pass.
    let safe = if gap > 0 { SAFE } else { 0 };
    for slot in 0..n {
        // The entries themselves a few cache lines ahead (a view starts
        // cold: the hardware's stream prefetcher is slow to ramp up over a
        // few KiB), and the entities they name twice as far ahead as the
        // other walks: the summary of those that need a full check, the
        // small `Moves` word of the others.
        if slot % 4 == 0 {
            if let Some(h) = hot.get(slot + HOT_AHEAD) {
                prefetch(h);
            }
        }
        if let Some(h) = hot.get(slot + 2 * PREFETCH_AHEAD) {
            if h.flags & safe == 0 {
                if let Some(e) = summary.get(h.index as usize) {
                    prefetch(e);
                }
            } else if let Some(m) = moves.get(h.index as usize) {
                prefetch(m);
            }
        }
        let h = &mut hot[slot];
        match h.phase {
            Phase::Free | Phase::RemoveSent => continue,
            Phase::Leaving => {
                removes.push(slot as u16);
                continue;
            }
            Phase::Active => {}
        }
        // Ticks since the last reset of this entity's anchor group.
        let since_reset = now.wrapping_sub(h.index) % ANCHOR_TICKS;
        if h.flags & safe != 0 && since_reset >= gap {
            if let Some(m) = moves.get(h.index as usize) {
                if now16.wrapping_sub(m.flagged) >= ANCHOR_TICKS as u16 {
                    // Still in view, same band: only the rate and the
                    // credit move.
                    let changed = h.flags & (KNOWN | RESEND) != KNOWN
                        || (m.changed.wrapping_sub(h.last_sent) as i16) > 0;
                    let mut rate = if changed {
                        p.moving_rate
                    } else {
                        p.stationary_rate
                    };
                    if h.flags & FAR != 0 {
                        rate = rate.min(p.distant_rate);
                    }
                    accrue(h, slot, rate, &mut due);
                    continue;
                }
            }
        }
        let mut i = h.index as usize;
        let mut e = &summary[i];
        // A generation match means the slot still holds the entity.
        let mut alive = e.generation == h.generation;
        if !alive {
            // The same entity may live on in another slot (a ghost that
            // was dropped and received again).
            if let Some(j) = ents.by_net_id(cold[slot].net_id) {
                if ents.kind[j as usize] == h.kind {
                    h.index = j;
                    h.generation = ents.generation[j as usize];
                    i = j as usize;
                    e = &summary[i];
                    alive = true;
                }
            }
        }
        let t = h.kind.index();
        let mut d2 = 0.0f32;
        if alive && i as u32 != viewer.index {
            d2 = dist2_f32(viewer.position, e.position);
            alive = d2 <= p.exit_d2[t]
                && (!e.hidden || w.factions.is_friend(viewer.faction, e.faction));
        }
        let leave = if alive {
            Leave::Stay
        } else if h.flags & KNOWN != 0 {
            Leave::Remove
        } else if h.flags & REMOVE_PENDING != 0 {
            Leave::Await
        } else {
            Leave::Forget
        };
        match leave {
            Leave::Stay => {}
            Leave::Remove => {
                h.phase = Phase::Leaving;
                removes.push(slot as u16);
                continue;
            }
            Leave::Await => {
                // Never sent since its Remove, which is still in flight:
                // wait for that Remove's fate.
                h.phase = Phase::RemoveSent;
                continue;
            }
            Leave::Forget => {
                forget.push(slot as u16);
                continue;
            }
        }
        // 16-bit ticks: see `Hot::last_sent` and `Summary::changed`.
        let changed =
            h.flags & (KNOWN | RESEND) != KNOWN || (e.changed.wrapping_sub(h.last_sent) as i16) > 0;
        let mut rate = if changed {
            p.moving_rate
        } else {
            p.stationary_rate
        };
        let far = d2 > p.distant_d2[t];
        if far {
            rate = rate.min(p.distant_rate);
        }
        // Whether the next ticks may skip this check (module docs).
        let settled = d2 <= p.safe_exit2[t] && (d2 > p.far_safe2[t] || d2 <= p.near_safe2[t]);
        h.flags =
            (h.flags & !(SAFE | FAR)) | if settled { SAFE } else { 0 } | if far { FAR } else { 0 };
        h.factor = factor((2.0 - (d2.sqrt() * p.inv_distance[t]).min(1.0)) * e.fast);
        accrue(h, slot, rate, &mut due);
    }
    for &slot in forget.iter() {
        view.free_entry(slot);
    }
}
