//! Starting and stopping the game layer's shared services from the server
//! config: the data directory, the ticket signing key, the game data, the
//! store (with its migrations) and the auth workers. All of it runs before
//! the cores start and on the calling thread or the services' own threads.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tos_auth::{
    AuthPool, PasswordParams, TicketSigner, TicketVerifier, load_or_create_signing_key,
    parse_public_keys_hex,
};
use tos_config::{GameData, ServerConfig, StoreBackend};
use tos_store::{Store, StoreHandle, StoreSettings};

use crate::counters::GameCounters;
use crate::registry::OnlineRegistry;
use crate::services::{GameSettings, LoginLimits, Services};

/// The ticket signing key in the data directory.
pub const TICKET_KEY_FILE: &str = "ticket_signing.key";

/// Why the game layer could not start.
#[derive(Debug)]
pub enum BootError {
    /// The data directory could not be created.
    DataDir {
        /// Which.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A key file could not be loaded or created.
    Key(String),
    /// The game data files are invalid.
    GameData(String),
    /// The database could not be opened or migrated.
    Store(String),
    /// A thread could not be started.
    Thread(std::io::Error),
}

impl core::fmt::Display for BootError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::DataDir { path, source } => {
                write!(
                    f,
                    "cannot create the data directory {}: {source}",
                    path.display()
                )
            }
            Self::Key(e) => write!(f, "ticket signing key: {e}"),
            Self::GameData(e) => write!(f, "game data: {e}"),
            Self::Store(e) => write!(f, "store: {e}"),
            Self::Thread(e) => write!(f, "cannot start a game-layer thread: {e}"),
        }
    }
}

impl std::error::Error for BootError {}

/// The running services; [`Boot::stop`] flushes the store and joins the
/// threads (dropping it does the same).
#[derive(Debug)]
pub struct Boot {
    /// What the cores share.
    pub services: Services,
    /// The public half of the ticket signing key (hex in the log).
    pub ticket_public_key: [u8; 32],
    /// Where the database lives (for the log).
    pub database: String,
    store: Option<StoreHandle>,
}

/// Loads the game data: `config.runtime.game_data_dir` when set, otherwise the
/// data files embedded in the binary (`config/data/`).
pub fn load_game_data(config: &ServerConfig) -> Result<GameData, BootError> {
    match &config.runtime.game_data_dir {
        Some(dir) => GameData::load(Path::new(dir)),
        None => GameData::embedded(),
    }
    .map_err(|e| BootError::GameData(e.to_string()))
}

