//! The `loadgen` binary end to end: a spawned server on 127.0.0.1, a few
//! players for two seconds, the JSON summary checked; bad targets refused.

use std::process::Command;

fn loadgen(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(args)
        .output()
        .expect("loadgen runs")
}

fn field(json: &str, key: &str) -> f64 {
    let at = json
        .find(&format!("\"{key}\":"))
        .unwrap_or_else(|| panic!("no {key} in {json}"));
    let rest = &json[at + key.len() + 3..];
    let end = rest.find([',', '}']).unwrap_or(rest.len());
    rest[..end]
        .parse()
        .unwrap_or_else(|_| panic!("{key} is not a number in {json}"))
}

#[test]
fn world_mode_measures_latency_and_bandwidth() {
    let out = loadgen(&[
        "--spawn-server",
        "--players",
        "12",
        "--seconds",
        "3",
        "--battle",
        "0.5",
        "--cheaters",
        "0.25",
        "--json",
        "-",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let json = stdout
        .lines()
        .find(|l| l.starts_with('{'))
        .expect("a JSON line");
    assert_eq!(field(json, "connected"), 12.0, "{json}");
    assert_eq!(field(json, "decode_errors"), 0.0, "{json}");
    assert!(field(json, "snapshots") > 100.0, "{json}");
    // Players play: the summary says what came of it.
    let gameplay = &json[json.find("\"gameplay\"").expect("a gameplay object")..];
    for key in [
        "kills",
        "deaths",
        "items_looted",
        "level_ups",
        "chat_messages",
    ] {
        assert!(field(gameplay, key) >= 0.0, "{json}");
    }
    assert!(field(json, "bandwidth_saved") > 0.5, "{json}");
    let latency = &json[json.find("\"latency_ms\"").unwrap()..];
    assert!(field(latency, "p50") > 0.0, "{json}");
    // Cheaters' speed hacks are corrected.
    assert!(field(json, "corrections") > 0.0, "{json}");
    // The loadgen measures itself: how late its inputs went out and the
    // CPU its workers used (a dozen players leave it mostly idle).
    let lag = &json[json.find("\"send_lag_ms\"").unwrap()..];
    assert!(field(lag, "count") > 100.0, "{json}");
    assert!(field(json, "loadgen_cpu_cores") > 0.0, "{json}");
    assert!(json.contains("\"kept_rate\":"), "{json}");
    assert!(
        stdout.contains("input-to-observed latency"),
        "the human table is printed too"
    );
}

#[test]
fn echo_mode_round_trips() {
    let out = loadgen(&[
        "--spawn-server",
        "--mode",
        "echo",
        "--players",
        "8",
        "--seconds",
        "2",
        "--json",
        "-",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let json = stdout
        .lines()
        .find(|l| l.starts_with('{'))
        .expect("a JSON line");
    assert_eq!(field(json, "connected"), 8.0);
    let latency = &json[json.find("\"latency_ms\"").unwrap()..];
    assert!(field(latency, "count") > 100.0, "{json}");
}

#[test]
fn remote_targets_and_bad_arguments_are_refused() {
    let out = loadgen(&[
        "--server",
        "192.0.2.1:3565",
        "--server-key",
        &"ab".repeat(32),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a loopback address"));
    let out = loadgen(&["--spawn-server", "--players", "0"]);
    assert_eq!(out.status.code(), Some(2));
    let out = loadgen(&["--bogus"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn cluster_arguments_are_checked() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../config/cluster-2nodes.ron");
    let key = "ab".repeat(32);
    // A cluster needs the nodes' key, and is not a spawned server.
    let out = loadgen(&["--cluster", example]);
    assert_eq!(out.status.code(), Some(2));
    let out = loadgen(&["--cluster", example, "--server-key", &key, "--spawn-server"]);
    assert_eq!(out.status.code(), Some(2));
    let out = loadgen(&["--cluster", example, "--server-key", &key, "--mode", "echo"]);
    assert_eq!(out.status.code(), Some(2));
    // A file that is not there, and nodes off this host, are refused.
    let out = loadgen(&[
        "--cluster",
        "/nonexistent/cluster.ron",
        "--server-key",
        &key,
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cluster.ron"));
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(example)
        .unwrap()
        .replace("127.0.0.1:7778", "192.0.2.1:7778");
    std::fs::write(dir.path().join("cluster.ron"), text).unwrap();
    let layouts = concat!(env!("CARGO_MANIFEST_DIR"), "/../config/layouts");
    std::fs::create_dir(dir.path().join("layouts")).unwrap();
    for e in std::fs::read_dir(layouts).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), dir.path().join("layouts").join(e.file_name())).unwrap();
    }
    let path = dir.path().join("cluster.ron");
    let out = loadgen(&["--cluster", path.to_str().unwrap(), "--server-key", &key]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not a loopback address"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
