//! Small helpers that turn a failed rule into a [`ConfigError::Invalid`].

use std::fmt::Display;

use crate::ConfigError;

/// Validation context: the origin every error names.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Checker<'a> {
    origin: &'a str,
}

impl<'a> Checker<'a> {
    pub(crate) fn new(origin: &'a str) -> Self {
        Self { origin }
    }

    /// The error for `field` holding `found` when only `allowed` is accepted.
    pub(crate) fn invalid(
        &self,
        field: impl Into<String>,
        allowed: impl Into<String>,
        found: impl Display,
    ) -> ConfigError {
        ConfigError::Invalid {
            origin: self.origin.to_owned(),
            field: field.into(),
            allowed: allowed.into(),
            found: found.to_string(),
        }
    }

    /// Fails with [`Checker::invalid`] unless `ok`.
    pub(crate) fn require(
        &self,
        ok: bool,
        field: impl Into<String>,
        allowed: impl Into<String>,
        found: impl Display,
    ) -> Result<(), ConfigError> {
        if ok {
            Ok(())
        } else {
            Err(self.invalid(field, allowed, found))
        }
    }

    /// `value` must lie in `low..=high`.
    pub(crate) fn in_range<T: PartialOrd + Display>(
        &self,
        field: &str,
        value: T,
        low: T,
        high: T,
    ) -> Result<(), ConfigError> {
        let allowed = format!("{low}..={high}");
        self.require(low <= value && value <= high, field, allowed, value)
    }

    /// `value` must be at least `low`.
    pub(crate) fn at_least<T: PartialOrd + Display>(
        &self,
        field: &str,
        value: T,
        low: T,
    ) -> Result<(), ConfigError> {
        self.require(value >= low, field, format!("at least {low}"), value)
    }

    /// `value` must be finite and above zero (NaN and infinities fail).
    pub(crate) fn positive(&self, field: &str, value: f64) -> Result<(), ConfigError> {
        self.require(
            value.is_finite() && value > 0.0,
            field,
            "a finite number above 0",
            value,
        )
    }

    /// `value` must be a fraction in `(0, 1]` (NaN fails).
    pub(crate) fn fraction(&self, field: &str, value: f64) -> Result<(), ConfigError> {
        self.require(
            value > 0.0 && value <= 1.0,
            field,
            "above 0 and at most 1.0",
            value,
        )
    }

    /// `value` must be a socket address such as `0.0.0.0:3565` or `[::]:3565`.
    pub(crate) fn socket_addr(&self, field: &str, value: &str) -> Result<(), ConfigError> {
        self.require(
            value.parse::<std::net::SocketAddr>().is_ok(),
            field,
            "an IP address and port, such as \"0.0.0.0:3565\" or \"[::]:3565\"",
            format_args!("{value:?}"),
        )
    }

    /// An optional file path, when present, must not be empty.
    pub(crate) fn optional_path(
        &self,
        field: &str,
        value: Option<&str>,
    ) -> Result<(), ConfigError> {
        match value {
            Some(path) => self.require(
                !path.trim().is_empty(),
                field,
                "None, or Some(\"path\") with a non-empty path",
                format_args!("Some({path:?})"),
            ),
            None => Ok(()),
        }
    }
}
