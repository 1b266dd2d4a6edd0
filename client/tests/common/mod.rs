//! A real `tos-server` process for the SDK's tests, and the artifacts C and
//! C++ programs link against.
//!
//! Why the tests build with cargo themselves: an integration test of this
//! crate sees neither `tos-server` (a binary of another package, so
//! `CARGO_BIN_EXE_*` is not set here) nor `libtos_client.a` (cargo builds
//! the staticlib for `cargo build`, not for the test harness). So the first
//! test that needs them runs `cargo build -p tos-client --lib` and
//! `cargo build -p tos-engine --bin tos-server` with the cargo, profile and
//! target directory of the running test (found from the test executable's
//! path, `<target>/<profile>/deps/<test>`). From a clean `cargo test
//! --workspace` this builds what is missing; otherwise it is a no-op.
#![allow(dead_code, unreachable_pub, reason = "each test file uses a part")]

#[path = "../../../engine/tests/common/quiet.rs"]
mod quiet;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

/// Where the built artifacts are.
#[derive(Debug)]
pub struct Artifacts {
    /// `<target>/<profile>`.
    pub profile_dir: PathBuf,
    /// The server binary.
    pub server: PathBuf,
    /// The static library.
    pub staticlib: PathBuf,
}

/// Builds (once per test process) the server and the static library.
pub fn artifacts() -> &'static Artifacts {
    static ONCE: OnceLock<Artifacts> = OnceLock::new();
    ONCE.get_or_init(|| {
        let exe = std::env::current_exe().expect("test executable path");
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("<target>/<profile>/deps/<test>")
            .to_path_buf();
        let target_dir = profile_dir.parent().expect("<target>").to_path_buf();
        let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
            Some("debug") | None => "dev".to_string(),
            Some(other) => other.to_string(),
        };
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("workspace root")
            .to_path_buf();
        for args in [
            &["-p", "tos-client", "--lib"][..],
            &["-p", "tos-engine", "--bin", "tos-server"][..],
        ] {
            let mut cmd = Command::new(&cargo);
            // The variables cargo sets for this test are not the nested
            // build's: some build scripts track them (ring reruns when
            // CARGO_MANIFEST_DIR changes), which would rebuild half the
            // tree on every test run and again on the next plain build.
            for (k, _) in std::env::vars_os() {
                let k = k.to_string_lossy();
                if [
                    "CARGO_PKG_",
                    "CARGO_MANIFEST_",
                    "CARGO_CRATE_",
                    "CARGO_BIN_",
                ]
                .iter()
                .any(|p| k.starts_with(p))
                    || [
                        "CARGO_PRIMARY_PACKAGE",
                        "CARGO_TARGET_TMPDIR",
                        "CARGO_RUSTC_CURRENT_DIR",
                        "CARGO_TARGET_DIR",
                    ]
                    .contains(&&*k)
                {
                    cmd.env_remove(&*k);
                }
            }
            let status = cmd
                .current_dir(&workspace)
                .arg("build")
                .args(args)
                .arg("--profile")
                .arg(&profile)
                .arg("--target-dir")
                .arg(&target_dir)
                .status()
                .expect("cargo runs");
            assert!(status.success(), "cargo build {args:?} failed");
        }
        let server = profile_dir.join(format!("tos-server{}", std::env::consts::EXE_SUFFIX));
        let staticlib = profile_dir.join(if cfg!(windows) {
            "tos_client.lib"
        } else {
            "libtos_client.a"
        });
        assert!(server.exists(), "{} missing", server.display());
        assert!(staticlib.exists(), "{} missing", staticlib.display());
        Artifacts {
            profile_dir,
            server,
            staticlib,
        }
    })
}

/// A `tos-server` child process on 127.0.0.1 with its own data directory.
pub struct Server {
    child: Child,
    /// Its data directory (removed on drop).
    pub dir: tempfile::TempDir,
    /// `127.0.0.1:PORT`.
    pub addr: String,
    /// Its static public key, hex, as logged.
    pub key_hex: String,
    /// Its integrity secret, hex (from the data directory).
    pub integrity_hex: String,
    log: Arc<Mutex<String>>,
}

