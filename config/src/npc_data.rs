//! NPC data files in `config/data/`: NPC and monster templates
//! (`npcs.ron`), where and how many spawn (`spawns.ron`) and the routes
//! guards walk (`patrols.ron`), loaded and validated together; errors name
//! the file and the dotted field.
//!
//! Skill and loot ids are checked here only for shape (an aggressive
//! template needs at least one skill); that they name entries of the skills
//! and loot tables is checked where those tables are loaded.

use std::collections::HashSet;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::check::Checker;
use crate::parse::{from_ron, read_file};
use crate::{BaseStats, ConfigError, WorldConfig};

const NPCS: &str = "npcs.ron";
const SPAWNS: &str = "spawns.ron";
const PATROLS: &str = "patrols.ron";

/// The most NPCs all spawn groups together may place (the shard pools are
/// sized for tens of thousands of entities).
pub const MAX_SPAWNED: u32 = 200_000;

/// The most skills one template lists (a shard keeps one cooldown per
/// action slot).
pub const MAX_NPC_SKILLS: usize = 8;

/// The most points of one patrol route.
pub const MAX_PATROL_POINTS: usize = 64;

/// Which entity type a template spawns as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum NpcKind {
    /// A hostile creature (entity type Monster).
    Monster,
    /// A person: guard, merchant, townsfolk (entity type Npc).
    Npc,
}

/// How a template behaves toward enemies (by faction).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AiKind {
    /// Never fights: it wanders or patrols and ignores everyone.
    Passive,
    /// Fights back: it chases whoever hurts it, but attacks no one on sight.
    Defensive,
    /// Attacks enemies it sees within its aggro range.
    Aggressive,
}

/// One kind of NPC or monster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NpcTemplate {
    /// Unique id, at least 1 (0 means "no template": players and the
    /// background population).
    pub id: u16,
    /// Display name.
    pub name: String,
    /// Entity type.
    pub kind: NpcKind,
    /// Faction id (1 Alliance, 2 Horde, 3 monsters, 4 townsfolk).
    pub faction: u8,
    /// Level (experience and the combat formulas read it).
    pub level: u16,
    /// Base stats.
    pub stats: BaseStats,
    /// Hit points.
    pub hp: f64,
    /// Mana points.
    pub mp: f64,
    /// Walking speed, world units per second.
    pub speed: f64,
    /// Enemies within this distance (and in line of sight) are attacked
    /// (aggressive templates).
    pub aggro_range: f64,
    /// A chase ends, and the NPC walks home healing, when it is this far
    /// from home; at least `aggro_range`.
    pub leash_range: f64,
    /// Skill ids, used in this order of preference when ready.
    pub skills: Vec<u16>,
    /// Loot table id.
    #[serde(default)]
    pub loot: Option<u16>,
    /// Behaviour toward enemies.
    pub ai: AiKind,
    /// Flees when its HP fraction falls below this (0 < f < 1).
    #[serde(default)]
    pub flee_below: Option<f64>,
    /// Seconds from death to respawn at home.
    pub respawn_secs: f64,
}

/// Where the members of a spawn group appear.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum SpawnArea {
    /// Uniformly over a disc: `(x, y)` centre and radius, world units.
    Area {
        /// Centre on the ground plane.
        centre: (f64, f64),
        /// Radius.
        radius: f64,
    },
    /// At these points, in turn (member k at point k % len).
    Points(Vec<(f64, f64)>),
}

/// A group of NPCs of one template.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpawnGroup {
    /// Template id (in `npcs.ron`).
    pub template: u16,
    /// Where they appear (their home: they wander around it, respawn at
    /// it and leash back to it).
    pub area: SpawnArea,
    /// How many.
    pub count: u32,
    /// How far from home each wanders while idle (0: stands).
    #[serde(default)]
    pub wander_radius: f64,
    /// A patrol route id (in `patrols.ron`): members walk it instead of
    /// wandering.
    #[serde(default)]
    pub patrol: Option<u16>,
}

/// How a patrol walks its points.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PatrolMode {
    /// Last point, then the first again.
    Loop,
    /// There and back: 0, 1, .., n-1, n-2, .., 0.
    BackAndForth,
}

