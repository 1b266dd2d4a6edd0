//! Argon2id password hashing (PHC strings) and a dummy hash so that an
//! unknown account costs the same time as a wrong password.

use std::fmt;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use rand_core::{OsRng, RngCore};

/// Argon2id cost parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PasswordParams {
    /// Memory per hash, in KiB (OWASP: 19456 = 19 MiB).
    pub m_cost_kib: u32,
    /// Passes over that memory (OWASP: 2).
    pub t_cost: u32,
    /// Lanes (OWASP: 1). More lanes do not use more threads here.
    pub p_cost: u32,
}

impl Default for PasswordParams {
    /// OWASP's recommended Argon2id minimum: m = 19 MiB, t = 2, p = 1.
    fn default() -> Self {
        Self {
            m_cost_kib: 19_456,
            t_cost: 2,
            p_cost: 1,
        }
    }
}

impl PasswordParams {
    /// The argon2 crate's parameter object; fails for values it refuses
    /// (for example `m_cost_kib < 8 * p_cost`, or `t_cost == 0`).
    pub fn to_argon2(self) -> Result<Argon2<'static>, AuthError> {
        let params = Params::new(self.m_cost_kib, self.t_cost, self.p_cost, None)
            .map_err(|error| AuthError::BadParams(error.to_string()))?;
        Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
    }
}

/// Why hashing or verifying failed (never "wrong password": that is `Ok(false)`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthError {
    /// The cost parameters are not accepted by Argon2.
    BadParams(String),
    /// The stored hash is not a PHC string this crate can verify.
    BadHash(String),
    /// Hashing failed (for example a password longer than Argon2 allows).
    Hash(String),
}

impl fmt::Display for AuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadParams(why) => write!(f, "bad Argon2 parameters: {why}"),
            Self::BadHash(why) => write!(f, "stored password hash unusable: {why}"),
            Self::Hash(why) => write!(f, "password hashing failed: {why}"),
        }
    }
}

impl std::error::Error for AuthError {}

/// Hashes `password` with Argon2id under `params` and a random 16-byte
/// salt, returning the PHC string (`$argon2id$v=19$m=...,t=...,p=...$salt$hash`).
pub fn hash_password(params: &PasswordParams, password: &str) -> Result<String, AuthError> {
    let argon2 = params.to_argon2()?;
    let mut salt = [0u8; 16];
    OsRng.fill_bytes(&mut salt);
    let salt = SaltString::encode_b64(&salt).map_err(|error| AuthError::Hash(error.to_string()))?;
    argon2
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|error| AuthError::Hash(error.to_string()))
}

/// Checks `password` against a stored PHC string, with the parameters the
/// string names (so hashes made under older parameters still verify). The
/// comparison is constant-time (the argon2 crate's `Output` equality).
/// `Ok(false)` for a wrong password; `Err` only for an unusable hash.
pub fn verify_password(password: &str, phc: &str) -> Result<bool, AuthError> {
    let hash = PasswordHash::new(phc).map_err(|error| AuthError::BadHash(error.to_string()))?;
    // Refuse anything but Argon2id: a stored hash of a weaker algorithm (or
    // a planted one with tiny costs) must not be silently accepted.
    if hash.algorithm != Algorithm::Argon2id.ident() {
        return Err(AuthError::BadHash(format!(
            "algorithm {} is not argon2id",
            hash.algorithm
        )));
    }
    match Argon2::default().verify_password(password.as_bytes(), &hash) {
        Ok(()) => Ok(true),
        Err(argon2::password_hash::Error::Password) => Ok(false),
        Err(error) => Err(AuthError::BadHash(error.to_string())),
    }
}

/// Whether a stored hash was made with parameters other than `params` (the
/// game layer may rehash on the next successful login).
pub fn needs_rehash(params: &PasswordParams, phc: &str) -> bool {
    let Ok(hash) = PasswordHash::new(phc) else {
        return true;
    };
    let Ok(stored) = Params::try_from(&hash) else {
        return true;
    };
    hash.algorithm != Algorithm::Argon2id.ident()
        || stored.m_cost() != params.m_cost_kib
        || stored.t_cost() != params.t_cost
        || stored.p_cost() != params.p_cost
}

/// A hash of a random password under the server's parameters. Verifying a
/// login for an account that does not exist against it costs the same as a
/// wrong password, so response time does not reveal which names exist.
#[derive(Debug, Clone)]
pub struct DummyHash {
    phc: String,
}

impl DummyHash {
    /// Hashes a random, discarded password under `params` (one hash's cost,
    /// paid once at start).
    pub fn new(params: &PasswordParams) -> Result<Self, AuthError> {
        let mut secret = [0u8; 24];
        OsRng.fill_bytes(&mut secret);
        let password = to_hex32(&secret);
        Ok(Self {
            phc: hash_password(params, &password)?,
        })
    }

    /// Verifies `password` against the dummy hash (full cost) and returns
    /// `false` whatever the outcome.
    pub fn verify(&self, password: &str) -> bool {
        // The result is discarded on purpose: only the time spent matters.
        let _ = verify_password(password, &self.phc);
        false
    }
}

fn to_hex32(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Cheap parameters so the suite stays fast; the defaults are only
    /// checked for validity.
    const CHEAP: PasswordParams = PasswordParams {
        m_cost_kib: 64,
        t_cost: 1,
        p_cost: 1,
    };

    #[test]
    fn defaults_are_owasp_and_valid() {
        let params = PasswordParams::default();
        assert_eq!(
            (params.m_cost_kib, params.t_cost, params.p_cost),
            (19_456, 2, 1)
        );
        assert!(params.to_argon2().is_ok());
    }

    #[test]
    fn round_trip_and_wrong_password() {
        let phc = hash_password(&CHEAP, "correct horse").unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=64,t=1,p=1$"), "{phc}");
        assert!(verify_password("correct horse", &phc).unwrap());
        assert!(!verify_password("correct horsf", &phc).unwrap());
        assert!(!verify_password("", &phc).unwrap());
        // Random salts: the same password hashes differently.
        assert_ne!(phc, hash_password(&CHEAP, "correct horse").unwrap());
        assert!(!needs_rehash(&CHEAP, &phc));
        assert!(needs_rehash(&PasswordParams::default(), &phc));
    }

    #[test]
    fn bad_hashes_and_params_are_errors() {
        assert!(matches!(
            verify_password("x", "nonsense"),
            Err(AuthError::BadHash(_))
        ));
        let argon2i = "$argon2i$v=19$m=64,t=1,p=1$c29tZXNhbHQ$aGFzaGhhc2hoYXNoaGFzaA";
        assert!(matches!(
            verify_password("x", argon2i),
            Err(AuthError::BadHash(_))
        ));
        let bad = PasswordParams { t_cost: 0, ..CHEAP };
        assert!(matches!(
            hash_password(&bad, "x"),
            Err(AuthError::BadParams(_))
        ));
    }

    #[test]
    fn dummy_hash_is_always_false() {
        let dummy = DummyHash::new(&CHEAP).unwrap();
        assert!(!dummy.verify("anything"));
        assert!(!dummy.verify(""));
    }
}