impl Server {
    /// Starts a one-core server on a free port with cheap password hashing
    /// and no metrics endpoint, and waits until it runs. Its game data are
    /// the shipped files without spawn groups: a new character starts
    /// anywhere in its faction's lands, and the tests walk and watch rather
    /// than fight the monsters that may be waiting there.
    pub fn start() -> Self {
        let a = artifacts();
        let dir = tempfile::tempdir().expect("a temporary directory");
        let data = quiet::quiet_game_data(dir.path());
        let config = dir.path().join("server.ron");
        std::fs::write(
            &config,
            format!(
                "(network: (bind: \"127.0.0.1:0\", metrics_addr: None),\n \
                 runtime: (cores: Count(1), pin_threads: false, data_dir: {:?}, game_data_dir: Some({:?})),\n \
                 accounts: (argon2_m_cost_kib: 1024, argon2_t_cost: 1))\n",
                dir.path().join("data").display().to_string(),
                data.display().to_string()
            ),
        )
        .expect("config written");
        let mut child = Command::new(&a.server)
            .arg("--config")
            .arg(&config)
            .arg("--log-level")
            .arg("info")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("tos-server starts");
        let stdout = child.stdout.take().expect("piped stdout");
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = mpsc::channel();
        let sink = Arc::clone(&log);
        // Drains the log for the server's whole life (a full pipe would
        // stall it) and reports the two lines the tests need.
        std::thread::spawn(move || {
            let (mut key, mut addr) = (None, None);
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Ok(mut l) = sink.lock() {
                    l.push_str(&line);
                    l.push('\n');
                }
                if line.contains("clients pin this") {
                    key = field(&line, "key=");
                }
                if line.contains("tos-server running") {
                    addr = field(&line, "addr=");
                }
                if let (Some(k), Some(a)) = (&key, &addr) {
                    let _ = tx.send((k.clone(), a.clone()));
                    key = None;
                }
            }
        });
        let (key_hex, addr) = rx
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("tos-server did not start: {}", log.lock().unwrap()));
        assert!(
            key_hex.len() == 64 && key_hex.chars().all(|c| c.is_ascii_hexdigit()),
            "the logged key is plain hex (no colour codes in a pipe): {key_hex:?}"
        );
        let integrity_hex = std::fs::read_to_string(dir.path().join("data/integrity.secret"))
            .expect("integrity secret in the data directory")
            .trim()
            .to_string();
        Self {
            child,
            dir,
            addr,
            key_hex,
            integrity_hex,
            log,
        }
    }

    /// The key as bytes.
    pub fn key(&self) -> [u8; 32] {
        hex32(&self.key_hex)
    }

    /// The integrity secret as bytes.
    pub fn integrity(&self) -> [u8; 32] {
        hex32(&self.integrity_hex)
    }

    /// What it logged so far.
    pub fn log(&self) -> String {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn field(line: &str, name: &str) -> Option<String> {
    let at = line.find(name)? + name.len();
    Some(
        line[at..]
            .split_whitespace()
            .next()?
            .trim_matches('"')
            .to_string(),
    )
}

/// 64 hex digits as bytes.
pub fn hex32(s: &str) -> [u8; 32] {
    let mut k = [0u8; 32];
    for (i, b) in k.iter_mut().enumerate() {
        *b = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).expect("hex");
    }
    k
}

/// Compiles `source` with `compiler` (`cc` or `c++`) against the static
/// library; returns the executable.
pub fn compile(compiler: &str, std: &str, source: &str, out_name: &str) -> PathBuf {
    let a = artifacts();
    let client = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = a
        .profile_dir
        .join(format!("{out_name}{}", std::env::consts::EXE_SUFFIX));
    let output = Command::new(compiler)
        .arg(format!("-std={std}"))
        .args(["-Wall", "-Wextra", "-Werror"])
        .arg("-I")
        .arg(client.join("include"))
        .arg(client.join(source))
        .arg(&a.staticlib)
        .args(["-lpthread", "-ldl", "-lm"])
        .arg("-o")
        .arg(&out)
        .output()
        .unwrap_or_else(|e| panic!("{compiler} runs: {e}"));
    assert!(
        output.status.success(),
        "{compiler} {source} failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    out
}
