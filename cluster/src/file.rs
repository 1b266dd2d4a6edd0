//! The cluster file: which `tos-server` processes (nodes) make up one world,
//! where clients and NATS reach them, and which quadrants each one owns.
//!
//! The file is RON, like every other settings file, and is validated as a
//! whole before a node joins: every quadrant of the world's grid is owned by
//! exactly one node, node names are unique and usable in NATS subjects,
//! addresses parse, and each node's shard layout gives every one of its cores
//! at least one of the node's quadrants. Errors are [`ConfigError`]s, naming
//! the file and the dotted field, as for the other files.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tos_config::{ConfigError, ServerConfig, ShardLayout, WorldConfig};

/// Most nodes one cluster file may list. Each node is a NATS subject and a
/// directory owner; the bound keeps validation and owner tables small.
pub const MAX_NODES: usize = 64;

/// Longest node or cluster name, in bytes. Names become NATS subject tokens
/// and JetStream bucket names, which must stay short and plain.
pub const MAX_NAME_LEN: usize = 32;

/// The whole cluster file (`config/cluster-*.ron`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterFile {
    /// The cluster's name: the prefix of its NATS subjects and JetStream
    /// buckets, so that two clusters can share one NATS server.
    pub name: String,
    /// The world every node runs; its quadrant grid is what the nodes
    /// split. Must equal the `world` section of each node's settings.
    #[serde(default)]
    pub world: WorldConfig,
    /// How long a character lease lives without renewal, in milliseconds.
    /// A node that dies has its characters released after this long.
    #[serde(default = "default_lease_ttl_ms")]
    pub lease_ttl_ms: u64,
    /// How long a sender waits for the receiver's acknowledgement of a
    /// hand-off before it settles the hand-off through the directory.
    #[serde(default = "default_handoff_timeout_ms")]
    pub handoff_timeout_ms: u64,
    /// How long a node keeps a player handed over to it for its client to
    /// connect with the transfer ticket; after that the player is saved
    /// where it crossed and its lease released (the client logs in again).
    #[serde(default = "default_transfer_timeout_ms")]
    pub transfer_timeout_ms: u64,
    /// The processes of this world.
    pub nodes: Vec<NodeSpec>,
}

fn default_lease_ttl_ms() -> u64 {
    30_000
}

fn default_handoff_timeout_ms() -> u64 {
    2_000
}

fn default_transfer_timeout_ms() -> u64 {
    10_000
}

/// One process of the cluster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeSpec {
    /// Unique name: lowercase letters, digits, `-` and `_`.
    pub name: String,
    /// The UDP address clients are sent to when they move to this node.
    pub address: String,
    /// The node's static X25519 public key, 64 hex digits (the server logs
    /// it at start: "server static public key"); clients sent here pin it.
    /// Omitted: the nodes share one key file (one `--data-dir` or the same
    /// `security.server_static_key_file`), and each node sends its own key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub static_key: Option<String>,
    /// The NATS server this node connects to (`nats://host:port`).
    pub nats_url: String,
    /// The node's shard layout file (which of its cores owns which
    /// quadrant), relative to the cluster file's folder.
    pub layout: PathBuf,
    /// The quadrants this node owns.
    pub quadrants: QuadrantSet,
}

/// A set of quadrants, as written in the file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub enum QuadrantSet {
    /// Boxes of quadrant coordinates, both corners included.
    Rects(Vec<QuadrantRect>),
    /// Quadrants listed one by one, as `(x, y, z)`.
    List(Vec<[u16; 3]>),
}

/// A box of quadrants from `min` to `max`, both included.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuadrantRect {
    /// The lowest corner, `(x, y, z)`.
    pub min: [u16; 3],
    /// The highest corner, `(x, y, z)`, included.
    pub max: [u16; 3],
}

/// A validated cluster file with its owner table.
#[derive(Debug, Clone)]
pub struct Cluster {
    file: ClusterFile,
    grid: [u16; 3],
    /// Node index per quadrant, indexed like a layout's owner table
    /// (`x + y * gx + z * gx * gy`).
    owners: Vec<u16>,
    addresses: Vec<SocketAddr>,
    keys: Vec<Option<[u8; 32]>>,
    layouts: Vec<Option<ShardLayout>>,
}

