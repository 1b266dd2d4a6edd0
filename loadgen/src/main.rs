//! `loadgen`: simulated players that run the client side of the protocol
//! state machine against a `tos-server`, and the performance report.
//!
//! Status: a skeleton. The load generator lands with the issue "loadgen".

fn main() {
    eprintln!("loadgen: not built yet; see docs/ROADMAP.md");
    std::process::exit(2);
}
