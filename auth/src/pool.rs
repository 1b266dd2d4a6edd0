//! Worker threads that run Argon2id and ticket work off the core threads,
//! fed by a bounded queue that refuses work when full ("server busy").

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender, TrySendError};
use zeroize::Zeroizing;

use crate::password::{AuthError, DummyHash, PasswordParams, hash_password, verify_password};
use crate::ticket::{TicketClaims, TicketError, TicketSigner, TicketVerifier};

/// One piece of work, answered on `reply` with the same `request_id`.
#[derive(Debug)]
pub struct AuthJob {
    /// The caller's id for matching the reply.
    pub request_id: u64,
    /// Where the reply goes (a dropped receiver is not an error).
    pub reply: Sender<AuthReply>,
    /// What to do.
    pub kind: AuthJobKind,
}

/// The work an [`AuthJob`] asks for.
#[derive(Debug)]
pub enum AuthJobKind {
    /// Hash a new password (registration, password change) → PHC string.
    HashPassword {
        /// The password; zeroized after hashing.
        password: String,
    },
    /// Check a login's password → bool.
    VerifyPassword {
        /// The password; zeroized after checking.
        password: String,
        /// The stored hash; `None` for an unknown account, which is checked
        /// against the dummy hash (same cost) and always answers `false`.
        phc: Option<String>,
    },
    /// Verify a session or external ticket at `now` (unix seconds).
    VerifyTicket {
        /// The ticket bytes.
        ticket: Vec<u8>,
        /// Unix seconds.
        now: u64,
    },
    /// Issue a session ticket.
    IssueTicket {
        /// Our account id.
        account_id: u64,
        /// The account name.
        name: String,
        /// Unix seconds.
        now: u64,
        /// Seconds the ticket lives.
        lifetime: u64,
    },
}

/// The answer to one job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthReply {
    /// The job's `request_id`.
    pub request_id: u64,
    /// What came out.
    pub result: AuthResult,
}

/// The outcome of each kind of job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthResult {
    /// From `HashPassword`: the PHC string.
    Hashed(Result<String, AuthError>),
    /// From `VerifyPassword`: whether it matched.
    Verified(Result<bool, AuthError>),
    /// From `VerifyTicket`.
    Ticket(Result<TicketClaims, TicketError>),
    /// From `IssueTicket`: the ticket bytes.
    Issued(Result<Vec<u8>, TicketError>),
}

/// Counters of the pool, readable from any thread.
#[derive(Debug, Default)]
pub struct AuthStats {
    /// Jobs accepted into the queue.
    pub jobs: AtomicU64,
    /// Passwords hashed (HashPassword).
    pub hashes: AtomicU64,
    /// Passwords and tickets verified.
    pub verifies: AtomicU64,
    /// Jobs whose result was an error or `false` (wrong password, bad
    /// ticket, unknown account).
    pub failures: AtomicU64,
    /// Jobs refused because the queue was full.
    pub rejected: AtomicU64,
}

/// A snapshot of [`AuthStats`] plus the queue depth.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuthStatsSnapshot {
    /// Jobs accepted.
    pub jobs: u64,
    /// Passwords hashed.
    pub hashes: u64,
    /// Passwords and tickets verified.
    pub verifies: u64,
    /// Failed jobs.
    pub failures: u64,
    /// Jobs refused, queue full.
    pub rejected: u64,
    /// Jobs waiting now.
    pub queue_depth: usize,
}

/// Shared, read-only state of the workers.
#[derive(Debug)]
struct Shared {
    params: PasswordParams,
    dummy: Option<DummyHash>,
    signer: TicketSigner,
    verifier: TicketVerifier,
    stats: Arc<AuthStats>,
}