/// Starts the store, the auth workers and the rest from `config`, with
/// `data_dir` holding the SQLite file and the ticket signing key.
pub fn start(config: &ServerConfig, data_dir: &Path) -> Result<Boot, BootError> {
    std::fs::create_dir_all(data_dir).map_err(|source| BootError::DataDir {
        path: data_dir.to_path_buf(),
        source,
    })?;
    let data = Arc::new(load_game_data(config)?);

    let a = &config.accounts;
    let key_path = a
        .ticket_key_file
        .as_ref()
        .map_or_else(|| data_dir.join(TICKET_KEY_FILE), PathBuf::from);
    let signing =
        load_or_create_signing_key(&key_path).map_err(|e| BootError::Key(e.to_string()))?;
    let signer = TicketSigner::new(signing);
    let ticket_public_key = signer.verifying_key().to_bytes();
    let mut verifier = TicketVerifier::new();
    verifier.trust_session_key(signer.verifying_key());
    for key in
        parse_public_keys_hex(&a.external_ticket_keys).map_err(|e| BootError::Key(e.to_string()))?
    {
        verifier.trust_external_key(key);
    }
    let params = PasswordParams {
        m_cost_kib: a.argon2_m_cost_kib,
        t_cost: a.argon2_t_cost,
        p_cost: a.argon2_p_cost,
    };
    let auth = AuthPool::start(
        a.auth_workers as usize,
        a.auth_queue as usize,
        params,
        signer,
        verifier,
    )
    .map_err(BootError::Thread)?;

    let s = &config.store;
    let database = match s.backend {
        StoreBackend::Sqlite => format!("sqlite:{}", data_dir.join(&s.sqlite_file).display()),
        StoreBackend::Postgres => redact(s.postgres_url.as_deref().unwrap_or_default()),
    };
    // Opening and migrating block: done here, before any core runs.
    let backend = tos_store::open_backend(s, data_dir)
        .map_err(|e| BootError::Store(format!("{database}: {e}")))?;
    let store: StoreHandle = Store::start(StoreSettings::from(s), backend)
        .map_err(|e| BootError::Store(e.to_string()))?;

    let settings = GameSettings {
        allow_register: a.allow_register,
        max_characters: u8::try_from(a.max_characters).unwrap_or(u8::MAX),
        delete_restore_secs: a.delete_restore_secs,
        ticket_lifetime_secs: a.session_ticket_lifetime_secs,
        save_interval_ms: s.save_interval_ms,
        password_min: a.min_password_len as usize,
        password_max: a.max_password_len as usize,
    };
    let items = crate::inventory::ItemBook::from_data(&data.combat)
        .map_err(|e| BootError::GameData(format!("items.ron: {e}")))?;
    let services = Services {
        store: store.client(),
        auth: Arc::new(auth),
        data,
        items: Arc::new(items),
        registry: Arc::new(OnlineRegistry::new()),
        limits: Arc::new(LoginLimits::new(
            a.login_attempts_per_minute_per_account,
            a.login_attempts_per_minute_per_address,
            a.rate_limit_max_keys as usize,
        )),
        settings: Arc::new(settings),
        counters: Arc::new(GameCounters::default()),
    };
    tracing::info!(
        database = %database,
        ticket_key = %hex(&ticket_public_key),
        file = %key_path.display(),
        "game layer ready (session tickets are signed with this Ed25519 key)"
    );
    Ok(Boot {
        services,
        ticket_public_key,
        database,
        store: Some(store),
    })
}

/// A database URL without its password, for logs.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.find(':') {
                Some(c) => format!("{}{}:***{}", &url[..s + 3], &creds[..c], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Boot {
    /// Writes the game layer's, the store's and the auth workers' metrics.
    pub fn metrics(&self) -> Arc<dyn Fn(&mut String) + Send + Sync> {
        let counters = Arc::clone(&self.services.counters);
        let store = Arc::clone(self.services.store.metrics());
        let auth = Arc::clone(&self.services.auth);
        let registry = Arc::clone(&self.services.registry);
        Arc::new(move |out: &mut String| {
            use std::fmt::Write as _;
            counters.render_prometheus(out);
            store.render_prometheus(out);
            let a = auth.stats();
            let _ = writeln!(out, "tos_auth_jobs_total {}", a.jobs);
            let _ = writeln!(out, "tos_auth_failures_total {}", a.failures);
            let _ = writeln!(out, "tos_auth_queue_depth {}", a.queue_depth);
            let _ = writeln!(out, "tos_game_online {}", registry.len());
        })
    }

    /// Flushes every pending save to the database, then stops the store
    /// and the auth workers. Call after the cores have stopped (their last
    /// saves are then in the store's queue).
    pub fn stop(mut self) {
        self.stop_inner();
    }

    fn stop_inner(&mut self) {
        let Some(store) = self.store.take() else {
            return;
        };
        // Writes everything pending (retrying for a while if the database
        // is failing) before the thread ends.
        store.shutdown_and_join();
        tracing::info!(database = %self.database, "store flushed and stopped");
        // The auth workers end by themselves once the last handle to the
        // pool (the cores', the metrics endpoint's, this one) is dropped.
    }
}

impl Drop for Boot {
    fn drop(&mut self) {
        self.stop_inner();
    }
}
