//! The game layer's side of the cluster: which quadrants other nodes
//! simulate, and the plain values a core exchanges with the node's cluster
//! thread (character leases, whispers to other nodes, players crossing
//! to other nodes and arriving from them, NPCs walking across, ghosts near
//! node borders). The NATS link
//! itself runs in the engine on a thread of its own; a core only sends a
//! [`ClusterCommand`] over a bounded channel and reads the
//! [`ClusterReply`]s of its own bounded channel, the way it talks to the
//! store, so nothing here blocks or touches a socket.

use std::sync::atomic::{AtomicBool, Ordering};

use crossbeam_channel::{Receiver, Sender, TrySendError};
use tos_shards::NodeGhosts;

use crate::transfer::{TransferRecord, TransferSecret};

/// A node of the cluster, as the game layer needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeInfo {
    /// The node's name.
    pub name: String,
    /// The address its clients reach it at (sent to a client crossing
    /// onto its ground).
    pub address: String,
    /// Its static X25519 public key (the client pins it).
    pub static_key: [u8; 32],
}

/// What the cores of a node share about the cluster.
#[derive(Debug)]
pub struct ClusterView {
    /// This node's index in `nodes`.
    pub me: usize,
    /// Every node, in cluster-file order.
    pub nodes: Vec<NodeInfo>,
    /// The owning node per quadrant, indexed like a layout's owner table
    /// (`x + y * gx + z * gx * gy`).
    pub owners: Vec<u16>,
    /// Quadrants per axis.
    pub grid: [u16; 3],
    /// Commands to the cluster thread (bounded).
    pub commands: Sender<ClusterCommand>,
    /// Ghost batches for other nodes, to the cluster thread (bounded apart
    /// from `commands`: a stalled link drops ghosts, never a lease
    /// request).
    pub ghosts: Sender<NodeGhosts>,
    /// Whether NATS answers (the cluster thread keeps it current): while
    /// it does not, node borders hold players like walls.
    pub up: AtomicBool,
}

impl ClusterView {
    /// The node owning a quadrant, `None` outside the grid.
    pub fn owner(&self, quadrant: [u16; 3]) -> Option<&NodeInfo> {
        self.nodes.get(self.owner_index(quadrant)?)
    }

    /// The index of the node owning a quadrant, `None` outside the grid.
    pub fn owner_index(&self, quadrant: [u16; 3]) -> Option<usize> {
        if (0..3).any(|a| quadrant[a] >= self.grid[a]) {
            return None;
        }
        let [gx, gy, _] = self.grid.map(usize::from);
        let [x, y, z] = quadrant.map(usize::from);
        let owner = usize::from(*self.owners.get(x + y * gx + z * gx * gy)?);
        (owner < self.nodes.len()).then_some(owner)
    }

    /// Whether NATS answers.
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    /// Records whether NATS answers (the cluster thread).
    pub fn set_up(&self, up: bool) {
        self.up.store(up, Ordering::Relaxed);
    }

    /// The foreign-quadrant table the shard holds players back at and
    /// publishes border ghosts with: per quadrant, the other node that
    /// simulates it (`None`: this node).
    pub fn foreign_table(&self) -> Vec<Option<u16>> {
        self.owners
            .iter()
            .map(|&o| (usize::from(o) != self.me).then_some(o))
            .collect()
    }

    /// This node's name.
    pub fn node_name(&self) -> &str {
        self.nodes.get(self.me).map_or("", |n| n.name.as_str())
    }

    /// Hands a ghost batch for another node to the cluster thread; gives
    /// the batch back when its queue is full or the thread is gone (the
    /// caller reuses the vector; the receiver's ghosts age out meanwhile).
    pub fn send_ghosts(&self, batch: NodeGhosts) -> Result<(), NodeGhosts> {
        self.ghosts.try_send(batch).map_err(|e| e.into_inner())
    }

    /// Sends a command; false when the cluster thread's queue is full or
    /// the thread is gone (the caller refuses what needed it).
    pub fn send(&self, command: ClusterCommand) -> bool {
        match self.commands.try_send(command) {
            Ok(()) => true,
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => false,
        }
    }
}