/// The auth worker pool.
///
/// Two queues: password jobs (an Argon2 hash each, tens of milliseconds)
/// and ticket jobs (an Ed25519 signature or verification, tens of
/// microseconds). Workers always take a waiting ticket job first, so a
/// reconnect, or the ticket that ends a login, never waits behind a storm
/// of password hashes (with one queue, a storm of 1,000 registrations
/// finished every login at once, at the end, behind the last hash).
#[derive(Debug)]
pub struct AuthPool {
    sender: Option<Sender<AuthJob>>,
    fast_sender: Option<Sender<AuthJob>>,
    receiver: Receiver<AuthJob>,
    fast_receiver: Receiver<AuthJob>,
    workers: Vec<JoinHandle<()>>,
    stats: Arc<AuthStats>,
}

/// Whether a job is a cheap ticket job (the fast lane).
fn is_fast(job: &AuthJob) -> bool {
    matches!(
        job.kind,
        AuthJobKind::VerifyTicket { .. } | AuthJobKind::IssueTicket { .. }
    )
}

/// A worker's loop: ticket jobs first, then password jobs; ends once both
/// queues are closed and drained.
fn work(shared: &Shared, fast: &Receiver<AuthJob>, slow: &Receiver<AuthJob>) {
    let (mut fast_open, mut slow_open) = (true, true);
    while fast_open || slow_open {
        if let Ok(job) = fast.try_recv() {
            run_job(shared, job);
            continue;
        }
        let mut select = crossbeam_channel::Select::new();
        let f = fast_open.then(|| select.recv(fast));
        let s = slow_open.then(|| select.recv(slow));
        let op = select.select();
        let index = op.index();
        let got = if Some(index) == f {
            op.recv(fast).inspect_err(|_| fast_open = false)
        } else if Some(index) == s {
            op.recv(slow).inspect_err(|_| slow_open = false)
        } else {
            break;
        };
        if let Ok(job) = got {
            run_job(shared, job);
        }
    }
}

impl AuthPool {
    /// Starts `threads` workers (at least 1) named `auth-0`, `auth-1`, ...
    /// with a queue of `queue_capacity` jobs (at least 1). Computes the
    /// dummy hash first (one hash's cost); if `params` are invalid it has
    /// none and `HashPassword` jobs answer `BadParams`.
    pub fn start(
        threads: usize,
        queue_capacity: usize,
        params: PasswordParams,
        signer: TicketSigner,
        verifier: TicketVerifier,
    ) -> std::io::Result<Self> {
        let (sender, receiver) = crossbeam_channel::bounded(queue_capacity.max(1));
        let (fast_sender, fast_receiver) = crossbeam_channel::bounded(queue_capacity.max(1));
        let stats = Arc::new(AuthStats::default());
        let shared = Arc::new(Shared {
            params,
            dummy: DummyHash::new(&params).ok(),
            signer,
            verifier,
            stats: Arc::clone(&stats),
        });
        let mut workers = Vec::new();
        for index in 0..threads.max(1) {
            let (slow, fast) = (receiver.clone(), fast_receiver.clone());
            let shared = Arc::clone(&shared);
            let handle = std::thread::Builder::new()
                .name(format!("auth-{index}"))
                .spawn(move || {
                    background_priority();
                    // Ends when every sender is gone and the queues are empty.
                    work(&shared, &fast, &slow);
                })?;
            workers.push(handle);
        }
        Ok(Self {
            sender: Some(sender),
            fast_sender: Some(fast_sender),
            receiver,
            fast_receiver,
            workers,
            stats,
        })
    }

