//! CPU time per auth operation, read from this thread's scheduler
//! statistics (Linux `/proc/thread-self/schedstat`), so that other
//! processes competing for the cores do not inflate the figure the way they
//! inflate criterion's wall-clock medians on a shared machine.
//!
//! `cargo run --release -p tos-auth --example auth_cost`

use std::hint::black_box;

use tos_auth::{
    PasswordParams, SigningKey, TicketSigner, TicketVerifier, hash_password, verify_password,
};

/// Nanoseconds this thread has run on a CPU, if the kernel says.
fn cpu_ns() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    text.split_whitespace().next()?.parse().ok()
}

fn measure(name: &str, iterations: u32, mut op: impl FnMut()) {
    let (Some(cpu_start), wall_start) = (cpu_ns(), std::time::Instant::now()) else {
        println!("{name}: /proc/thread-self/schedstat unavailable");
        return;
    };
    for _ in 0..iterations {
        op();
    }
    let wall = wall_start.elapsed().as_secs_f64() / f64::from(iterations);
    let cpu = cpu_ns().unwrap_or(cpu_start).saturating_sub(cpu_start) as f64
        / 1e9
        / f64::from(iterations);
    println!(
        "{name}: {:.1} us CPU ({:.0}/s per core), {:.1} us wall",
        cpu * 1e6,
        1.0 / cpu,
        wall * 1e6
    );
}

fn main() {
    const NOW: u64 = 1_767_225_600;
    let phc = hash_password(&PasswordParams::default(), "correct horse battery").unwrap();
    measure("argon2id verify (default params)", 20, || {
        black_box(verify_password(black_box("correct horse battery"), &phc).unwrap());
    });
    let signer = TicketSigner::new(SigningKey::from_bytes(&[7; 32]));
    let mut verifier = TicketVerifier::new();
    verifier.trust_session_key(signer.verifying_key());
    let ticket = signer
        .issue_session(42, "Aria-the-Bold", NOW, 86_400)
        .unwrap();
    measure("ticket verify", 5000, || {
        black_box(verifier.verify(black_box(&ticket), NOW).unwrap());
    });
    // The same signature checked by ring (for comparison only).
    let public = signer.verifying_key().to_bytes();
    let ring_key = ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, public);
    let parsed = tos_auth::Ticket::parse(&ticket).unwrap();
    let mut message = tos_auth::ticket::DOMAIN.to_vec();
    message.extend_from_slice(parsed.signed_bytes());
    let signature = parsed.signature().to_bytes();
    measure("ed25519 verify, ring (comparison)", 5000, || {
        ring_key.verify(&message, &signature).unwrap();
    });
    measure("ticket issue", 5000, || {
        black_box(
            signer
                .issue_session(42, "Aria-the-Bold", NOW, 86_400)
                .unwrap(),
        );
    });
}
