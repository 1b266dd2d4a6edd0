//! Test fixtures: the NATS server to test against (with the project's
//! skip/require rule), private nats-server processes to kill and restart,
//! unique cluster names, and waiting for link events.

#![allow(dead_code, unreachable_pub)]

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::time::{Duration, Instant};

use tos_cluster::{LinkCommand, LinkConfig, LinkEvent, NatsLink, Storage};

/// Where the shared test server runs, or `None` after printing why the
/// test is skipped; with `TOS_REQUIRE_SERVICES=1` a missing server fails.
pub fn nats_url() -> Option<String> {
    let required = std::env::var("TOS_REQUIRE_SERVICES").as_deref() == Ok("1");
    let url = match std::env::var("TOS_TEST_NATS_URL") {
        Ok(url) => url,
        Err(_) if required => "nats://127.0.0.1:4222".to_owned(),
        Err(_) => {
            eprintln!("skipped: TOS_TEST_NATS_URL is not set");
            return None;
        }
    };
    let address = url.trim_start_matches("nats://").to_owned();
    if TcpStream::connect_timeout(
        &address
            .parse()
            .expect("TOS_TEST_NATS_URL is nats://IP:PORT"),
        Duration::from_secs(2),
    )
    .is_err()
    {
        let msg = format!("skipped: NATS not reachable at {url}");
        if required {
            panic!("{msg}");
        }
        eprintln!("{msg}");
        return None;
    }
    Some(url)
}

/// The nats-server binary for tests that kill and restart a server.
pub fn nats_server_binary() -> Option<&'static str> {
    const PATH: &str = "/usr/sbin/nats-server";
    if Path::new(PATH).exists() {
        return Some(PATH);
    }
    let msg = format!("skipped: {PATH} not installed (Debian package nats-server)");
    if std::env::var("TOS_REQUIRE_SERVICES").as_deref() == Ok("1") {
        panic!("{msg}");
    }
    eprintln!("{msg}");
    None
}

/// A nats-server of the test's own, on a port of its own.
pub struct PrivateNats {
    pub port: u16,
    pub dir: tempfile::TempDir,
    child: Option<Child>,
    binary: &'static str,
}

impl PrivateNats {
    pub fn start(binary: &'static str) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let mut server = Self {
            port,
            dir: tempfile::tempdir().expect("temp dir"),
            child: None,
            binary,
        };
        server.restart();
        server
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Starts the server (again) on the same port and store directory.
    pub fn restart(&mut self) {
        let child = Command::new(self.binary)
            .args([
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-js",
                "-sd",
            ])
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nats-server");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "nats-server did not answer");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the server (SIGKILL) and waits for it to be gone.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for PrivateNats {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A cluster name no other test run uses (bucket names stay apart).
pub fn unique_cluster(tag: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!(
        "t{}{}-{}-{}",
        std::process::id() % 100_000,
        NEXT.fetch_add(1, SeqCst),
        nanos % 100_000,
        tag
    )
}

/// A link on `url` with test-sized timings and in-memory buckets.
pub fn link(cluster: &str, node: &str, url: &str, tweak: impl FnOnce(&mut LinkConfig)) -> NatsLink {
    let mut config = LinkConfig::new(cluster, node, url);
    config.storage = Storage::Memory;
    config.lease_ttl = Duration::from_secs(10);
    // Generous: a loaded CI machine must not turn a plain ack into a
    // settlement; tests of timeouts set their own.
    config.handoff_timeout = Duration::from_secs(2);
    tweak(&mut config);
    NatsLink::start(config).expect("link starts")
}

/// Waits up to `timeout` for an event `pick` accepts, skipping others.
pub fn wait_for<T>(
    link: &NatsLink,
    timeout: Duration,
    what: &str,
    mut pick: impl FnMut(&LinkEvent) -> Option<T>,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match link.events().recv_timeout(left) {
            Ok(event) => {
                if let Some(found) = pick(&event) {
                    return found;
                }
            }
            Err(_) => panic!("no {what} within {timeout:?}"),
        }
    }
}

pub fn wait_up(link: &NatsLink) {
    wait_for(link, Duration::from_secs(10), "Up", |e| {
        (*e == LinkEvent::Up).then_some(())
    });
}

/// Sends a directory request and waits for its answer.
pub fn ask(
    link: &NatsLink,
    command: LinkCommand,
) -> Result<tos_cluster::DirectoryAnswer, tos_cluster::LinkError> {
    let request = match &command {
        LinkCommand::Acquire { request, .. }
        | LinkCommand::Release { request, .. }
        | LinkCommand::FindLease { request, .. }
        | LinkCommand::FindPlayer { request, .. }
        | LinkCommand::ClaimQuadrants { request, .. }
        | LinkCommand::UnclaimQuadrants { request, .. }
        | LinkCommand::FindQuadrant { request, .. }
        | LinkCommand::DropDirectory { request } => *request,
        other => panic!("not a request: {other:?}"),
    };
    link.send(command).expect("queued");
    wait_for(
        link,
        Duration::from_secs(10),
        "directory reply",
        |e| match e {
            LinkEvent::Reply { request: r, result } if *r == request => Some(result.clone()),
            _ => None,
        },
    )
}

/// Publishes raw bytes on a subject with the plain NATS text protocol, as
/// a misbehaving peer would.
pub fn publish_raw(url: &str, subject: &str, payload: &[u8]) {
    let address = url.trim_start_matches("nats://");
    let stream = TcpStream::connect(address).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut line = String::new();
    reader.read_line(&mut line).expect("INFO");
    let mut writer = stream;
    write!(
        writer,
        "CONNECT {{\"verbose\":false}}\r\nPUB {subject} {}\r\n",
        payload.len()
    )
    .unwrap();
    writer.write_all(payload).unwrap();
    writer.write_all(b"\r\nPING\r\n").unwrap();
    loop {
        line.clear();
        reader.read_line(&mut line).expect("PONG");
        if line.starts_with("PONG") {
            return;
        }
    }
}