/// A route guards walk.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PatrolRoute {
    /// Unique id, at least 1.
    pub id: u16,
    /// Points on the ground plane, world units (2 to 64).
    pub points: Vec<(f64, f64)>,
    /// Loop or back and forth.
    pub mode: PatrolMode,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NpcsFile {
    templates: Vec<NpcTemplate>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SpawnsFile {
    groups: Vec<SpawnGroup>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PatrolsFile {
    routes: Vec<PatrolRoute>,
}

/// `npcs.ron`, `spawns.ron` and `patrols.ron`, validated.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct NpcData {
    /// NPC templates, in file order.
    pub templates: Vec<NpcTemplate>,
    /// Spawn groups, in file order.
    pub groups: Vec<SpawnGroup>,
    /// Patrol routes, in file order.
    pub routes: Vec<PatrolRoute>,
}

fn origin_in(dir: &str, file: &str) -> String {
    if dir.is_empty() {
        file.to_owned()
    } else {
        format!("{}/{file}", dir.trim_end_matches('/'))
    }
}

impl NpcData {
    /// Loads the three files from `dir`.
    pub fn load(dir: &Path) -> Result<Self, ConfigError> {
        let npcs = read_file(&dir.join(NPCS))?;
        let spawns = read_file(&dir.join(SPAWNS))?;
        let patrols = read_file(&dir.join(PATROLS))?;
        Self::from_ron_strs(&dir.display().to_string(), &npcs, &spawns, &patrols)
    }

    /// The files of `config/data/` at build time.
    pub fn embedded() -> Result<Self, ConfigError> {
        Self::from_ron_strs(
            "config/data (built in)",
            include_str!("../data/npcs.ron"),
            include_str!("../data/spawns.ron"),
            include_str!("../data/patrols.ron"),
        )
    }

    /// Parses and validates the files' text; errors name `dir/npcs.ron`
    /// and so on.
    pub fn from_ron_strs(
        dir: &str,
        npcs: &str,
        spawns: &str,
        patrols: &str,
    ) -> Result<Self, ConfigError> {
        let (n_origin, s_origin, p_origin) = (
            origin_in(dir, NPCS),
            origin_in(dir, SPAWNS),
            origin_in(dir, PATROLS),
        );
        let npcs: NpcsFile = from_ron(npcs, &n_origin)?;
        let spawns: SpawnsFile = from_ron(spawns, &s_origin)?;
        let patrols: PatrolsFile = from_ron(patrols, &p_origin)?;
        validate_templates(&npcs.templates, &Checker::new(&n_origin))?;
        validate_routes(&patrols.routes, &Checker::new(&p_origin))?;
        validate_groups(
            &spawns.groups,
            &npcs.templates,
            &patrols.routes,
            &Checker::new(&s_origin),
        )?;
        Ok(Self {
            templates: npcs.templates,
            groups: spawns.groups,
            routes: patrols.routes,
        })
    }

    /// The template with `id`.
    pub fn template(&self, id: u16) -> Option<&NpcTemplate> {
        self.templates.iter().find(|t| t.id == id)
    }

    /// The route with `id`.
    pub fn route(&self, id: u16) -> Option<&PatrolRoute> {
        self.routes.iter().find(|r| r.id == id)
    }

    /// Checks every spawn area and patrol point lies inside `world`
    /// (centred on the origin); errors name the file under `dir`.
    pub fn check_world(&self, dir: &str, world: &WorldConfig) -> Result<(), ConfigError> {
        let half = world.extent().map(|e| e / 2.0);
        let inside = |x: f64, y: f64, r: f64| {
            -half[0] <= x - r && x + r < half[0] && -half[1] <= y - r && y + r < half[1]
        };
        let allowed = format!(
            "inside the world: -{} <= x < {}, -{} <= y < {}",
            half[0], half[0], half[1], half[1]
        );
        let spawns = origin_in(dir, SPAWNS);
        let check = Checker::new(&spawns);
        for (g, group) in self.groups.iter().enumerate() {
            match &group.area {
                SpawnArea::Area { centre, radius } => check.require(
                    inside(centre.0, centre.1, radius + group.wander_radius),
                    format!("groups[{g}].area"),
                    allowed.as_str(),
                    format_args!(
                        "centre {centre:?}, radius {radius} + wander {}",
                        group.wander_radius
                    ),
                )?,
                SpawnArea::Points(points) => {
                    for (k, &(x, y)) in points.iter().enumerate() {
                        check.require(
                            inside(x, y, group.wander_radius),
                            format!("groups[{g}].area.points[{k}]"),
                            allowed.as_str(),
                            format_args!("({x}, {y})"),
                        )?;
                    }
                }
            }
        }
        let patrols = origin_in(dir, PATROLS);
        let check = Checker::new(&patrols);
        for (r, route) in self.routes.iter().enumerate() {
            for (k, &(x, y)) in route.points.iter().enumerate() {
                check.require(
                    inside(x, y, 0.0),
                    format!("routes[{r}].points[{k}]"),
                    allowed.as_str(),
                    format_args!("({x}, {y})"),
                )?;
            }
        }
        Ok(())
    }

    /// How many NPCs the spawn groups place in all.
    pub fn spawned(&self) -> u64 {
        self.groups.iter().map(|g| u64::from(g.count)).sum()
    }
}

fn validate_templates(templates: &[NpcTemplate], check: &Checker<'_>) -> Result<(), ConfigError> {
    check.require(
        !templates.is_empty(),
        "templates",
        "at least one template",
        "none",
    )?;
    let mut ids = HashSet::new();
    for (i, t) in templates.iter().enumerate() {
        let field = |name: &str| format!("templates[{i}].{name}");
        check.at_least(&field("id"), t.id, 1)?;
        check.require(
            ids.insert(t.id),
            field("id"),
            "an id not used by an earlier template",
            t.id,
        )?;
        check.require(
            !t.name.trim().is_empty(),
            field("name"),
            "a non-empty name",
            format_args!("{:?}", t.name),
        )?;
        check.in_range(&field("faction"), t.faction, 0, 15)?;
        check.in_range(&field("level"), t.level, 1, 1000)?;
        let s = &t.stats;
        for (name, value) in [
            ("int", s.int),
            ("str", s.str),
            ("con", s.con),
            ("men", s.men),
            ("dex", s.dex),
            ("wit", s.wit),
        ] {
            check.at_least(&field(&format!("stats.{name}")), value, 1)?;
        }
        check.positive(&field("hp"), t.hp)?;
        check.require(
            t.mp.is_finite() && t.mp >= 0.0,
            field("mp"),
            "a finite number of at least 0",
            t.mp,
        )?;
        for (name, value) in [("speed", t.speed), ("aggro_range", t.aggro_range)] {
            check.require(
                value.is_finite() && (0.0..=100_000.0).contains(&value),
                field(name),
                "a finite number in 0..=100000",
                value,
            )?;
        }
        check.require(
            t.leash_range.is_finite()
                && t.leash_range >= t.aggro_range
                && t.leash_range <= 200_000.0,
            field("leash_range"),
            format!(
                "at least aggro_range ({}) and at most 200000",
                t.aggro_range
            ),
            t.leash_range,
        )?;
        check.require(
            t.skills.len() <= MAX_NPC_SKILLS,
            field("skills"),
            format!("at most {MAX_NPC_SKILLS} skills"),
            t.skills.len(),
        )?;
        let fights = t.ai != AiKind::Passive;
        check.require(
            !fights || !t.skills.is_empty(),
            field("skills"),
            "at least one skill (the template fights: ai is not Passive)",
            "none",
        )?;
        check.require(
            !fights || t.speed > 0.0,
            field("speed"),
            "above 0 (the template fights, so it must be able to chase)",
            t.speed,
        )?;
        if let Some(f) = t.flee_below {
            check.require(
                f > 0.0 && f < 1.0,
                field("flee_below"),
                "None, or Some(f) with 0 < f < 1",
                f,
            )?;
        }
        check.require(
            t.respawn_secs.is_finite() && (1.0..=86_400.0).contains(&t.respawn_secs),
            field("respawn_secs"),
            "1..=86400 seconds",
            t.respawn_secs,
        )?;
    }
    Ok(())
}

fn validate_routes(routes: &[PatrolRoute], check: &Checker<'_>) -> Result<(), ConfigError> {
    let mut ids = HashSet::new();
    for (i, r) in routes.iter().enumerate() {
        let field = |name: &str| format!("routes[{i}].{name}");
        check.at_least(&field("id"), r.id, 1)?;
        check.require(
            ids.insert(r.id),
            field("id"),
            "an id not used by an earlier route",
            r.id,
        )?;
        check.require(
            (2..=MAX_PATROL_POINTS).contains(&r.points.len()),
            field("points"),
            format!("2..={MAX_PATROL_POINTS} points"),
            r.points.len(),
        )?;
        for (k, &(x, y)) in r.points.iter().enumerate() {
            check.require(
                x.is_finite() && y.is_finite(),
                field(&format!("points[{k}]")),
                "finite coordinates",
                format_args!("({x}, {y})"),
            )?;
        }
    }
    Ok(())
}

fn validate_groups(
    groups: &[SpawnGroup],
    templates: &[NpcTemplate],
    routes: &[PatrolRoute],
    check: &Checker<'_>,
) -> Result<(), ConfigError> {
    let mut total = 0u64;
    for (i, g) in groups.iter().enumerate() {
        let field = |name: &str| format!("groups[{i}].{name}");
        check.require(
            templates.iter().any(|t| t.id == g.template),
            field("template"),
            "the id of a template in npcs.ron",
            g.template,
        )?;
        check.in_range(&field("count"), g.count, 1, MAX_SPAWNED)?;
        total += u64::from(g.count);
        match &g.area {
            SpawnArea::Area { centre, radius } => {
                check.require(
                    centre.0.is_finite() && centre.1.is_finite(),
                    field("area.centre"),
                    "finite coordinates",
                    format_args!("{centre:?}"),
                )?;
                check.require(
                    radius.is_finite() && *radius >= 0.0,
                    field("area.radius"),
                    "a finite distance of at least 0",
                    radius,
                )?;
            }
            SpawnArea::Points(points) => {
                check.require(
                    !points.is_empty(),
                    field("area.points"),
                    "at least one point",
                    "none",
                )?;
                for (k, &(x, y)) in points.iter().enumerate() {
                    check.require(
                        x.is_finite() && y.is_finite(),
                        field(&format!("area.points[{k}]")),
                        "finite coordinates",
                        format_args!("({x}, {y})"),
                    )?;
                }
            }
        }
        check.require(
            g.wander_radius.is_finite() && (0.0..=100_000.0).contains(&g.wander_radius),
            field("wander_radius"),
            "a finite distance in 0..=100000",
            g.wander_radius,
        )?;
        if let Some(p) = g.patrol {
            check.require(
                routes.iter().any(|r| r.id == p),
                field("patrol"),
                "None, or the id of a route in patrols.ron",
                p,
            )?;
        }
    }
    check.require(
        total <= u64::from(MAX_SPAWNED),
        "groups",
        format!("at most {MAX_SPAWNED} NPCs in all"),
        total,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILES: [&str; 3] = [NPCS, SPAWNS, PATROLS];

    fn shipped_text(file: &str) -> String {
        std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("data")
                .join(file),
        )
        .unwrap()
    }

    fn expect(file: &str, field: &str, edit: impl Fn(String) -> String) {
        let mut texts = FILES.map(shipped_text);
        let k = FILES.iter().position(|f| *f == file).unwrap();
        let edited = edit(texts[k].clone());
        assert_ne!(edited, texts[k], "the edit changed nothing");
        texts[k] = edited;
        match NpcData::from_ron_strs("config/data", &texts[0], &texts[1], &texts[2]) {
            Err(error @ ConfigError::Invalid { .. }) => {
                let display = error.to_string();
                let ConfigError::Invalid {
                    origin, field: f, ..
                } = error
                else {
                    unreachable!()
                };
                assert_eq!(origin, format!("config/data/{file}"), "{display}");
                assert_eq!(f, field, "{display}");
            }
            other => panic!("expected an Invalid error for {field}, got {other:?}"),
        }
    }

    #[test]
    fn shipped_files_load_and_fit_the_default_world() {
        let data = NpcData::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("data")).unwrap();
        assert_eq!(data, NpcData::embedded().unwrap());
        data.check_world("config/data", &WorldConfig::default())
            .unwrap();
        assert!(data.templates.len() >= 8);
        assert!(data.spawned() >= 300, "{}", data.spawned());
        assert!(data.groups.iter().any(|g| g.patrol.is_some()));
        // Both start areas and the battle grounds have monsters.
        for (x, y) in [(-100_000.0, 0.0), (100_000.0, 0.0), (1_000.0, 1_000.0)] {
            let near = data.groups.iter().any(|g| {
                let monster = data.template(g.template).unwrap().kind == NpcKind::Monster;
                let c = match &g.area {
                    SpawnArea::Area { centre, .. } => *centre,
                    SpawnArea::Points(p) => p[0],
                };
                monster && (c.0 - x).hypot(c.1 - y) < 20_000.0
            });
            assert!(near, "no monsters near ({x}, {y})");
        }
        // The vanguards' arena (1.5 km around (1000, 1000), characters.ron)
        // is out of every aggressive NPC's reach: its home area, wander
        // radius and aggro range together.
        for g in &data.groups {
            let t = data.template(g.template).unwrap();
            if t.ai != AiKind::Aggressive {
                continue;
            }
            let homes: Vec<((f64, f64), f64)> = match &g.area {
                SpawnArea::Area { centre, radius } => vec![(*centre, *radius)],
                SpawnArea::Points(p) => p.iter().map(|&c| (c, 0.0)).collect(),
            };
            for (c, r) in homes {
                let reach = r + g.wander_radius + t.aggro_range;
                let d = (c.0 - 1_000.0).hypot(c.1 - 1_000.0);
                assert!(d - reach > 1_500.0, "{} reaches into the arena", t.name);
            }
        }
    }

    #[test]
    fn errors_name_the_file_and_the_field() {
        expect(NPCS, "templates[1].id", |t| {
            t.replacen("id: 2,", "id: 1,", 1)
        });
        expect(NPCS, "templates[0].id", |t| {
            t.replacen("id: 1,", "id: 0,", 1)
        });
        expect(NPCS, "templates[0].leash_range", |t| {
            t.replacen("leash_range: 3000.0", "leash_range: 10.0", 1)
        });
        expect(NPCS, "templates[0].skills", |t| {
            t.replacen("skills: [1],", "skills: [],", 1)
        });
        expect(NPCS, "templates[0].flee_below", |t| {
            t.replacen("flee_below: None", "flee_below: Some(1.5)", 1)
        });
        expect(NPCS, "templates[0].hp", |t| {
            t.replacen("hp: 120.0", "hp: -1.0", 1)
        });
        expect(SPAWNS, "groups[0].template", |t| {
            t.replacen("template: 1,", "template: 999,", 1)
        });
        expect(SPAWNS, "groups[0].count", |t| {
            t.replacen("count: 40", "count: 0", 1)
        });
        expect(SPAWNS, "groups", |t| {
            t.replacen("count: 40", "count: 199999", 1)
        });
        expect(PATROLS, "routes[0].points", |t| {
            let start = t.find("points: [").unwrap();
            let end = start + t[start..].find(']').unwrap();
            format!("{}points: [(0.0, 0.0)]{}", &t[..start], &t[end + 1..])
        });
    }

    #[test]
    fn unknown_patrol_and_world_bounds_are_refused() {
        let texts = FILES.map(shipped_text);
        let spawns = texts[1].replacen("patrol: Some(1)", "patrol: Some(77)", 1);
        assert_ne!(spawns, texts[1]);
        let e = NpcData::from_ron_strs("d", &texts[0], &spawns, &texts[2]).unwrap_err();
        assert!(
            e.to_string().starts_with("d/spawns.ron: invalid `groups["),
            "{e}"
        );
        assert!(e.to_string().contains("patrol"), "{e}");
        let data = NpcData::from_ron_strs("d", &texts[0], &texts[1], &texts[2]).unwrap();
        let small = WorldConfig {
            components: [1, 1, 4],
            ..WorldConfig::default()
        };
        let e = data.check_world("d", &small).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("d/spawns.ron: invalid `groups[0].area`"),
            "{e}"
        );
        // A typo in a field name names the field.
        let npcs = texts[0].replacen("aggro_range:", "agro_range:", 1);
        let e = NpcData::from_ron_strs("d", &npcs, &texts[1], &texts[2]).unwrap_err();
        assert!(
            e.to_string().contains("d/npcs.ron") && e.to_string().contains("agro_range"),
            "{e}"
        );
    }
}