    /// Queues `job`, or hands it back at once if the queue is full (the
    /// caller answers "server busy") or the pool is shut down.
    pub fn try_submit(&self, job: AuthJob) -> Result<(), AuthJob> {
        let lane = if is_fast(&job) {
            &self.fast_sender
        } else {
            &self.sender
        };
        let Some(sender) = lane else {
            return Err(job);
        };
        match sender.try_send(job) {
            Ok(()) => {
                self.stats.jobs.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            Err(TrySendError::Full(job) | TrySendError::Disconnected(job)) => {
                self.stats.rejected.fetch_add(1, Ordering::Relaxed);
                Err(job)
            }
        }
    }

    /// The pool's counters.
    pub fn stats(&self) -> AuthStatsSnapshot {
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        AuthStatsSnapshot {
            jobs: load(&self.stats.jobs),
            hashes: load(&self.stats.hashes),
            verifies: load(&self.stats.verifies),
            failures: load(&self.stats.failures),
            rejected: load(&self.stats.rejected),
            queue_depth: self.receiver.len() + self.fast_receiver.len(),
        }
    }

    /// Jobs waiting in the queue now.
    pub fn queue_depth(&self) -> usize {
        self.receiver.len() + self.fast_receiver.len()
    }

    /// Stops accepting jobs, lets the workers finish every queued job, and
    /// joins them.
    pub fn shutdown_and_join(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        // Dropping the only senders ends each worker's loop once the queues
        // are drained.
        self.sender = None;
        self.fast_sender = None;
        for worker in self.workers.drain(..) {
            // A worker that panicked has nothing left to clean up.
            let _ = worker.join();
        }
    }
}

impl Drop for AuthPool {
    fn drop(&mut self) {
        self.stop();
    }
}

fn run_job(shared: &Shared, job: AuthJob) {
    let stats = &shared.stats;
    let result = match job.kind {
        AuthJobKind::HashPassword { password } => {
            let password = Zeroizing::new(password);
            stats.hashes.fetch_add(1, Ordering::Relaxed);
            AuthResult::Hashed(hash_password(&shared.params, &password))
        }
        AuthJobKind::VerifyPassword { password, phc } => {
            let password = Zeroizing::new(password);
            stats.verifies.fetch_add(1, Ordering::Relaxed);
            match (phc, &shared.dummy) {
                (Some(phc), _) => AuthResult::Verified(verify_password(&password, &phc)),
                (None, Some(dummy)) => AuthResult::Verified(Ok(dummy.verify(&password))),
                (None, None) => AuthResult::Verified(Ok(false)),
            }
        }
        AuthJobKind::VerifyTicket { ticket, now } => {
            stats.verifies.fetch_add(1, Ordering::Relaxed);
            AuthResult::Ticket(shared.verifier.verify(&ticket, now))
        }
        AuthJobKind::IssueTicket {
            account_id,
            name,
            now,
            lifetime,
        } => AuthResult::Issued(
            shared
                .signer
                .issue_session(account_id, &name, now, lifetime),
        ),
    };
    let failed = matches!(
        result,
        AuthResult::Hashed(Err(_))
            | AuthResult::Verified(Err(_) | Ok(false))
            | AuthResult::Ticket(Err(_))
            | AuthResult::Issued(Err(_))
    );
    if failed {
        stats.failures.fetch_add(1, Ordering::Relaxed);
    }
    // The requester may have gone away (client disconnected); nothing to do.
    let _ = job.reply.send(AuthReply {
        request_id: job.request_id,
        result,
    });
}

/// The niceness auth workers run at: hashing is background work that
/// must yield the CPU to a world core's tick whenever both want it (on a
/// host where they share CPUs, a login storm would otherwise stretch
/// ticks). The workers still use every idle cycle.
pub(crate) const WORKER_NICENESS: i32 = 5;

/// Lowers the calling thread's scheduling priority (Linux: niceness is
/// per thread). Failure only costs tick smoothness under a storm: logged.
fn background_priority() {
    // SAFETY: gettid has no preconditions; setpriority on our own thread
    // id changes only this thread's niceness.
    let rc = unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        libc::setpriority(libc::PRIO_PROCESS, tid, WORKER_NICENESS)
    };
    if rc != 0 {
        tracing::warn!(
            error = %std::io::Error::last_os_error(),
            "an auth worker could not lower its priority"
        );
    }
}