/// What a core asks of the cluster thread.
#[derive(Debug, Clone, PartialEq)]
pub enum ClusterOp {
    /// Take the lease of a character entering the world here (and list it
    /// as online here). Answered with [`ClusterAnswer::Lease`].
    Acquire {
        /// The character.
        character: u64,
        /// Its name (the online list is by name).
        name: String,
    },
    /// Give the lease of a character that left the world back. Nobody
    /// waits for the answer: a release that fails (NATS down) leaves the
    /// lease to expire.
    Release {
        /// The character.
        character: u64,
    },
    /// Hand a player who stepped onto node `to`'s ground over to it (the
    /// record is [`TransferRecord::encode`]d). Answered with
    /// [`ClusterAnswer::Crossing`]; until then the player is frozen here.
    HandOff {
        /// The receiving node's index.
        to: usize,
        /// The character (its lease moves).
        character: u64,
        /// The encoded record.
        payload: Vec<u8>,
    },
    /// Hand an NPC that walked onto node `to`'s ground over to it (the
    /// record is [`tos_shards::CarriedNpc::encode`]d), under a transit
    /// lease. Answered with [`ClusterAnswer::Crossing`]; until then the
    /// NPC exists only as the core's [`tos_shards::NodeDeparture`].
    HandOffNpc {
        /// The receiving node's index.
        to: usize,
        /// The encoded record.
        payload: Vec<u8>,
    },
    /// A skill's effect on an entity of node `to` (the caster saw it as a
    /// ghost across the border): sent there at most once, nobody answers;
    /// lost while NATS is down.
    Effect {
        /// The target's node.
        to: usize,
        /// The effect (its `to_core` is that node's peer id).
        effect: tos_shards::RemoteEffect,
    },
    /// What another node's effect did here, for the caster's node `to` to
    /// tell its player (at most once, nobody answers).
    CombatEcho {
        /// The caster's node.
        to: usize,
        /// The outcome.
        outcome: CombatOutcome,
    },
    /// A Connect carried a transfer ticket: take the arrival it names
    /// (once). Answered with [`ClusterAnswer::Arrival`].
    ClaimArrival {
        /// The ticket's secret.
        secret: TransferSecret,
    },
    /// A shout, or a say near a node border, for every other node's
    /// players (nobody answers; lost while NATS is down).
    Chat {
        /// The speaker's name.
        from: String,
        /// The text.
        text: String,
        /// Where a say was said, whole world units; `None`: a shout.
        near: Option<[i32; 3]>,
    },
    /// A whisper to a character that is not online on this node: the
    /// cluster thread finds its node in the directory and sends it there.
    /// Answered with [`ClusterAnswer::Whisper`].
    Whisper {
        /// The speaker's name.
        from: String,
        /// The recipient's name, as typed.
        to: String,
        /// The text.
        text: String,
    },
}

/// A command with the core's number for it and where the answer goes.
#[derive(Debug, Clone)]
pub struct ClusterCommand {
    /// The core's request number (comes back in the reply); 0 when no
    /// answer is wanted.
    pub request: u64,
    /// The sending core (its reply channel).
    pub core: u16,
    /// What to do.
    pub op: ClusterOp,
}

/// What a skill's effect did on another node: a `CombatEvent` for the
/// caster's player.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CombatOutcome {
    /// The caster's network id.
    pub source: u32,
    /// The target's network id.
    pub target: u32,
    /// The skill id.
    pub skill: u16,
    /// Damage or healing dealt.
    pub amount: f32,
    /// The combat flags' bits.
    pub flags: u8,
}

/// How a lease request ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseAnswer {
    /// This node holds the lease: the character may enter.
    Taken,
    /// Another node holds it: the character is live there.
    HeldBy(String),
    /// The directory cannot be reached (NATS down) or is overloaded: the
    /// lease cannot be taken, so the character does not enter.
    Unavailable,
}

/// How a cross-node whisper ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhisperAnswer {
    /// Sent to the recipient's node.
    Sent,
    /// Nobody of that name is online anywhere.
    NoSuchPlayer,
    /// The directory cannot be reached.
    Unavailable,
}

/// How a hand-off to another node ended, for the sending core.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CrossingOutcome {
    /// The other node holds the lease and waits for the client: send the
    /// client there and forget the player without saving it.
    Delivered,
    /// This node still holds the lease (the other node refused, did not
    /// answer, or NATS is down): the player stays, corrected back.
    Kept(String),
    /// A third node holds the lease now: stop the player unsaved.
    Superseded,
}

