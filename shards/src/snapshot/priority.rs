//! The per-tick pass over one view: credit by the adaptive rates, entries
//! that left interest, and the due Removes and entries, with priorities.

use super::view::{ClientView, KNOWN, Phase, REMOVE_PENDING, RESEND};
use super::{PREFETCH_AHEAD, Scratch, Viewer, WorldView};
use crate::util::{dist2, prefetch, tick_after};

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
    let summary = &scratch.summary;
    scratch.removes.clear();
    scratch.candidates.clear();
    let n = view.hot.len();
    for slot in 0..n {
        // Twice as far ahead as the other walks: an entry here costs only a
        // few nanoseconds, so the summary's miss needs more of them to hide.
        if slot + 2 * PREFETCH_AHEAD < n {
            let ahead = view.hot[slot + 2 * PREFETCH_AHEAD].index as usize;
            if let Some(e) = summary.get(ahead) {
                prefetch(e);
            }
        }
        let h = &mut view.hot[slot];
        match h.phase {
            Phase::Free | Phase::RemoveSent => continue,
            Phase::Leaving => {
                scratch.removes.push(slot as u16);
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
            if let Some(j) = ents.by_net_id(view.cold[slot].net_id) {
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
        let mut d2 = 0.0;
        if alive && i as u32 != viewer.index {
            d2 = dist2(viewer.position, e.position);
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
                scratch.removes.push(slot as u16);
                continue;
            }
            Leave::Await => {
                // Never sent since its Remove, which is still in flight:
                // wait for that Remove's fate.
                h.phase = Phase::RemoveSent;
                continue;
            }
            Leave::Forget => {
                view.free_entry(slot as u16);
                continue;
            }
        }
        let changed =
            h.flags & (KNOWN | RESEND) != KNOWN || tick_after(e.changed_tick, h.last_sent);
        let mut rate = if changed {
            p.moving_rate
        } else {
            p.stationary_rate
        };
        if d2 > p.distant_d2[t] {
            rate = rate.min(p.distant_rate);
        }
        h.credit += rate;
        if h.credit >= 1.0 {
            let near = 2.0 - ((d2.sqrt() * p.inv_distance[t]) as f32).min(1.0);
            scratch
                .candidates
                .push((h.credit * near * e.fast, slot as u16));
        }
    }
}
