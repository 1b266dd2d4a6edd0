//! Turns the operator's [`ServerConfig`] into the protocol's settings and
//! loads (or generates) the server's secrets.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand_core::{OsRng, RngCore};
use tos_config::ServerConfig;
use tos_protocol::connection::TransportConfig;
use tos_protocol::endpoint::{Admission, EndpointConfig};
use tos_protocol::integrity::IntegrityTable;

/// The client build version whose integrity table the server challenges.
pub const CLIENT_VERSION: u16 = 1;

/// Secrets shared by every core of one server process.
#[derive(Clone)]
pub struct Secrets {
    /// The long-term X25519 secret; clients pin its public key.
    pub static_secret: [u8; 32],
    /// Master secret of the cookie keys.
    pub cookie_secret: [u8; 32],
    /// Secret the integrity tables are generated from.
    pub integrity_secret: [u8; 32],
}

impl core::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("Secrets(..)")
    }
}

/// Why a secret could not be loaded.
#[derive(Debug)]
pub enum SecretError {
    /// The file could not be read.
    Io {
        /// Which file.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file is neither 32 raw bytes nor 64 hex digits.
    Format {
        /// Which file.
        path: String,
    },
}

impl core::fmt::Display for SecretError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Io { path, source } => write!(f, "cannot read secret file {path}: {source}"),
            Self::Format { path } => write!(
                f,
                "secret file {path} must hold 32 raw bytes or 64 hex digits"
            ),
        }
    }
}

impl std::error::Error for SecretError {}

fn load_or_generate(path: Option<&str>) -> Result<[u8; 32], SecretError> {
    let Some(path) = path else {
        let mut s = [0u8; 32];
        OsRng.fill_bytes(&mut s);
        return Ok(s);
    };
    let bytes = std::fs::read(Path::new(path)).map_err(|source| SecretError::Io {
        path: path.to_string(),
        source,
    })?;
    if bytes.len() == 32 {
        let mut s = [0u8; 32];
        s.copy_from_slice(&bytes);
        return Ok(s);
    }
    let text = String::from_utf8_lossy(&bytes);
    let hex: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    if hex.len() != 64 {
        return Err(SecretError::Format {
            path: path.to_string(),
        });
    }
    let mut s = [0u8; 32];
    for (i, b) in s.iter_mut().enumerate() {
        *b = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).map_err(|_| SecretError::Format {
            path: path.to_string(),
        })?;
    }
    Ok(s)
}

/// The server's static key in the data directory.
pub const STATIC_KEY_FILE: &str = "server_static.key";
/// The integrity secret in the data directory.
pub const INTEGRITY_SECRET_FILE: &str = "integrity.secret";

/// Reads a 32-byte secret from `path` in the data directory, creating it
/// (random, mode 0600) on first start so that it survives restarts. Two
/// processes (or two servers of one test process) starting at once on the
/// same directory agree on one secret: the file appears whole or not at
/// all (written aside, then hard-linked into place, which fails if another
/// got there first), and the loser reads the winner's.
pub fn load_or_create(path: &Path) -> Result<[u8; 32], SecretError> {
    let name = path.display().to_string();
    match load_or_generate(Some(&name)) {
        Ok(s) => Ok(s),
        Err(SecretError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            let mut s = [0u8; 32];
            OsRng.fill_bytes(&mut s);
            let hex: String = s.iter().map(|b| format!("{b:02x}")).collect();
            match create_whole(path, format!("{hex}\n").as_bytes()) {
                Ok(()) => Ok(s),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    load_or_generate(Some(&name))
                }
                Err(source) => Err(SecretError::Io { path: name, source }),
            }
        }
        Err(e) => Err(e),
    }
}

/// Creates `path` with `bytes`, readable by its owner only, atomically:
/// `AlreadyExists` if it is there already.
fn create_whole(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut nonce = [0u8; 8];
    OsRng.fill_bytes(&mut nonce);
    let aside = path.with_extension(format!(
        "new-{}-{:016x}",
        std::process::id(),
        u64::from_le_bytes(nonce)
    ));
    let result = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&aside)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::hard_link(&aside, path)
    })();
    let _ = std::fs::remove_file(&aside);
    result
}

