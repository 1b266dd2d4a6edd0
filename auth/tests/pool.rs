//! The auth worker pool: answers, back-pressure, shutdown.

use std::time::Duration;

use tos_auth::{
    AuthJob, AuthJobKind, AuthPool, AuthResult, PasswordParams, SigningKey, TicketSigner,
    TicketVerifier, hash_password,
};

const CHEAP: PasswordParams = PasswordParams {
    m_cost_kib: 64,
    t_cost: 1,
    p_cost: 1,
};

fn pool(threads: usize, queue: usize) -> AuthPool {
    let signer = TicketSigner::new(SigningKey::from_bytes(&[5; 32]));
    let mut verifier = TicketVerifier::new();
    verifier.trust_session_key(signer.verifying_key());
    AuthPool::start(threads, queue, CHEAP, signer, verifier).unwrap()
}

/// Waits for a reply; generous so a loaded CI machine never fails it (this
/// is a hang guard, not a timing assertion).
const WAIT: Duration = Duration::from_secs(60);

#[test]
fn every_kind_of_job_is_answered() {
    let pool = pool(2, 16);
    let (reply, replies) = crossbeam_channel::unbounded();
    let phc = hash_password(&CHEAP, "hunter2").unwrap();
    let jobs = [
        AuthJobKind::HashPassword {
            password: "new".into(),
        },
        AuthJobKind::VerifyPassword {
            password: "hunter2".into(),
            phc: Some(phc.clone()),
        },
        AuthJobKind::VerifyPassword {
            password: "wrong".into(),
            phc: Some(phc),
        },
        AuthJobKind::VerifyPassword {
            password: "hunter2".into(),
            phc: None,
        },
        AuthJobKind::IssueTicket {
            account_id: 3,
            name: "Cid".into(),
            now: 1000,
            lifetime: 60,
        },
        AuthJobKind::VerifyTicket {
            ticket: vec![1, 2, 3],
            now: 1000,
        },
    ];
    for (request_id, kind) in (0u64..).zip(jobs) {
        let job = AuthJob {
            request_id,
            reply: reply.clone(),
            kind,
        };
        pool.try_submit(job).unwrap();
    }
    let mut answers: Vec<_> = (0..6)
        .map(|_| replies.recv_timeout(WAIT).unwrap())
        .collect();
    answers.sort_by_key(|answer| answer.request_id);
    match &answers[0].result {
        AuthResult::Hashed(Ok(phc)) => {
            assert!(tos_auth::verify_password("new", phc).unwrap());
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(answers[1].result, AuthResult::Verified(Ok(true)));
    assert_eq!(answers[2].result, AuthResult::Verified(Ok(false)));
    assert_eq!(answers[3].result, AuthResult::Verified(Ok(false)));
    let AuthResult::Issued(Ok(ticket)) = &answers[4].result else {
        panic!("{:?}", answers[4]);
    };
    assert!(matches!(answers[5].result, AuthResult::Ticket(Err(_))));

    // The issued ticket verifies through the pool.
    let job = AuthJob {
        request_id: 9,
        reply: reply.clone(),
        kind: AuthJobKind::VerifyTicket {
            ticket: ticket.clone(),
            now: 1010,
        },
    };
    pool.try_submit(job).unwrap();
    let answer = replies.recv_timeout(WAIT).unwrap();
    let AuthResult::Ticket(Ok(claims)) = answer.result else {
        panic!("{answer:?}");
    };
    assert_eq!(
        (claims.account_id, claims.account_name.as_str()),
        (3, "Cid")
    );

    let stats = pool.stats();
    assert_eq!(stats.jobs, 7);
    assert_eq!(stats.hashes, 1);
    assert_eq!(stats.verifies, 5);
    assert_eq!(stats.failures, 3);
    assert_eq!(stats.queue_depth, 0);
    pool.shutdown_and_join();
}

#[test]
fn a_full_queue_hands_the_job_back_and_shutdown_drains() {
    // One worker, a queue of two, and a rendezvous reply channel nobody
    // reads yet: the worker blocks on its first reply, so the queue fills
    // deterministically (no timing involved).
    let pool = pool(1, 2);
    let (reply, replies) = crossbeam_channel::bounded(0);
    let job = |request_id| AuthJob {
        request_id,
        reply: reply.clone(),
        kind: AuthJobKind::IssueTicket {
            account_id: request_id,
            name: "Q".into(),
            now: 1,
            lifetime: 1,
        },
    };
    let mut accepted = 0;
    let refused = loop {
        match pool.try_submit(job(accepted)) {
            Ok(()) => accepted += 1,
            Err(job) => break job,
        }
        assert!(accepted <= 3, "a queue of 2 plus the job in progress");
    };
    assert!(accepted >= 2);
    assert_eq!(refused.request_id, accepted);
    assert_eq!(pool.stats().rejected, 1);
    // Every accepted job is answered, in order (one worker).
    for request_id in 0..accepted {
        assert_eq!(replies.recv_timeout(WAIT).unwrap().request_id, request_id);
    }
    pool.shutdown_and_join();
    assert!(replies.try_recv().is_err());
}

#[test]
fn shutdown_answers_every_queued_job() {
    let pool = pool(1, 8);
    let (reply, replies) = crossbeam_channel::unbounded();
    for request_id in 0..5 {
        let kind = AuthJobKind::HashPassword {
            password: "p".into(),
        };
        pool.try_submit(AuthJob {
            request_id,
            reply: reply.clone(),
            kind,
        })
        .unwrap();
    }
    pool.shutdown_and_join();
    assert_eq!(replies.try_iter().count(), 5);
}

#[test]
fn ticket_jobs_overtake_a_queue_of_password_hashes() {
    // One worker, a queue of expensive hashes, then a ticket: the ticket is
    // answered before most of the hashes (ordering only, no timing).
    let heavy = PasswordParams {
        m_cost_kib: 4096,
        t_cost: 2,
        p_cost: 1,
    };
    let signer = TicketSigner::new(SigningKey::from_bytes(&[5; 32]));
    let mut verifier = TicketVerifier::new();
    verifier.trust_session_key(signer.verifying_key());
    let pool = AuthPool::start(1, 64, heavy, signer, verifier).unwrap();
    let (reply, replies) = crossbeam_channel::unbounded();
    const HASHES: u64 = 8;
    for request_id in 0..HASHES {
        let job = AuthJob {
            request_id,
            reply: reply.clone(),
            kind: AuthJobKind::HashPassword {
                password: "a password".into(),
            },
        };
        pool.try_submit(job).unwrap();
    }
    let ticket = AuthJob {
        request_id: 100,
        reply,
        kind: AuthJobKind::IssueTicket {
            account_id: 1,
            name: "Ann".into(),
            now: 1000,
            lifetime: 60,
        },
    };
    pool.try_submit(ticket).unwrap();
    let order: Vec<u64> = (0..=HASHES)
        .map(|_| replies.recv_timeout(WAIT).expect("answered").request_id)
        .collect();
    let at = order.iter().position(|&id| id == 100).unwrap();
    // At most the hash the worker had already started (and, racing the
    // submission, one more) comes first.
    assert!(at <= 2, "the ticket waited behind the hashes: {order:?}");
}
