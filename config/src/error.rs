//! Why a settings or layout file could not be used.

use std::fmt;
use std::path::PathBuf;

/// Why a settings or layout file could not be used.
///
/// Every variant names where the text came from, so that a log line tells
/// the operator which file to open: `origin` is the file's path when loaded
/// with `load`, or the name given to `from_ron_str`.
#[derive(Debug)]
pub enum ConfigError {
    /// The file could not be read: missing, unreadable, or not UTF-8.
    Io {
        /// The file that was asked for.
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// The text is not RON for this type: a syntax error, an unknown field
    /// or variant (named in `message`), or a value of the wrong type.
    Parse {
        /// The file path, or the name given to `from_ron_str`.
        origin: String,
        /// 1-based line where the parser stopped.
        line: usize,
        /// 1-based column where the parser stopped.
        column: usize,
        /// What the parser expected, and for unknown fields which field.
        message: String,
    },
    /// The text parsed, but a value is outside what the server accepts.
    Invalid {
        /// The file path, or the name given to `from_ron_str`.
        origin: String,
        /// Dotted path of the field, as written in the file, for example
        /// `protocol.heartbeat_timeout_ms` or `world.steps_per_metre[2]`.
        field: String,
        /// What the field accepts, for example `576..=1472`.
        allowed: String,
        /// The value that was found.
        found: String,
    },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Io { path, source } => write!(f, "cannot read {}: {source}", path.display()),
            Self::Parse {
                origin,
                line,
                column,
                message,
            } => write!(f, "{origin}:{line}:{column}: {message}"),
            Self::Invalid {
                origin,
                field,
                allowed,
                found,
            } => write!(
                f,
                "{origin}: invalid `{field}`: found {found}, allowed: {allowed}"
            ),
        }
    }
}

impl std::error::Error for ConfigError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Io { source, .. } => Some(source),
            Self::Parse { .. } | Self::Invalid { .. } => None,
        }
    }
}
