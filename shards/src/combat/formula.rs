//! The combat formulas, as pure functions of plain numbers (no shard
//! state, no randomness of their own: the caller draws the rolls from the
//! shard's one seeded generator). Every result is finite and never
//! negative, whatever the inputs — NaN and infinities included — which
//! the property tests below check. Worked numbers are in
//! `docs/GAMEPLAY.md` §2.

use super::{BaseStats, Gear};

/// What each level above 1 adds to the stat part of attack and defence.
pub const LEVEL_GROWTH: f32 = 0.1;

/// Critical hits deal this many times the damage.
pub const CRIT_MULTIPLIER: f32 = 1.5;

/// Damage varies by ± this fraction around its mean.
pub const VARIANCE: f32 = 0.1;

/// The most damage or healing one hit may do (a bound for absurd data).
pub const MAX_AMOUNT: f32 = 1.0e6;

/// A number made safe: non-finite or below `low` becomes `low`.
#[inline]
fn at_least(v: f32, low: f32) -> f32 {
    if v.is_finite() { v.max(low) } else { low }
}

/// `1 + LEVEL_GROWTH · (level − 1)`.
#[inline]
pub fn level_factor(level: u16) -> f32 {
    1.0 + LEVEL_GROWTH * f32::from(level.max(1) - 1)
}

/// Attack: `2 · STR · level factor + gear p_atk` (physical) or
/// `2 · INT · level factor + gear m_atk` (magic); at least 1.
pub fn attack(base: &BaseStats, level: u16, gear: &Gear, magic: bool) -> f32 {
    let (stat, bonus) = if magic {
        (base.int, gear.m_atk)
    } else {
        (base.str, gear.p_atk)
    };
    at_least(
        2.0 * f32::from(stat) * level_factor(level) + at_least(bonus, -MAX_AMOUNT),
        1.0,
    )
}

/// Defence: `CON · level factor + gear p_def` (physical) or
/// `MEN · level factor + gear m_def` (magic); at least 1.
pub fn defence(base: &BaseStats, level: u16, gear: &Gear, magic: bool) -> f32 {
    let (stat, bonus) = if magic {
        (base.men, gear.m_def)
    } else {
        (base.con, gear.p_def)
    };
    at_least(
        f32::from(stat) * level_factor(level) + at_least(bonus, -MAX_AMOUNT),
        1.0,
    )
}

/// Chance to hit: `0.9 + 0.01 · (attacker DEX − target DEX)`, within
/// `0.5..=0.99`.
pub fn hit_chance(attacker_dex: u16, target_dex: u16) -> f32 {
    (0.9 + 0.01 * (f32::from(attacker_dex) - f32::from(target_dex))).clamp(0.5, 0.99)
}

/// Chance of a critical hit: `DEX / 500`, within `0.01..=0.5`.
pub fn crit_chance(dex: u16) -> f32 {
    (f32::from(dex) / 500.0).clamp(0.01, 0.5)
}

/// Damage of one hit: `power · 2·atk / (atk + def)` (so `power` when
/// attack equals defence, under twice `power` however strong the
/// attacker), times `1 ± VARIANCE` from `roll` in `[0, 1)`, times
/// [`CRIT_MULTIPLIER`] on a critical hit. Never negative, never NaN, at
/// most [`MAX_AMOUNT`].
pub fn damage(power: f32, attack: f32, defence: f32, roll: f32, crit: bool) -> f32 {
    let p = at_least(power, 0.0).min(MAX_AMOUNT);
    let a = at_least(attack, 1.0).min(MAX_AMOUNT);
    let d = at_least(defence, 1.0).min(MAX_AMOUNT);
    let r = if roll.is_finite() {
        roll.clamp(0.0, 1.0)
    } else {
        0.5
    };
    let variance = 1.0 - VARIANCE + 2.0 * VARIANCE * r;
    let c = if crit { CRIT_MULTIPLIER } else { 1.0 };
    (p * (2.0 * a / (a + d)) * variance * c).clamp(0.0, MAX_AMOUNT)
}

/// Healing: `power · (1 + m_atk / 100)`. Never negative, never NaN.
pub fn heal(power: f32, magic_attack: f32) -> f32 {
    let p = at_least(power, 0.0).min(MAX_AMOUNT);
    let m = at_least(magic_attack, 0.0).min(MAX_AMOUNT);
    (p * (1.0 + m / 100.0)).clamp(0.0, MAX_AMOUNT)
}

