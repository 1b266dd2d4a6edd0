//! The `security` section: encryption, integrity checks and key files.

use serde::{Deserialize, Serialize};

use crate::ConfigError;
use crate::check::Checker;

/// Encryption, integrity checks, the packet filter and secret files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SecurityConfig {
    /// Encrypt and authenticate every packet after the handshake
    /// (ChaCha20-Poly1305). Turn off only on a closed test network.
    /// Ask clients for periodic integrity proofs and drop those that fail.
    pub integrity_check: bool,
    /// Seconds between two integrity challenges to one client.
    pub integrity_interval_secs: u32,
    /// Drop malformed, oversized or flooding traffic before it reaches the
    /// protocol state machines (the seeds' "WAF").
    /// Accept only handshakes that mix in the server's long-term X25519 key
    /// (the key clients pin); `false` also accepts ephemeral-only
    /// handshakes, which a man in the middle can intercept.
    pub require_pinned_server_key: bool,
    /// File holding the server's 32-byte X25519 private key. `None`
    /// generates a key at start and logs its public half; clients pinning
    /// the key then need updating on every restart.
    pub server_static_key_file: Option<String>,
    /// File holding the secret that signs address cookies. `None` generates
    /// one at start; share a file so that every process behind one address
    /// accepts each other's cookies.
    pub cookie_secret_file: Option<String>,
    /// File holding the secret behind integrity challenges. `None`
    /// generates one at start.
    pub integrity_secret_file: Option<String>,
}

impl Default for SecurityConfig {
    fn default() -> Self {
        Self {
            integrity_check: true,
            integrity_interval_secs: 300,
            require_pinned_server_key: true,
            server_static_key_file: None,
            cookie_secret_file: None,
            integrity_secret_file: None,
        }
    }
}

impl SecurityConfig {
    pub(crate) fn validate(&self, check: &Checker<'_>) -> Result<(), ConfigError> {
        check.at_least(
            "security.integrity_interval_secs",
            self.integrity_interval_secs,
            1,
        )?;
        check.optional_path(
            "security.server_static_key_file",
            self.server_static_key_file.as_deref(),
        )?;
        check.optional_path(
            "security.cookie_secret_file",
            self.cookie_secret_file.as_deref(),
        )?;
        check.optional_path(
            "security.integrity_secret_file",
            self.integrity_secret_file.as_deref(),
        )?;
        Ok(())
    }
}
