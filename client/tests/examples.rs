//! The C and C++ examples, compiled with the system compilers against
//! `libtos_client.a` alone, log in to a real `tos-server`, walk a square
//! and see the world.

mod common;

use std::process::Command;

use common::{Server, compile};

fn run_walk(program: &std::path::Path, server: &Server, account: &str) -> String {
    let out = Command::new(program)
        .arg(&server.addr)
        .arg(&server.key_hex)
        .arg(&server.integrity_hex)
        .arg(account)
        .output()
        .expect("the example runs");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{} exited with {:?}\nstdout:\n{stdout}\nstderr:\n{stderr}\nserver log:\n{}",
        program.display(),
        out.status,
        server.log()
    );
    assert!(
        stdout.contains("connected (server key verified)"),
        "{stdout}"
    );
    assert!(stdout.contains("entered world: entity"), "{stdout}");
    let seen: u32 = stdout
        .lines()
        .find_map(|l| l.strip_prefix("entities seen: "))
        .and_then(|rest| rest.split(',').next())
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no entity count in:\n{stdout}"));
    assert!(seen >= 1, "saw no entity:\n{stdout}");
    assert!(stdout.contains("stats: level 1,"), "{stdout}");
    assert!(stdout.contains("inventory: "), "{stdout}");
    assert!(stdout.contains("disconnected cleanly"), "{stdout}");
    stdout
}

#[test]
fn c_example_walks_a_square() {
    let walk = compile("cc", "c11", "examples/walk.c", "walk_c");
    let server = Server::start();
    let first = run_walk(&walk, &server, "cwalker");
    assert!(first.contains("created character"), "{first}");
    assert!(first.contains("chat [0] cwalker: hello from C"), "{first}");
    // The second run logs in to the existing account and character.
    let second = run_walk(&walk, &server, "cwalker");
    assert!(!second.contains("created character"), "{second}");
}

#[test]
fn cpp_example_walks_a_square() {
    let walk = compile("c++", "c++20", "examples/walk.cpp", "walk_cpp");
    let server = Server::start();
    let out = run_walk(&walk, &server, "cppwalker");
    assert!(out.contains("ticket: "), "{out}");
}