impl ClusterFile {
    /// Parses RON text; errors name `origin`.
    pub fn from_ron_str(text: &str, origin: &str) -> Result<Self, ConfigError> {
        tos_config::from_ron(text, origin)
    }
}

impl Cluster {
    /// Reads, parses and validates the cluster file at `path`, and loads
    /// every node's layout file (relative to the cluster file's folder).
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.to_owned(),
            source,
        })?;
        let origin = path.display().to_string();
        let file = ClusterFile::from_ron_str(&text, &origin)?;
        let base = path.parent().unwrap_or_else(|| Path::new("."));
        let mut layouts = Vec::with_capacity(file.nodes.len());
        for node in &file.nodes {
            layouts.push(Some(ShardLayout::load(&base.join(&node.layout))?));
        }
        Self::build(file, layouts, &origin)
    }

    /// Validates a parsed file without reading layout files (their cores are
    /// then not checked against the node's quadrants): for tests and tools
    /// that only need the owner table.
    pub fn without_layouts(file: ClusterFile, origin: &str) -> Result<Self, ConfigError> {
        let layouts = vec![None; file.nodes.len()];
        Self::build(file, layouts, origin)
    }

    fn build(
        file: ClusterFile,
        layouts: Vec<Option<ShardLayout>>,
        origin: &str,
    ) -> Result<Self, ConfigError> {
        let invalid = |field: String, allowed: &str, found: String| ConfigError::Invalid {
            origin: origin.to_owned(),
            field,
            allowed: allowed.to_owned(),
            found,
        };
        check_name(&file.name).map_err(|why| invalid("name".into(), why, quote(&file.name)))?;
        // The world section is checked by the settings' own rules (its
        // errors already say `world.<field>`): a settings file with this
        // world and defaults elsewhere is valid exactly when the world is.
        ServerConfig {
            world: file.world.clone(),
            ..ServerConfig::default()
        }
        .validate(origin)?;
        if !(1_000..=3_600_000).contains(&file.lease_ttl_ms) {
            return Err(invalid(
                "lease_ttl_ms".into(),
                "1000..=3600000",
                file.lease_ttl_ms.to_string(),
            ));
        }
        if !(10..=60_000).contains(&file.handoff_timeout_ms) {
            return Err(invalid(
                "handoff_timeout_ms".into(),
                "10..=60000",
                file.handoff_timeout_ms.to_string(),
            ));
        }
        // A hand-off must be settled long before the lease it moves could
        // expire, or a slow hand-off would lose the character to expiry.
        if file.handoff_timeout_ms.saturating_mul(4) > file.lease_ttl_ms {
            return Err(invalid(
                "handoff_timeout_ms".into(),
                "at most a quarter of lease_ttl_ms",
                file.handoff_timeout_ms.to_string(),
            ));
        }
        if !(1_000..=120_000).contains(&file.transfer_timeout_ms) {
            return Err(invalid(
                "transfer_timeout_ms".into(),
                "1000..=120000",
                file.transfer_timeout_ms.to_string(),
            ));
        }
        if file.nodes.is_empty() || file.nodes.len() > MAX_NODES {
            return Err(invalid(
                "nodes".into(),
                "1..=64 nodes",
                format!("{} nodes", file.nodes.len()),
            ));
        }

        let grid = file.world.quadrant_grid();
        let count = grid.iter().map(|&n| usize::from(n)).product::<usize>();
        const FREE: u16 = u16::MAX;
        let mut owners = vec![FREE; count];
        let mut addresses = Vec::with_capacity(file.nodes.len());
        let mut keys = Vec::with_capacity(file.nodes.len());
        let mut names: HashMap<&str, usize> = HashMap::new();
        for (n, node) in file.nodes.iter().enumerate() {
            let field = |name: &str| format!("nodes[{n}].{name}");
            check_name(&node.name).map_err(|why| invalid(field("name"), why, quote(&node.name)))?;
            if let Some(first) = names.insert(node.name.as_str(), n) {
                return Err(invalid(
                    field("name"),
                    "a name no other node has",
                    format!("{} (also nodes[{first}].name)", quote(&node.name)),
                ));
            }
            let address = SocketAddr::from_str(&node.address).map_err(|_| {
                invalid(
                    field("address"),
                    "an IP address and port",
                    quote(&node.address),
                )
            })?;
            addresses.push(address);
            let key = match &node.static_key {
                Some(k) => Some(
                    tos_config::parse_hex32(k)
                        .map_err(|why| invalid(field("static_key"), &why, quote(k)))?,
                ),
                None => None,
            };
            keys.push(key);
            check_nats_url(&node.nats_url)
                .map_err(|why| invalid(field("nats_url"), why, quote(&node.nats_url)))?;

            let index = |q: [u16; 3]| -> Option<usize> {
                if (0..3).all(|a| q[a] < grid[a]) {
                    let [gx, gy, _] = grid.map(usize::from);
                    Some(usize::from(q[0]) + usize::from(q[1]) * gx + usize::from(q[2]) * gx * gy)
                } else {
                    None
                }
            };
            let grid_text = format!("quadrant coordinates below the grid {grid:?}");
            let mut claim = |q: [u16; 3], at: String| -> Result<(), ConfigError> {
                let i =
                    index(q).ok_or_else(|| invalid(at.clone(), &grid_text, format!("{q:?}")))?;
                match owners[i] {
                    FREE => {
                        owners[i] = n as u16;
                        Ok(())
                    }
                    other => Err(invalid(
                        at,
                        "quadrants no other node owns",
                        format!(
                            "{q:?}, already owned by nodes[{other}] ({})",
                            file.nodes[usize::from(other)].name
                        ),
                    )),
                }
            };
            match &node.quadrants {
                QuadrantSet::Rects(rects) => {
                    if rects.is_empty() {
                        return Err(invalid(
                            field("quadrants.Rects"),
                            "at least one box",
                            "an empty list".into(),
                        ));
                    }
                    for (r, rect) in rects.iter().enumerate() {
                        let at = format!("nodes[{n}].quadrants.Rects[{r}]");
                        if (0..3).any(|a| rect.min[a] > rect.max[a]) {
                            return Err(invalid(
                                at,
                                "min <= max on every axis",
                                format!("min {:?}, max {:?}", rect.min, rect.max),
                            ));
                        }
                        if index(rect.max).is_none() {
                            return Err(invalid(
                                at + ".max",
                                &grid_text,
                                format!("{:?}", rect.max),
                            ));
                        }
                        for z in rect.min[2]..=rect.max[2] {
                            for y in rect.min[1]..=rect.max[1] {
                                for x in rect.min[0]..=rect.max[0] {
                                    claim([x, y, z], at.clone())?;
                                }
                            }
                        }
                    }
                }
                QuadrantSet::List(list) => {
                    if list.is_empty() {
                        return Err(invalid(
                            field("quadrants.List"),
                            "at least one quadrant",
                            "an empty list".into(),
                        ));
                    }
                    for (i, &q) in list.iter().enumerate() {
                        claim(q, format!("nodes[{n}].quadrants.List[{i}]"))?;
                    }
                }
            }
        }
        if let Some(i) = owners.iter().position(|&o| o == FREE) {
            let [gx, gy, _] = grid.map(usize::from);
            let q = [i % gx, (i / gx) % gy, i / (gx * gy)];
            return Err(invalid(
                "nodes".into(),
                "every quadrant owned by exactly one node",
                format!("quadrant {q:?} owned by none"),
            ));
        }

        // Each core of a node's layout must have work on that node: a core
        // whose quadrants all belong to other nodes would sit idle while
        // its siblings carry the node's load.
        for (n, layout) in layouts.iter().enumerate() {
            let Some(layout) = layout else { continue };
            let field = format!("nodes[{n}].layout");
            let resolved = layout.resolve(grid).map_err(|e| {
                invalid(
                    field.clone(),
                    "a layout that fits the world's grid",
                    e.to_string(),
                )
            })?;
            for core in 0..resolved.cores() {
                let busy = resolved.quadrants_of(core).any(|q| {
                    let [gx, gy, _] = grid.map(usize::from);
                    let i =
                        usize::from(q[0]) + usize::from(q[1]) * gx + usize::from(q[2]) * gx * gy;
                    owners.get(i) == Some(&(n as u16))
                });
                if !busy {
                    return Err(invalid(
                        field.clone(),
                        "a layout whose every core owns one of the node's quadrants",
                        format!(
                            "core {core} owns none of {}'s quadrants",
                            file.nodes[n].name
                        ),
                    ));
                }
            }
        }

        Ok(Self {
            file,
            grid,
            owners,
            addresses,
            keys,
            layouts,
        })
    }

    /// The file as parsed.
    pub fn file(&self) -> &ClusterFile {
        &self.file
    }

    /// The cluster's name (subject and bucket prefix).
    pub fn name(&self) -> &str {
        &self.file.name
    }

    /// The quadrant grid the nodes split.
    pub fn grid(&self) -> [u16; 3] {
        self.grid
    }

    /// How long a lease lives unrenewed.
    pub fn lease_ttl(&self) -> Duration {
        Duration::from_millis(self.file.lease_ttl_ms)
    }

    /// How long a sender waits for a hand-off's acknowledgement.
    pub fn handoff_timeout(&self) -> Duration {
        Duration::from_millis(self.file.handoff_timeout_ms)
    }

    /// How long an arrival waits for its client.
    pub fn transfer_timeout(&self) -> Duration {
        Duration::from_millis(self.file.transfer_timeout_ms)
    }

    /// The nodes, in file order.
    pub fn nodes(&self) -> &[NodeSpec] {
        &self.file.nodes
    }

    /// The index of the node called `name`.
    pub fn node_index(&self, name: &str) -> Option<usize> {
        self.file.nodes.iter().position(|n| n.name == name)
    }

    /// The static public key the file gives node `index`, if any.
    pub fn static_key(&self, index: usize) -> Option<[u8; 32]> {
        self.keys.get(index).copied().flatten()
    }

    /// The parsed client address of node `index`.
    pub fn address(&self, index: usize) -> Option<SocketAddr> {
        self.addresses.get(index).copied()
    }

    /// Node `index`'s shard layout, when loaded with [`Cluster::load`].
    pub fn layout(&self, index: usize) -> Option<&ShardLayout> {
        self.layouts.get(index).and_then(Option::as_ref)
    }

    /// The index of the node owning `quadrant`, or `None` outside the grid.
    pub fn owner(&self, quadrant: [u16; 3]) -> Option<usize> {
        if (0..3).any(|a| quadrant[a] >= self.grid[a]) {
            return None;
        }
        let [gx, gy, _] = self.grid.map(usize::from);
        let i = usize::from(quadrant[0])
            + usize::from(quadrant[1]) * gx
            + usize::from(quadrant[2]) * gx * gy;
        self.owners.get(i).map(|&o| usize::from(o))
    }

    /// Every quadrant node `index` owns, in grid order.
    pub fn quadrants_of(&self, index: usize) -> impl Iterator<Item = [u16; 3]> + '_ {
        let [gx, gy, _] = self.grid.map(usize::from);
        self.owners
            .iter()
            .enumerate()
            .filter(move |&(_, &o)| usize::from(o) == index)
            .map(move |(i, _)| {
                [
                    (i % gx) as u16,
                    ((i / gx) % gy) as u16,
                    (i / (gx * gy)) as u16,
                ]
            })
    }
}

