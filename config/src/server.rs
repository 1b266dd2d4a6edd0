//! The server settings file as a whole: loading, parsing and validation.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::check::Checker;
use crate::parse::{from_ron, read_file};
use crate::{
    AccountsConfig, AoiConfig, AuthorityConfig, ConfigError, NetworkConfig, ProtocolConfig,
    RuntimeConfig, SecurityConfig, StoreConfig, SyncConfig, WorldConfig,
};

/// Everything in `server.ron`. Each section may be left out, and so may each
/// field inside a section: missing values take their defaults, and unknown
/// names are errors, so a typo is caught rather than silently ignored.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Sockets, datagram size, I/O backend and steering.
    pub network: NetworkConfig,
    /// Cores, tick rate, stats and shutdown.
    pub runtime: RuntimeConfig,
    /// Timers and limits of the UDP protocol.
    pub protocol: ProtocolConfig,
    /// Encryption, integrity checks and secret files.
    pub security: SecurityConfig,
    /// Area-of-interest grid and interest distances.
    pub aoi: AoiConfig,
    /// Adaptive sync rates and the per-client snapshot budget.
    pub sync: SyncConfig,
    /// World size, quantization and the quadrant grid.
    pub world: WorldConfig,
    /// Limits on movement claims.
    pub authority: AuthorityConfig,
    /// The database and the store threads' write-behind.
    pub store: StoreConfig,
    /// Passwords, tickets, registration, character slots, login limits.
    pub accounts: AccountsConfig,
}

