//! The per-tick pass over one view: credit by the adaptive rates, entries
//! that left interest, and the due Removes and entries, with priorities.
//!
//! This is the one walk over every entry of every view every tick, so it
//! is kept narrow: 16-byte entries (four to a cache line), one 32-byte
//! summary load per entry, distances and priorities in `f32`, fixed-point
//! credit, and entries freed only after the walk so that the loop works on
//! plain slices.

use super::view::{CREDIT_ONE, ClientView, KNOWN, Phase, REMOVE_PENDING, RESEND};
use super::{PREFETCH_AHEAD, Scratch, Viewer, WorldView};
use crate::util::prefetch;

/// Entries ahead (four to a cache line) whose line the pass fetches.
const HOT_AHEAD: usize = 48;

/// Squared distance in `f32`: the pass only compares it with the interest
/// distances (its rounding is far inside the 5% between entering and
/// leaving) and ranks by it.
#[inline]
fn dist2_f32(a: [f32; 3], b: [f32; 3]) -> f32 {
    let (dx, dy, dz) = (a[0] - b[0], a[1] - b[1], a[2] - b[2]);
    dx * dx + dy * dy + dz * dz
}

/// What the per-tick pass decided about an entry that left interest.
enum Leave {
    Stay,
    Remove,
    Await,
    Forget,
}

/// The per-tick pass over one view: accumulates credit, finds entries that
/// left interest, and collects due Removes and due entries (the latter in
/// slot order, with their priorities) into the scratch lists.
#[inline(never)]
pub(super) fn prioritize(
    view: &mut ClientView,
    w: &WorldView<'_>,
    viewer: &Viewer,
    scratch: &mut Scratch,
) {
    let ents = w.ents;
    let p = w.params;
    let Scratch {
        summary,
        removes,
        candidates,
        forget,
        ..
    } = scratch;
    removes.clear();
    candidates.clear();
    forget.clear();
    // Local slices (entries are freed after the walk), so that the loop
    // keeps their bounds in registers.
    let hot = &mut view.hot[..];
    let cold = &view.cold[..];
    let summary = &summary[..];
    let n = hot.len();
    for slot in 0..n {
        // The entries themselves a few cache lines ahead (a view starts
        // cold: the hardware's stream prefetcher is slow to ramp up over a
        // few KiB), and the entities they name twice as far ahead as the
        // other walks: an entry here costs only a few nanoseconds, so the
        // summary's miss needs more of them to hide.
        if slot % 4 == 0 {
            if let Some(h) = hot.get(slot + HOT_AHEAD) {
                prefetch(h);
            }
        }
        if let Some(h) = hot.get(slot + 2 * PREFETCH_AHEAD) {
            if let Some(e) = summary.get(h.index as usize) {
                prefetch(e);
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
        if d2 > p.distant_d2[t] {
            rate = rate.min(p.distant_rate);
        }
        h.credit = h.credit.saturating_add(rate);
        if h.credit >= CREDIT_ONE {
            let near = 2.0 - (d2.sqrt() * p.inv_distance[t]).min(1.0);
            candidates.push((f32::from(h.credit) * near * e.fast, slot as u16));
        }
    }
    for &slot in forget.iter() {
        view.free_entry(slot);
    }
}