impl Secrets {
    /// Loads the secrets. The static key and the integrity secret come from
    /// the configured files, or else from `data_dir` (created there on
    /// first start and reused afterwards, so clients can pin the key); the
    /// cookie secret is configured or random (cookies live seconds).
    pub fn load(config: &ServerConfig, data_dir: &Path) -> Result<Self, SecretError> {
        let in_dir = |configured: Option<&str>, file: &str| match configured {
            Some(path) => load_or_generate(Some(path)),
            None => {
                std::fs::create_dir_all(data_dir).map_err(|source| SecretError::Io {
                    path: data_dir.display().to_string(),
                    source,
                })?;
                load_or_create(&data_dir.join(file))
            }
        };
        let static_secret = in_dir(
            config.security.server_static_key_file.as_deref(),
            STATIC_KEY_FILE,
        )?;
        let integrity_secret = in_dir(
            config.security.integrity_secret_file.as_deref(),
            INTEGRITY_SECRET_FILE,
        )?;
        Ok(Self {
            static_secret,
            cookie_secret: load_or_generate(config.security.cookie_secret_file.as_deref())?,
            integrity_secret,
        })
    }
}

/// The transport settings a config describes.
pub fn transport_config(config: &ServerConfig) -> TransportConfig {
    let p = &config.protocol;
    let ms = |v: u32| Duration::from_millis(u64::from(v));
    TransportConfig {
        mtu: usize::from(config.network.mtu),
        heartbeat_interval: ms(p.heartbeat_interval_ms),
        idle_timeout: ms(p.heartbeat_timeout_ms),
        rto_min: ms(p.reliable_rto_min_ms),
        max_retries: p.reliable_max_retries,
        max_message_bytes: p.max_message_bytes as usize,
        max_reassemblies: p.max_reassemblies_per_connection as usize,
        fragment_timeout: ms(p.fragment_timeout_ms),
        send_queue_messages: p.send_queue_messages as usize,
        compression_threshold: p.compression_threshold_bytes as usize,
        rekey_after_bytes: p.rekey_after_bytes,
        rekey_after: Duration::from_secs(u64::from(p.rekey_after_secs)),
        rekey_grace: ms(p.rekey_grace_ms),
        integrity_interval: config
            .security
            .integrity_check
            .then(|| Duration::from_secs(u64::from(config.security.integrity_interval_secs))),
        ..TransportConfig::default()
    }
}

/// The process-wide admission limits a config describes (one for all
/// cores: the runtime shares it).
pub fn admission(config: &ServerConfig) -> Arc<Admission> {
    let p = &config.protocol;
    let max = match p.max_connections_per_process {
        0 => usize::MAX,
        n => n as usize,
    };
    let exempt = p
        .admission_exempt_addresses
        .iter()
        .filter_map(|a| a.parse().ok())
        .collect();
    Arc::new(Admission::new(max, p.max_connections_per_address).with_exempt(exempt))
}

/// The endpoint settings of core `core_id` (with an admission of its own:
/// the runtime replaces it with the one all cores share).
pub fn endpoint_config(
    config: &ServerConfig,
    secrets: &Secrets,
    core_id: u8,
    epoch: Instant,
    transport: Arc<TransportConfig>,
) -> EndpointConfig {
    let mut seed = [0u8; 32];
    OsRng.fill_bytes(&mut seed);
    let mut e = EndpointConfig::new(secrets.static_secret, secrets.cookie_secret, epoch, seed);
    e.transport = transport;
    e.core_id = core_id;
    e.cookie_ttl = Duration::from_millis(u64::from(config.protocol.cookie_ttl_ms));
    e.cookie_rotation = Duration::from_millis(u64::from(config.protocol.cookie_rotation_ms));
    e.max_connections = config.protocol.max_connections_per_core as usize;
    e.handshake_rate = config.protocol.handshakes_per_sec_per_address;
    e.handshake_burst = config.protocol.handshake_burst_per_address;
    e.admission = admission(config);
    e.allow_unpinned = !config.security.require_pinned_server_key;
    e.integrity = config.security.integrity_check.then(|| {
        Arc::new(IntegrityTable::generate(
            &secrets.integrity_secret,
            CLIENT_VERSION,
        ))
    });
    e.tick_hz = config.runtime.tick_hz.min(u32::from(u16::MAX)) as u16;
    e
}

#[cfg(test)]
mod secret_file_tests {
    use super::load_or_create;

    #[test]
    fn servers_starting_at_once_agree_on_one_secret() {
        let dir = std::env::temp_dir().join(format!("tos-secret-race-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("server_static.key");
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let p = path.clone();
                std::thread::spawn(move || load_or_create(&p).expect("loads or creates"))
            })
            .collect();
        let secrets: Vec<[u8; 32]> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        assert!(
            secrets.iter().all(|s| *s == secrets[0]),
            "one secret for all"
        );
        // And the next start reads the same one back.
        assert_eq!(load_or_create(&path).unwrap(), secrets[0]);
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(&path).unwrap().permissions(),
        );
        assert_eq!(mode & 0o777, 0o600);
        // Nothing is left aside.
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
