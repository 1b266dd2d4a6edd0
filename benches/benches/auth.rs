//! Identity costs: what one login and one reconnect cost a worker thread.
//!
//! `cargo bench -p tos-benches --bench auth`
//!
//! - `argon2id/verify-default`: one password check with the default
//!   parameters (m = 19456 KiB, t = 2, p = 1): the inverse is logins per
//!   second per auth worker thread.
//! - `ticket/verify`: parse + strict Ed25519 verification + time checks of
//!   a session ticket: the inverse is reconnects (or zone transfers) per
//!   second per core. Goal: at least 5,000/s.
//! - `ticket/issue`: encode + sign a session ticket.

use criterion::{Criterion, black_box, criterion_group, criterion_main};
use tos_auth::{
    PasswordParams, SigningKey, TicketSigner, TicketVerifier, hash_password, verify_password,
};

const NOW: u64 = 1_767_225_600;

fn argon2(c: &mut Criterion) {
    let phc = hash_password(&PasswordParams::default(), "correct horse battery").unwrap();
    let mut g = c.benchmark_group("argon2id");
    g.sample_size(10);
    g.measurement_time(std::time::Duration::from_secs(5));
    g.bench_function("verify-default", |b| {
        b.iter(|| verify_password(black_box("correct horse battery"), black_box(&phc)).unwrap())
    });
    g.finish();
}

fn tickets(c: &mut Criterion) {
    let signer = TicketSigner::new(SigningKey::from_bytes(&[7; 32]));
    let mut verifier = TicketVerifier::new();
    verifier.trust_session_key(signer.verifying_key());
    // A second, external key, so the lookup is not a one-entry map.
    verifier.trust_external_key(SigningKey::from_bytes(&[8; 32]).verifying_key());
    let ticket = signer
        .issue_session(42, "Aria-the-Bold", NOW, 86_400)
        .unwrap();
    let mut g = c.benchmark_group("ticket");
    g.bench_function("verify", |b| {
        b.iter(|| verifier.verify(black_box(&ticket), black_box(NOW)).unwrap())
    });
    g.bench_function("issue", |b| {
        b.iter(|| {
            signer
                .issue_session(black_box(42), black_box("Aria-the-Bold"), NOW, 86_400)
                .unwrap()
        })
    });
    g.finish();
}

criterion_group!(auth, argon2, tickets);
criterion_main!(auth);