/// An answer to a core's request.
#[derive(Debug, Clone, PartialEq)]
pub enum ClusterAnswer {
    /// To [`ClusterOp::Acquire`].
    Lease(LeaseAnswer),
    /// To [`ClusterOp::Whisper`].
    Whisper(WhisperAnswer),
    /// To [`ClusterOp::HandOff`].
    Crossing(CrossingOutcome),
    /// To [`ClusterOp::ClaimArrival`]: the player to run, or `None` when
    /// no arrival has that ticket (unknown, used, expired).
    Arrival(Option<Box<TransferRecord>>),
}

/// What the cluster thread tells one core.
#[derive(Debug, Clone, PartialEq)]
pub enum ClusterReply {
    /// The answer to the core's request number `request`.
    Answer {
        /// The core's number.
        request: u64,
        /// The answer.
        answer: ClusterAnswer,
    },
    /// A whisper from another node for a character on this core.
    Whisper {
        /// The speaker's name.
        from: String,
        /// The recipient's character id.
        to: u64,
        /// The text.
        text: String,
    },
    /// The lease of a character on this core now belongs to another node
    /// (it expired during a NATS outage and the character entered there):
    /// stop running it here without saving it.
    LeaseLost {
        /// The character.
        character: u64,
    },
    /// A player was handed over to this node (its lease is ours now):
    /// save its state at the crossing at once, so a crash of this node
    /// before or after its client arrives loses nothing from before the
    /// crossing. The player itself waits in the cluster thread.
    Arrived(Box<TransferRecord>),
    /// Another node's shout, or say near the border (`near`: where, whole
    /// world units; `None`: a shout).
    Chat {
        /// The speaker's name.
        from: String,
        /// The text.
        text: String,
        /// Where a say was said.
        near: Option<[i32; 3]>,
    },
    /// Another node's ghosts near the border of this core's quadrants
    /// (`node`: the sender).
    Ghosts(NodeGhosts),
    /// Another node's skill effect on an entity of this node (every core
    /// gets it; the one that runs the target applies it).
    Effect {
        /// The effect.
        effect: tos_shards::RemoteEffect,
        /// The caster's node (its index), to tell what the effect did.
        from: Option<usize>,
    },
    /// What this node's effect did on another node (every core gets it;
    /// the one running the caster tells its player).
    Combat(CombatOutcome),
    /// An NPC handed over to this node (the transit lease is ours): run
    /// it. Sent to the core that owns its ground.
    NpcArrived(Box<tos_shards::CarriedNpc>),
    /// A player handed over to this node whose client never came (or
    /// whose connection failed before it entered): save it where it
    /// crossed and give its lease back, so the next login finds it.
    Unclaimed(Box<TransferRecord>),
}

/// A core's end of the cluster: the shared view and its reply channel.
#[derive(Debug, Clone)]
pub struct CoreCluster {
    /// What every core shares.
    pub view: std::sync::Arc<ClusterView>,
    /// Replies for this core.
    pub replies: Receiver<ClusterReply>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owners_and_the_foreign_table() {
        let (commands, _rx) = crossbeam_channel::bounded(1);
        let (ghosts, _ghosts_rx) = crossbeam_channel::bounded(1);
        let view = ClusterView {
            me: 1,
            nodes: vec![
                NodeInfo {
                    name: "west".into(),
                    address: "127.0.0.1:1".into(),
                    static_key: [1; 32],
                },
                NodeInfo {
                    name: "east".into(),
                    address: "127.0.0.1:2".into(),
                    static_key: [2; 32],
                },
            ],
            owners: vec![0, 1, 0, 1],
            grid: [2, 2, 1],
            commands,
            ghosts,
            up: AtomicBool::new(false),
        };
        assert_eq!(view.owner([0, 1, 0]).map(|n| n.name.as_str()), Some("west"));
        assert_eq!(view.owner([1, 1, 0]).map(|n| n.name.as_str()), Some("east"));
        assert_eq!(view.owner([2, 0, 0]), None);
        assert_eq!(view.owner_index([1, 0, 0]), Some(1));
        assert!(!view.is_up());
        view.set_up(true);
        assert!(view.is_up());
        assert_eq!(view.foreign_table(), vec![Some(0), None, Some(0), None]);
        assert_eq!(view.node_name(), "east");
        let op = ClusterOp::Release { character: 1 };
        let command = |request| ClusterCommand {
            request,
            core: 0,
            op: op.clone(),
        };
        assert!(view.send(command(1)));
        // Bounded: a full queue is a refusal, never a block.
        assert!(!view.send(command(2)));
    }
}