/// Milliseconds to whole ticks, rounded up (a 1 ms cooldown still lasts a
/// tick).
pub fn ms_to_ticks(ms: u32, tick_hz: u32) -> u32 {
    let t = (u64::from(ms) * u64::from(tick_hz.max(1))).div_ceil(1000);
    t.min(u64::from(u32::MAX / 2)) as u32
}

/// Casting time in ticks: `cast_ms · 60 / (60 + WIT)`, rounded up; 0 for
/// instant skills.
pub fn cast_ticks(cast_ms: u32, wit: u16, tick_hz: u32) -> u32 {
    if cast_ms == 0 {
        return 0;
    }
    let ms = u64::from(cast_ms) * 60 / (60 + u64::from(wit));
    ms_to_ticks(ms as u32, tick_hz).max(1)
}

/// Experience for killing an NPC of `level`: `20 + 10 · level²`.
pub fn kill_exp(level: u16) -> u64 {
    let l = u64::from(level.max(1));
    20 + 10 * l * l
}

/// Splits `total` experience by damage: `out[k] = ⌊total · damage[k] /
/// Σ damage⌋`, the rounding remainder going to the top dealer, so the
/// shares sum to exactly `total` when anyone dealt damage (and to 0
/// otherwise). Non-finite or negative damage counts as 0.
pub fn split_exp<const N: usize>(total: u64, damage: &[f32; N], out: &mut [u64; N]) {
    *out = [0; N];
    let clean = |d: f32| {
        if d.is_finite() && d > 0.0 {
            f64::from(d)
        } else {
            0.0
        }
    };
    let sum: f64 = damage.iter().map(|&d| clean(d)).sum();
    // `sum` is finite and not negative by construction.
    if sum <= 0.0 || N == 0 {
        return;
    }
    let mut given = 0u64;
    let mut top = 0;
    for k in 0..N {
        let share = ((total as f64) * clean(damage[k]) / sum).floor();
        out[k] = (share as u64).min(total - given);
        given += out[k];
        if clean(damage[k]) > clean(damage[top]) {
            top = k;
        }
    }
    out[top] += total - given;
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn stats(v: [u16; 6]) -> BaseStats {
        BaseStats {
            int: v[0],
            str: v[1],
            con: v[2],
            men: v[3],
            dex: v[4],
            wit: v[5],
        }
    }

    fn any_f32() -> impl Strategy<Value = f32> {
        prop_oneof![
            -1.0e7f32..1.0e7,
            Just(f32::NAN),
            Just(f32::INFINITY),
            Just(f32::NEG_INFINITY),
            Just(0.0),
            Just(-0.0),
        ]
    }

    #[test]
    fn worked_example() {
        // docs/GAMEPLAY.md §2: a level-1 Human Fighter (STR 40) with a
        // Rusty Sword (+8) strikes (power 10) a level-1 monster (CON 20).
        let fighter = stats([21, 40, 43, 25, 30, 11]);
        let sword = Gear {
            p_atk: 8.0,
            ..Gear::default()
        };
        let a = attack(&fighter, 1, &sword, false);
        assert_eq!(a, 88.0);
        let d = defence(&super::super::DEFAULT_STATS, 1, &Gear::default(), false);
        assert_eq!(d, 20.0);
        let mean = damage(10.0, a, d, 0.5, false);
        assert!((mean - 10.0 * 176.0 / 108.0).abs() < 1e-4, "{mean}");
        assert!((damage(10.0, a, d, 0.0, false) - mean * 0.9).abs() < 1e-4);
        assert!((damage(10.0, a, d, 0.5, true) - mean * 1.5).abs() < 1e-4);
        assert_eq!(hit_chance(30, 20), 0.99);
        assert_eq!(hit_chance(20, 20), 0.9);
        assert!((crit_chance(30) - 0.06).abs() < 1e-6);
        // Level 10: stats weigh 1.9 times.
        assert!((attack(&fighter, 10, &Gear::default(), false) - 152.0).abs() < 1e-3);
        // Fireball 800 ms at WIT 11, 60 Hz: 676 ms, 41 ticks.
        assert_eq!(cast_ticks(800, 11, 60), 41);
        assert_eq!(cast_ticks(0, 11, 60), 0);
        assert_eq!(kill_exp(1), 30);
        assert_eq!(kill_exp(5), 270);
        assert_eq!(heal(40.0, 42.0), 40.0 * 1.42);
    }

    #[test]
    fn exp_split_by_damage() {
        let mut out = [0u64; 4];
        split_exp(100, &[30.0, 10.0, 0.0, 60.0], &mut out);
        assert_eq!(out, [30, 10, 0, 60]);
        split_exp(10, &[1.0, 1.0, 1.0, 0.0], &mut out);
        assert_eq!(out.iter().sum::<u64>(), 10);
        assert_eq!(out, [4, 3, 3, 0]);
        split_exp(50, &[0.0; 4], &mut out);
        assert_eq!(out, [0; 4]);
        split_exp(7, &[f32::NAN, -3.0, 2.0, 0.0], &mut out);
        assert_eq!(out, [0, 0, 7, 0]);
    }

    proptest! {
        #[test]
        fn damage_is_bounded_and_never_nan(
            power in any_f32(),
            atk in any_f32(),
            def in any_f32(),
            roll in any_f32(),
            crit in any::<bool>(),
        ) {
            let d = damage(power, atk, def, roll, crit);
            prop_assert!(d.is_finite());
            prop_assert!(d >= 0.0);
            prop_assert!(d <= MAX_AMOUNT);
            if (0.0..=MAX_AMOUNT).contains(&power) {
                // Under twice the power, times variance and critical.
                let bound = 2.0 * power * (1.0 + VARIANCE) * CRIT_MULTIPLIER;
                prop_assert!(d <= bound * (1.0 + 1e-5) + 1e-5, "{} > {}", d, bound);
            }
        }

        #[test]
        fn healing_is_never_negative(power in any_f32(), m in any_f32()) {
            let h = heal(power, m);
            prop_assert!((0.0..=MAX_AMOUNT).contains(&h));
        }

        #[test]
        fn stronger_attackers_hit_harder(
            power in 0.1f32..1000.0,
            atk in 1.0f32..1000.0,
            def in 1.0f32..1000.0,
            extra in 1.0f32..1000.0,
            roll in 0.0f32..1.0,
        ) {
            prop_assert!(damage(power, atk + extra, def, roll, false) >= damage(power, atk, def, roll, false));
            prop_assert!(damage(power, atk, def + extra, roll, false) <= damage(power, atk, def, roll, false));
        }

        #[test]
        fn stats_give_finite_positive_numbers(
            v in proptest::array::uniform6(any::<u16>()),
            level in any::<u16>(),
            bonus in proptest::array::uniform6(any_f32()),
            magic in any::<bool>(),
        ) {
            let s = stats(v);
            let g = Gear { p_atk: bonus[0], m_atk: bonus[1], p_def: bonus[2], m_def: bonus[3], hp_max: bonus[4], mp_max: bonus[5] };
            let a = attack(&s, level, &g, magic);
            let d = defence(&s, level, &g, magic);
            prop_assert!(a.is_finite() && a >= 1.0);
            prop_assert!(d.is_finite() && d >= 1.0);
            let h = hit_chance(v[4], v[0]);
            prop_assert!((0.5..=0.99).contains(&h));
            let c = crit_chance(v[4]);
            prop_assert!((0.01..=0.5).contains(&c));
            prop_assert!(cast_ticks(u32::from(v[5]) * 10, v[5], 60) <= 60 * 655);
        }

        #[test]
        fn exp_shares_sum_to_the_total(
            total in 0u64..1_000_000_000,
            dmg in proptest::array::uniform4(any_f32()),
        ) {
            let mut out = [0u64; 4];
            split_exp(total, &dmg, &mut out);
            let sum: u64 = out.iter().sum();
            let anyone = dmg.iter().any(|d| d.is_finite() && *d > 0.0);
            prop_assert_eq!(sum, if anyone { total } else { 0 });
            for k in 0..4 {
                if !(dmg[k].is_finite() && dmg[k] > 0.0) {
                    prop_assert_eq!(out[k], 0);
                }
            }
        }
    }
}