/// Checks a node or cluster name: it becomes a NATS subject token and part
/// of a bucket name, where dots, wildcards and spaces have meanings.
pub(crate) fn check_name(name: &str) -> Result<(), &'static str> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err("1 to 32 of a-z, 0-9, '-' and '_'")
    }
}

/// Checks a NATS URL the way the client will read it.
fn check_nats_url(url: &str) -> Result<(), &'static str> {
    let allowed = "a NATS URL such as nats://127.0.0.1:4222";
    if !(url.starts_with("nats://") || url.starts_with("tls://")) {
        return Err(allowed);
    }
    async_nats::ServerAddr::from_str(url)
        .map(|_| ())
        .map_err(|_| allowed)
}

fn quote(text: &str) -> String {
    format!("{text:?}")
}

#[cfg(test)]
mod tests {
    use super::*;

    const TWO: &str = r#"(
        name: "test",
        nodes: [
            (name: "west", address: "127.0.0.1:7001", nats_url: "nats://127.0.0.1:4222",
             layout: "layouts/single-core.ron",
             quadrants: Rects([(min: (0, 0, 0), max: (7, 15, 0))])),
            (name: "east", address: "127.0.0.1:7002", nats_url: "nats://127.0.0.1:4222",
             layout: "layouts/single-core.ron",
             quadrants: Rects([(min: (8, 0, 0), max: (15, 15, 0))])),
        ],
    )"#;

    fn parse(text: &str) -> Result<Cluster, ConfigError> {
        Cluster::without_layouts(ClusterFile::from_ron_str(text, "t.ron")?, "t.ron")
    }

    fn invalid_field(text: &str) -> String {
        match parse(text) {
            Err(ConfigError::Invalid { field, origin, .. }) => {
                assert_eq!(origin, "t.ron");
                field
            }
            other => panic!("expected an invalid field, got {other:?}"),
        }
    }

    #[test]
    fn two_nodes_split_the_default_grid() {
        let c = parse(TWO).expect("valid");
        assert_eq!(c.grid(), [16, 16, 1]);
        assert_eq!(c.owner([0, 0, 0]), Some(0));
        assert_eq!(c.owner([7, 15, 0]), Some(0));
        assert_eq!(c.owner([8, 0, 0]), Some(1));
        assert_eq!(c.owner([16, 0, 0]), None);
        assert_eq!(c.quadrants_of(1).count(), 128);
        assert_eq!(c.quadrants_of(1).next(), Some([8, 0, 0]));
        assert_eq!(c.node_index("east"), Some(1));
        assert_eq!(c.address(1), Some("127.0.0.1:7002".parse().unwrap()));
        assert_eq!(c.lease_ttl(), Duration::from_secs(30));
    }

    #[test]
    fn a_list_of_quadrants_is_accepted() {
        let text = TWO.replace(
            "Rects([(min: (8, 0, 0), max: (15, 15, 0))])",
            "Rects([(min: (8, 0, 0), max: (15, 14, 0))])",
        );
        // (8..16, 15) now owned by none: the error names one of them.
        assert_eq!(invalid_field(&text), "nodes");
        let list: Vec<String> = (8..16).map(|x| format!("({x}, 15, 0)")).collect();
        let text = text.replace(
            "(name: \"east\"",
            &format!(
                "(name: \"north\", address: \"127.0.0.1:7003\", nats_url: \"nats://127.0.0.1:4222\", layout: \"x.ron\", quadrants: List([{}])),\n(name: \"east\"",
                list.join(", ")
            ),
        );
        let c = parse(&text).expect("valid");
        assert_eq!(c.owner([9, 15, 0]), Some(1));
        assert_eq!(c.owner([9, 14, 0]), Some(2));
    }

    #[test]
    fn overlaps_gaps_and_bad_fields_name_the_field() {
        let overlap = TWO.replace("min: (8, 0, 0)", "min: (7, 0, 0)");
        assert_eq!(invalid_field(&overlap), "nodes[1].quadrants.Rects[0]");
        let outside = TWO.replace("max: (15, 15, 0)", "max: (16, 15, 0)");
        assert_eq!(invalid_field(&outside), "nodes[1].quadrants.Rects[0].max");
        let reversed = TWO.replace(
            "min: (8, 0, 0), max: (15, 15, 0)",
            "min: (15, 0, 0), max: (8, 15, 0)",
        );
        assert_eq!(invalid_field(&reversed), "nodes[1].quadrants.Rects[0]");
        let same_name = TWO.replace("\"east\"", "\"west\"");
        assert_eq!(invalid_field(&same_name), "nodes[1].name");
        let bad_name = TWO.replace("\"east\"", "\"East.1\"");
        assert_eq!(invalid_field(&bad_name), "nodes[1].name");
        let bad_address = TWO.replace("127.0.0.1:7002", "localhost");
        assert_eq!(invalid_field(&bad_address), "nodes[1].address");
        let bad_key = TWO.replace(
            "address: \"127.0.0.1:7002\",",
            "address: \"127.0.0.1:7002\", static_key: Some(\"12ab\"),",
        );
        assert_eq!(invalid_field(&bad_key), "nodes[1].static_key");
        let key = "ab".repeat(32);
        let good_key = TWO.replace(
            "address: \"127.0.0.1:7002\",",
            &format!("address: \"127.0.0.1:7002\", static_key: Some(\"{key}\"),"),
        );
        let c = parse(&good_key).expect("valid");
        assert_eq!(c.static_key(1), Some([0xab; 32]));
        assert_eq!(c.static_key(0), None);
        let bad_url = TWO.replacen("nats://127.0.0.1:4222", "http://x", 1);
        assert_eq!(invalid_field(&bad_url), "nodes[0].nats_url");
        let bad_cluster = TWO.replace("name: \"test\"", "name: \"a b\"");
        assert_eq!(invalid_field(&bad_cluster), "name");
        let short_lease = TWO.replace("name: \"test\",", "name: \"test\", lease_ttl_ms: 4000,");
        assert_eq!(invalid_field(&short_lease), "handoff_timeout_ms");
        let long_transfer = TWO.replace(
            "name: \"test\",",
            "name: \"test\", transfer_timeout_ms: 999999,",
        );
        assert_eq!(invalid_field(&long_transfer), "transfer_timeout_ms");
        let bad_world = TWO.replace(
            "name: \"test\",",
            "name: \"test\", world: (components: (0, 8, 4)),",
        );
        assert_eq!(invalid_field(&bad_world), "world.components[0]");
        let no_nodes = "(name: \"test\", nodes: [])";
        assert_eq!(invalid_field(no_nodes), "nodes");
    }

    #[test]
    fn unknown_fields_are_refused_with_the_file_and_place() {
        let text = TWO.replace("name: \"test\",", "name: \"test\", colour: 3,");
        match parse(&text) {
            Err(ConfigError::Parse {
                origin, message, ..
            }) => {
                assert_eq!(origin, "t.ron");
                assert!(message.contains("colour"), "{message}");
            }
            other => panic!("expected a parse error, got {other:?}"),
        }
    }

    #[test]
    fn the_shipped_example_loads_with_its_layouts() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/cluster-2nodes.ron");
        let c = Cluster::load(&path).expect("config/cluster-2nodes.ron is valid");
        assert_eq!(c.nodes().len(), 2);
        assert!(c.layout(0).is_some() && c.layout(1).is_some());
        for q in [[0, 0, 0], [15, 15, 0], [7, 3, 0], [8, 3, 0]] {
            let owner = c.owner(q).expect("inside the grid");
            assert!(c.quadrants_of(owner).any(|x| x == q));
        }
        assert_ne!(c.owner([7, 3, 0]), c.owner([8, 3, 0]));
    }

    #[test]
    fn a_layout_with_an_idle_core_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let layouts = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/layouts");
        // stripes-2 gives core 1 the east half: on the west node it idles.
        let text = TWO
            .replacen(
                "layouts/single-core.ron",
                &layouts.join("stripes-2.ron").display().to_string(),
                1,
            )
            .replace(
                "layouts/single-core.ron",
                &layouts.join("single-core.ron").display().to_string(),
            );
        let path = dir.path().join("c.ron");
        std::fs::write(&path, text).unwrap();
        match Cluster::load(&path) {
            Err(ConfigError::Invalid { field, found, .. }) => {
                assert_eq!(field, "nodes[0].layout");
                assert!(found.contains("core 1"), "{found}");
            }
            other => panic!("expected an idle core, got {other:?}"),
        }
    }
}