impl ServerConfig {
    /// Reads, parses and validates the settings file at `path`; errors name
    /// the path.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = read_file(path)?;
        Self::from_ron_str(&text, &path.display().to_string())
    }

    /// Parses and validates settings from RON text; errors name `origin`
    /// (a file name, or something like `"--config-text"`).
    pub fn from_ron_str(text: &str, origin: &str) -> Result<Self, ConfigError> {
        let config: Self = from_ron(text, origin)?;
        config.validate(origin)?;
        Ok(config)
    }

    /// Checks every value against what the server accepts, section by
    /// section in file order, and returns the first violation, naming
    /// `origin` and the field.
    pub fn validate(&self, origin: &str) -> Result<(), ConfigError> {
        let check = Checker::new(origin);
        self.network.validate(&check)?;
        self.runtime.validate(&check)?;
        self.protocol.validate(&check)?;
        self.security.validate(&check)?;
        self.aoi.validate(&check)?;
        self.sync.validate(&check, self.network.mtu)?;
        self.world.validate(&check)?;
        self.authority.validate(&check)?;
        self.store.validate(&check)?;
        self.accounts.validate(&check)?;
        Ok(())
    }

    /// The settings as pretty RON, for printing the settings in effect.
    pub fn to_ron_string(&self) -> Result<String, ron::Error> {
        ron::ser::to_string_pretty(self, ron::ser::PrettyConfig::default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{CoreSelection, IoBackend, Steering};

    /// One broken setting and the field its error must name.
    type Case = (&'static str, fn(&mut ServerConfig));

    const CASES: &[Case] = &[
        ("network.bind", |c| c.network.bind = "localhost:3565".into()),
        ("network.bind", |c| c.network.bind = "0.0.0.0".into()),
        ("network.mtu", |c| c.network.mtu = 575),
        ("network.mtu", |c| c.network.mtu = 1473),
        ("network.recv_buffer_bytes", |c| {
            c.network.recv_buffer_bytes = 1199
        }),
        ("network.send_buffer_bytes", |c| {
            c.network.send_buffer_bytes = 0
        }),
        ("network.metrics_addr", |c| {
            c.network.metrics_addr = Some("9100".into())
        }),
        ("network.recv_batch", |c| c.network.recv_batch = 0),
        ("network.send_batch", |c| c.network.send_batch = 1025),
        ("runtime.cores.Count", |c| {
            c.runtime.cores = CoreSelection::Count(0)
        }),
        ("runtime.cores.Count", |c| {
            c.runtime.cores = CoreSelection::Count(257)
        }),
        ("runtime.cores.List", |c| {
            c.runtime.cores = CoreSelection::List(vec![])
        }),
        ("runtime.cores.List[2]", |c| {
            c.runtime.cores = CoreSelection::List(vec![0, 1, 0]);
        }),
        ("runtime.tick_hz", |c| c.runtime.tick_hz = 0),
        ("runtime.tick_hz", |c| c.runtime.tick_hz = 1001),
        ("runtime.stats_interval_ms", |c| {
            c.runtime.stats_interval_ms = 0
        }),
        ("runtime.cross_core_channel_capacity", |c| {
            c.runtime.cross_core_channel_capacity = 0;
        }),
        // Was silently clamped to 1,024 at start; now refused.
        ("runtime.cross_core_channel_capacity", |c| {
            c.runtime.cross_core_channel_capacity = 100_000;
        }),
        ("protocol.heartbeat_interval_ms", |c| {
            c.protocol.heartbeat_interval_ms = 0
        }),
        ("protocol.heartbeat_timeout_ms", |c| {
            c.protocol.heartbeat_timeout_ms = 5000
        }),
        ("protocol.reliable_rto_min_ms", |c| {
            c.protocol.reliable_rto_min_ms = 0
        }),
        ("protocol.reliable_max_retries", |c| {
            c.protocol.reliable_max_retries = 0
        }),
        ("protocol.max_message_bytes", |c| {
            c.protocol.max_message_bytes = 0
        }),
        ("protocol.max_message_bytes", |c| {
            c.protocol.max_message_bytes = u32::MAX
        }),
        ("protocol.max_reassemblies_per_connection", |c| {
            c.protocol.max_reassemblies_per_connection = 0;
        }),
        ("protocol.fragment_timeout_ms", |c| {
            c.protocol.fragment_timeout_ms = 0
        }),
        ("protocol.send_queue_messages", |c| {
            c.protocol.send_queue_messages = 0
        }),
        ("protocol.rekey_after_bytes", |c| {
            c.protocol.rekey_after_bytes = 1000
        }),
        ("protocol.rekey_after_secs", |c| {
            c.protocol.rekey_after_secs = 0
        }),
        ("protocol.rekey_grace_ms", |c| c.protocol.rekey_grace_ms = 0),
        ("protocol.rekey_grace_ms", |c| {
            c.protocol.rekey_grace_ms = 3_600_000
        }),
        ("protocol.max_connections_per_core", |c| {
            c.protocol.max_connections_per_core = 0;
        }),
        ("protocol.cookie_ttl_ms", |c| c.protocol.cookie_ttl_ms = 0),
        ("protocol.cookie_rotation_ms", |c| {
            c.protocol.cookie_rotation_ms = 0
        }),
        ("protocol.admission_exempt_addresses[1]", |c| {
            c.protocol.admission_exempt_addresses = vec!["127.0.0.1".into(), "localhost".into()];
        }),
        ("authority.max_rtt_credit_ms", |c| {
            c.authority.max_rtt_credit_ms = 60_000
        }),
        ("security.integrity_interval_secs", |c| {
            c.security.integrity_interval_secs = 0;
        }),
        ("security.server_static_key_file", |c| {
            c.security.server_static_key_file = Some(String::new());
        }),
        ("security.cookie_secret_file", |c| {
            c.security.cookie_secret_file = Some(" ".into());
        }),
        ("security.integrity_secret_file", |c| {
            c.security.integrity_secret_file = Some(String::new());
        }),
        ("aoi.cell_size", |c| c.aoi.cell_size = 0.0),
        ("aoi.cell_size", |c| c.aoi.cell_size = f64::NAN),
        ("aoi.base_distance", |c| c.aoi.base_distance = -1.0),
        ("aoi.distances.item", |c| {
            c.aoi.distances.item = f64::INFINITY
        }),
        ("aoi.distances.player", |c| c.aoi.distances.player = 0.0),
        ("sync.moving_rate", |c| c.sync.moving_rate = 0.0),
        ("sync.stationary_rate", |c| c.sync.stationary_rate = 1.5),
        ("sync.distant_rate", |c| c.sync.distant_rate = f64::NAN),
        ("sync.distant_fraction", |c| c.sync.distant_fraction = -0.5),
        ("sync.full_sync_interval_ms", |c| {
            c.sync.full_sync_interval_ms = 0
        }),
        ("sync.snapshot_budget_bytes", |c| {
            c.sync.snapshot_budget_bytes = 1201
        }),
        ("sync.snapshot_budget_bytes", |c| {
            c.sync.snapshot_budget_bytes = 0
        }),
        // Lowering the MTU below the default budget breaks the budget.
        ("sync.snapshot_budget_bytes", |c| c.network.mtu = 600),
        ("world.units_per_metre", |c| c.world.units_per_metre = 0),
        ("world.steps_per_metre[2]", |c| {
            c.world.steps_per_metre[2] = 0
        }),
        ("world.section_size[1]", |c| {
            c.world.section_size[1] = -25_600.0
        }),
        ("world.section_size[0]", |c| {
            c.world.section_size[0] = 70_000.0
        }),
        ("world.sections_per_component[0]", |c| {
            c.world.sections_per_component[0] = 0;
        }),
        ("world.components[2]", |c| c.world.components[2] = 0),
        ("world.components", |c| c.world.components = [4096, 4096, 4]),
        ("authority.max_speed", |c| c.authority.max_speed = 0.0),
        ("authority.speed_tolerance", |c| {
            c.authority.speed_tolerance = 0.99
        }),
        ("authority.max_step_height", |c| {
            c.authority.max_step_height = -1.0
        }),
        ("authority.heightfield_file", |c| {
            c.authority.heightfield_file = Some(String::new());
        }),
        ("authority.obstacles_file", |c| {
            c.authority.obstacles_file = Some(String::new());
        }),
        ("store.sqlite_file", |c| c.store.sqlite_file = " ".into()),
        ("store.postgres_url", |c| {
            c.store.backend = crate::StoreBackend::Postgres;
        }),
        ("store.postgres_url", |c| {
            c.store.backend = crate::StoreBackend::Postgres;
            c.store.postgres_url = Some("mysql://x".into());
        }),
        ("store.postgres_schema", |c| {
            c.store.postgres_schema = Some("a;drop".into());
        }),
        ("store.save_interval_ms", |c| c.store.save_interval_ms = 0),
        ("store.saturation_pending_saves", |c| {
            c.store.saturation_pending_saves = c.store.max_pending_saves + 1;
        }),
        ("store.queue_capacity", |c| c.store.queue_capacity = 0),
        ("store.retry_max_ms", |c| c.store.retry_max_ms = 1),
        ("accounts.argon2_p_cost", |c| c.accounts.argon2_p_cost = 0),
        ("accounts.argon2_m_cost_kib", |c| {
            c.accounts.argon2_p_cost = 4;
            c.accounts.argon2_m_cost_kib = 31;
        }),
        ("accounts.argon2_t_cost", |c| c.accounts.argon2_t_cost = 0),
        ("accounts.auth_workers", |c| c.accounts.auth_workers = 0),
        ("accounts.auth_queue", |c| c.accounts.auth_queue = 0),
        ("accounts.session_ticket_lifetime_secs", |c| {
            c.accounts.session_ticket_lifetime_secs = 59;
        }),
        ("accounts.ticket_key_file", |c| {
            c.accounts.ticket_key_file = Some(String::new());
        }),
        ("accounts.external_ticket_keys[1]", |c| {
            c.accounts.external_ticket_keys = vec!["ab".repeat(32), "xyz".into()];
        }),
        ("accounts.min_password_len", |c| {
            c.accounts.min_password_len = 0
        }),
        ("accounts.max_password_len", |c| {
            c.accounts.max_password_len = 7
        }),
        ("accounts.max_characters", |c| c.accounts.max_characters = 0),
        ("accounts.login_attempts_per_minute_per_account", |c| {
            c.accounts.login_attempts_per_minute_per_account = 0;
        }),
        ("accounts.login_attempts_per_minute_per_address", |c| {
            c.accounts.login_attempts_per_minute_per_address = 0;
        }),
        ("accounts.rate_limit_max_keys", |c| {
            c.accounts.rate_limit_max_keys = 0
        }),
    ];

    #[test]
    fn defaults_are_valid_and_match_the_seed() {
        let config = ServerConfig::default();
        config.validate("default").unwrap();
        assert_eq!(config.network.bind_addr().unwrap().port(), 3565);
        assert_eq!(config.network.mtu, 1200);
        assert_eq!(config.network.recv_buffer_bytes, 512 * 1024);
        assert_eq!(config.network.io_backend, IoBackend::Auto);
        assert_eq!(config.network.steering, Steering::Auto);
        assert!(matches!(config.network.metrics_socket_addr(), Some(Ok(_))));
        assert_eq!(config.runtime.cores, CoreSelection::All);
        assert_eq!(config.runtime.tick_hz, 60);
        assert_eq!(config.runtime.tick_period().as_micros(), 16_666);
        assert_eq!(config.protocol.heartbeat_interval_ms, 5000);
        assert_eq!(config.protocol.heartbeat_timeout_ms, 15_000);
        assert_eq!(config.protocol.reliable_rto_min_ms, 250);
        assert_eq!(config.protocol.reliable_max_retries, 10);
        assert_eq!(config.protocol.max_connections_per_core, 1_000);
        assert_eq!(config.protocol.max_connections_per_address, 16);
        assert_eq!(config.authority.max_rtt_credit_ms, 250);
        assert_eq!(config.protocol.rekey_after_bytes, 1 << 30);
        assert_eq!(config.aoi.cell_size, 500.0);
        assert_eq!(config.aoi.distances.projectile, 200_000.0);
        assert_eq!(config.aoi.distances.max(), 200_000.0);
        assert_eq!(config.sync.stationary_rate, 0.10);
        assert_eq!(config.sync.distant_rate, 0.30);
        assert_eq!(config.sync.full_sync_interval_ms, 5000);
        assert!(config.sync.snapshot_budget_bytes <= u32::from(config.network.mtu));
        let accounts = &config.accounts;
        assert_eq!(
            (
                accounts.argon2_m_cost_kib,
                accounts.argon2_t_cost,
                accounts.argon2_p_cost
            ),
            (19_456, 2, 1)
        );
        assert_eq!((accounts.auth_workers, accounts.auth_queue), (2, 1024));
        assert_eq!(accounts.session_ticket_lifetime_secs, 86_400);
        assert!(accounts.external_ticket_keys.is_empty() && accounts.allow_register);
        assert_eq!(
            (accounts.max_characters, accounts.delete_restore_secs),
            (7, 604_800)
        );
        assert_eq!(accounts.login_attempts_per_minute_per_account, 10);
        assert_eq!(accounts.login_attempts_per_minute_per_address, 30);
    }

    #[test]
    fn every_broken_value_names_the_file_and_the_field() {
        for (expected_field, break_it) in CASES {
            let mut config = ServerConfig::default();
            break_it(&mut config);
            let error = config.validate("configs/bad.ron").unwrap_err();
            let message = error.to_string();
            match &error {
                ConfigError::Invalid {
                    origin,
                    field,
                    allowed,
                    ..
                } => {
                    assert_eq!(field, expected_field, "{message}");
                    assert_eq!(origin, "configs/bad.ron");
                    assert!(!allowed.is_empty());
                    assert!(message.contains(allowed.as_str()), "{message}");
                }
                other => panic!("{expected_field}: expected Invalid, got {other:?}"),
            }
            assert!(message.starts_with("configs/bad.ron: "), "{message}");
            assert!(message.contains(expected_field), "{message}");
            assert!(message.contains("allowed"), "{message}");
        }
    }

    #[test]
    fn timeout_error_says_what_it_must_exceed() {
        let text = "(protocol: (heartbeat_interval_ms: 5000, heartbeat_timeout_ms: 3000))";
        let message = ServerConfig::from_ron_str(text, "server.ron")
            .unwrap_err()
            .to_string();
        assert_eq!(
            message,
            "server.ron: invalid `protocol.heartbeat_timeout_ms`: found 3000, \
             allowed: more than protocol.heartbeat_interval_ms (5000)"
        );
    }

    #[test]
    fn missing_sections_and_fields_take_defaults() {
        let config = ServerConfig::from_ron_str("()", "empty.ron").unwrap();
        assert_eq!(config, ServerConfig::default());
        let text = "(network: (mtu: 1400), runtime: (cores: List([0, 2, 4]), echo_mode: true))";
        let config = ServerConfig::from_ron_str(text, "partial.ron").unwrap();
        assert_eq!(config.network.mtu, 1400);
        assert_eq!(config.network.bind, "0.0.0.0:3565");
        assert_eq!(config.runtime.cores, CoreSelection::List(vec![0, 2, 4]));
        assert!(config.runtime.echo_mode);
        assert_eq!(config.runtime.tick_hz, 60);
        let text = "ServerConfig(runtime: (cores: Count(4)), network: (metrics_addr: None))";
        let config = ServerConfig::from_ron_str(text, "named.ron").unwrap();
        assert_eq!(config.runtime.cores, CoreSelection::Count(4));
        assert_eq!(config.network.metrics_addr, None);
        assert!(config.network.metrics_socket_addr().is_none());
    }

    fn parse_error(text: &str) -> (usize, usize, String, String) {
        match ServerConfig::from_ron_str(text, "typo.ron") {
            Err(error @ ConfigError::Parse { .. }) => {
                let display = error.to_string();
                let ConfigError::Parse {
                    line,
                    column,
                    message,
                    ..
                } = error
                else {
                    unreachable!()
                };
                (line, column, message, display)
            }
            other => panic!("expected a parse error, got {other:?}"),
        }
    }

    #[test]
    fn unknown_fields_are_rejected_by_name() {
        let (line, column, message, display) =
            parse_error("(\n  network: (\n    mtuu: 1400,\n  ),\n)");
        assert!(message.contains("unknown field `mtuu`"), "{message}");
        assert!(message.contains("the `network` section"), "{message}");
        assert!(message.contains("`mtu`"), "{message}");
        assert_eq!(line, 3);
        assert!(column > 1);
        assert!(display.starts_with("typo.ron:3:"), "{display}");

        let (_, _, message, _) = parse_error("(netwrok: ())");
        assert!(message.contains("unknown field `netwrok`"), "{message}");
        assert!(message.contains("top level"), "{message}");

        // Keys that used to exist but did nothing are refused, not ignored
        // (issue 11, finding 10).
        for (section, key) in [
            ("security", "waf: true"),
            ("security", "encryption: true"),
            ("protocol", "bundle_timeout_ms: 50"),
            ("protocol", "max_decompressed_bytes: 262144"),
        ] {
            let (_, _, message, _) = parse_error(&format!("({section}: ({key}))"));
            let name = key.split(':').next().unwrap();
            assert!(
                message.contains(&format!("unknown field `{name}`")),
                "{message}"
            );
        }

        let (_, _, message, _) = parse_error("(aoi: (distances: (dragon: 1.0)))");
        assert!(message.contains("`dragon`"), "{message}");
        assert!(message.contains("aoi.distances"), "{message}");
    }

    #[test]
    fn unknown_variants_are_rejected_by_name() {
        let (_, _, message, _) = parse_error("(network: (io_backend: Epoll))");
        assert!(message.contains("unknown variant `Epoll`"), "{message}");
        assert!(message.contains("`IoUring`"), "{message}");
        let (_, _, message, _) = parse_error("(runtime: (cores: Some([1])))");
        assert!(message.contains("`Some`"), "{message}");
    }

    #[test]
    fn syntax_and_type_errors_give_a_position() {
        let (line, _, _, display) = parse_error("(\n  network: (mtu: \"big\"),\n)");
        assert_eq!(line, 2);
        assert!(display.starts_with("typo.ron:2:"), "{display}");
        let (line, _, _, _) = parse_error("(\n\n  runtime: (tick_hz: 60\n");
        assert!(line >= 3);
        let (_, _, message, _) = parse_error("(network: (mtu: 70000))");
        assert!(!message.is_empty());
    }

    #[test]
    fn settings_survive_a_round_trip_through_ron() {
        let mut config = ServerConfig::default();
        config.runtime.cores = CoreSelection::List(vec![3, 1]);
        config.security.server_static_key_file = Some("/etc/tos/server.key".into());
        config.world.steps_per_metre = [50, 50, 200];
        let text = config.to_ron_string().unwrap();
        assert_eq!(
            ServerConfig::from_ron_str(&text, "round-trip").unwrap(),
            config
        );
    }

    #[test]
    fn load_names_the_path_on_every_kind_of_error() {
        let dir = std::env::temp_dir().join(format!("tos-config-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();

        let missing = dir.join("missing.ron");
        let error = ServerConfig::load(&missing).unwrap_err();
        assert!(matches!(error, ConfigError::Io { .. }));
        assert!(std::error::Error::source(&error).is_some());
        assert!(error.to_string().contains("missing.ron"), "{error}");

        let good = dir.join("good.ron");
        std::fs::write(&good, "(runtime: (tick_hz: 30))").unwrap();
        assert_eq!(ServerConfig::load(&good).unwrap().runtime.tick_hz, 30);

        let invalid = dir.join("invalid.ron");
        std::fs::write(&invalid, "(runtime: (tick_hz: 0))").unwrap();
        let message = ServerConfig::load(&invalid).unwrap_err().to_string();
        assert!(message.contains("invalid.ron"), "{message}");
        assert!(message.contains("runtime.tick_hz"), "{message}");

        let garbled = dir.join("garbled.ron");
        std::fs::write(&garbled, "(runtime: (tick_hz: 60)").unwrap();
        let message = ServerConfig::load(&garbled).unwrap_err().to_string();
        assert!(message.contains("garbled.ron:1:"), "{message}");

        let not_utf8 = dir.join("binary.ron");
        std::fs::write(&not_utf8, [0xff, 0xfe, 0x00]).unwrap();
        assert!(matches!(
            ServerConfig::load(&not_utf8),
            Err(ConfigError::Io { .. })
        ));

        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// The workspace's one seeded generator, for the fuzz-style test below.
    struct SplitMix(tos_protocol::rng::SplitMix64);

    impl SplitMix {
        fn next(&mut self) -> u64 {
            self.0.next_u64()
        }
    }

    #[test]
    fn mangled_settings_files_are_errors_not_panics() {
        let text = include_str!("../server.ron").as_bytes();
        let digits: Vec<usize> = (0..text.len())
            .filter(|&i| text[i].is_ascii_digit())
            .collect();
        let mut rng = SplitMix(tos_protocol::rng::SplitMix64::new(0x5eed));
        let mut accepted = 0;
        for _ in 0..3000 {
            let mut mangled = text.to_vec();
            for _ in 0..=rng.next() % 3 {
                let pick = |rng: &mut SplitMix, len: usize| (rng.next() % len as u64) as usize;
                match rng.next() % 8 {
                    // Mostly changed digits, so that most files still parse
                    // and validation sees odd values.
                    0..=4 => {
                        let at = digits[pick(&mut rng, digits.len())];
                        let digit = b'0' + (rng.next() % 10) as u8;
                        if let Some(byte) = mangled.get_mut(at) {
                            *byte = digit;
                        }
                    }
                    5 => {
                        let at = pick(&mut rng, mangled.len());
                        mangled[at] = b"()[],:x\"-.N"[pick(&mut rng, 11)];
                    }
                    6 => {
                        let at = pick(&mut rng, mangled.len());
                        mangled.remove(at);
                    }
                    _ => {
                        let at = pick(&mut rng, mangled.len());
                        mangled.truncate(at.max(1));
                    }
                }
            }
            if let Ok(text) = std::str::from_utf8(&mangled) {
                if ServerConfig::from_ron_str(text, "mangled.ron").is_ok() {
                    accepted += 1;
                }
            }
        }
        // Some variants survive (changed comments, in-range values), most not.
        assert!(accepted > 0 && accepted < 3000, "{accepted}");
    }
}
