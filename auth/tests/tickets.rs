//! Tickets: round trip, every error kind, tampering, truncation, arbitrary
//! bytes, keys, and the vector in docs/ACCOUNTS.md.

use proptest::prelude::*;
use tos_auth::ticket::{MAGIC, to_hex};
use tos_auth::{
    MAX_TICKET_LEN, SigningKey, Ticket, TicketClaims, TicketError, TicketKind, TicketSigner,
    TicketVerifier, encode_ticket, key_id, load_or_create_signing_key, parse_public_key_hex,
    parse_public_keys_hex,
};

const NOW: u64 = 1_767_225_600;

fn key(byte: u8) -> SigningKey {
    SigningKey::from_bytes(&[byte; 32])
}

fn setup() -> (TicketSigner, SigningKey, TicketVerifier) {
    let signer = TicketSigner::new(key(1));
    let studio = key(2);
    let mut verifier = TicketVerifier::new();
    verifier
        .trust_session_key(signer.verifying_key())
        .trust_external_key(studio.verifying_key());
    (signer, studio, verifier)
}

fn external(name: &str) -> TicketClaims {
    TicketClaims {
        kind: TicketKind::External,
        account_id: 0,
        account_name: name.into(),
        issued_at: NOW,
        expires_at: NOW + 300,
    }
}

#[test]
fn session_and_external_round_trip() {
    let (signer, studio, verifier) = setup();
    let bytes = signer.issue_session(42, "Aria", NOW, 86_400).unwrap();
    assert!(bytes.len() <= MAX_TICKET_LEN);
    let claims = verifier.verify(&bytes, NOW + 10).unwrap();
    assert_eq!(
        claims,
        TicketClaims {
            kind: TicketKind::Session,
            account_id: 42,
            account_name: "Aria".into(),
            issued_at: NOW,
            expires_at: NOW + 86_400,
        }
    );
    // Random nonces: two tickets for the same claims differ.
    assert_ne!(
        bytes,
        signer.issue_session(42, "Aria", NOW, 86_400).unwrap()
    );

    let name = "ñame-with-ütf8-and-32-bytes-xx";
    assert_eq!(name.len(), 32);
    let bytes = encode_ticket(&studio, &external(name), [9; 8]).unwrap();
    assert_eq!(bytes.len(), MAX_TICKET_LEN);
    assert_eq!(verifier.verify(&bytes, NOW).unwrap(), external(name));
    let view = Ticket::parse(&bytes).unwrap();
    assert_eq!(view.nonce(), [9; 8]);
    assert_eq!(view.key_id(), key_id(&studio.verifying_key()));
    assert_eq!(
        verifier.verify_kind(&bytes, NOW, TicketKind::Session),
        Err(TicketError::WrongKind)
    );
    assert!(
        verifier
            .verify_kind(&bytes, NOW, TicketKind::External)
            .is_ok()
    );
}

#[test]
fn every_error_kind() {
    let (signer, studio, verifier) = setup();
    let ticket = signer.issue_session(7, "Bo", NOW, 100).unwrap();

    // Expired / not yet valid, with 60 s of skew on each end.
    assert!(verifier.verify(&ticket, NOW + 100 + 59).is_ok());
    assert_eq!(
        verifier.verify(&ticket, NOW + 160),
        Err(TicketError::Expired)
    );
    assert!(verifier.verify(&ticket, NOW - 60).is_ok());
    assert_eq!(
        verifier.verify(&ticket, NOW - 61),
        Err(TicketError::NotYetValid)
    );

    // Unknown key.
    let stranger = TicketSigner::new(key(3));
    let foreign = stranger.issue_session(7, "Bo", NOW, 100).unwrap();
    assert_eq!(verifier.verify(&foreign, NOW), Err(TicketError::UnknownKey));

    // A studio key signing a session ticket (claiming a local account id).
    let forged = TicketClaims {
        kind: TicketKind::Session,
        account_id: 1,
        ..external("admin")
    };
    let forged = encode_ticket(&studio, &forged, [0; 8]).unwrap();
    assert_eq!(verifier.verify(&forged, NOW), Err(TicketError::WrongKind));
    // Our session key signing an external ticket.
    let ours = encode_ticket(&key(1), &external("x"), [0; 8]).unwrap();
    assert_eq!(verifier.verify(&ours, NOW), Err(TicketError::WrongKind));

    // Bad signature: flip a bit of the signature, or of a signed field.
    let mut bad = ticket.clone();
    *bad.last_mut().unwrap() ^= 1;
    assert_eq!(verifier.verify(&bad, NOW), Err(TicketError::BadSignature));
    let mut bad = ticket.clone();
    bad[14] ^= 1; // account id 7 -> 6
    assert_eq!(verifier.verify(&bad, NOW), Err(TicketError::BadSignature));

    // Malformed.
    let mut bad = ticket.clone();
    bad.push(0);
    assert_eq!(verifier.verify(&bad, NOW), Err(TicketError::Malformed));
    assert_eq!(verifier.verify(&[], NOW), Err(TicketError::Malformed));
    assert_eq!(verifier.verify(&[0; 256], NOW), Err(TicketError::Malformed));

    // Claims that cannot be encoded.
    assert_eq!(
        signer.issue_session(1, "", NOW, 10),
        Err(TicketError::Malformed)
    );
    assert_eq!(
        signer.issue_session(1, &"x".repeat(33), NOW, 10),
        Err(TicketError::Malformed)
    );
    assert_eq!(
        signer.issue_session(1, "x", NOW, 0),
        Err(TicketError::Malformed)
    );
    let with_id = TicketClaims {
        account_id: 5,
        ..external("x")
    };
    assert_eq!(
        encode_ticket(&studio, &with_id, [0; 8]),
        Err(TicketError::Malformed)
    );
}

#[test]
fn tampering_with_any_byte_is_refused() {
    let (signer, _, verifier) = setup();
    let ticket = signer.issue_session(99, "Tamper", NOW, 3600).unwrap();
    for at in 0..ticket.len() {
        for flip in [0x01u8, 0x80, 0xff] {
            let mut bad = ticket.clone();
            bad[at] ^= flip;
            assert!(verifier.verify(&bad, NOW).is_err(), "byte {at} ^ {flip:#x}");
        }
    }
}

#[test]
fn truncation_at_every_length_is_malformed() {
    let (signer, _, verifier) = setup();
    let ticket = signer.issue_session(99, "Truncated", NOW, 3600).unwrap();
    for len in 0..ticket.len() {
        assert_eq!(
            verifier.verify(&ticket[..len], NOW),
            Err(TicketError::Malformed),
            "length {len}"
        );
        assert!(Ticket::parse(&ticket[..len]).is_err());
    }
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let (_, _, verifier) = setup();
        let _ = verifier.verify(&bytes, NOW);
        let _ = Ticket::parse(&bytes).map(|t| t.claims());
    }

    #[test]
    fn plausible_headers_never_panic_or_verify(
        tail in proptest::collection::vec(any::<u8>(), 0..200),
        kind in 0u8..4,
        name_len in any::<u8>(),
    ) {
        let (signer, _, verifier) = setup();
        let mut bytes = MAGIC.to_vec();
        bytes.extend_from_slice(&[1, kind]);
        bytes.extend_from_slice(&key_id(&signer.verifying_key()));
        bytes.extend_from_slice(&tail);
        if bytes.len() > 46 {
            bytes[46] = name_len;
        }
        prop_assert!(verifier.verify(&bytes, NOW).is_err());
    }
}

#[test]
fn keys_load_or_create_with_private_mode() {
    let dir = std::env::temp_dir().join(format!("tos-auth-keys-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("ticket.key");
    let _ = std::fs::remove_file(&path);
    let first = load_or_create_signing_key(&path).unwrap();
    let again = load_or_create_signing_key(&path).unwrap();
    assert_eq!(first.to_bytes(), again.to_bytes());
    assert_eq!(std::fs::read(&path).unwrap().len(), 32);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    std::fs::write(&path, [0u8; 31]).unwrap();
    assert!(load_or_create_signing_key(&path).is_err());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn public_keys_parse_from_hex() {
    let public = key(2).verifying_key();
    let hex = to_hex(public.as_bytes());
    assert_eq!(parse_public_key_hex(&hex), Some(public));
    assert_eq!(parse_public_key_hex(&hex.to_uppercase()), Some(public));
    assert_eq!(parse_public_key_hex(&hex[..63]), None);
    assert_eq!(parse_public_key_hex(&format!("{}zz", &hex[..62])), None);
    assert_eq!(parse_public_key_hex(&"é".repeat(32)), None);
    let keys = parse_public_keys_hex(&[hex.clone(), hex.clone()]).unwrap();
    assert_eq!(keys.len(), 2);
    let error = parse_public_keys_hex(&[hex, "nope".into()]).unwrap_err();
    assert!(error.to_string().contains("[1]"), "{error}");
}

/// The value after `label:` in the doc's vector block.
fn field<'a>(block: &'a str, label: &str) -> &'a str {
    block
        .lines()
        .find_map(|line| line.strip_prefix(label)?.strip_prefix(':'))
        .unwrap_or_else(|| panic!("docs/ACCOUNTS.md vector has no `{label}:`"))
        .trim()
}

fn unhex(text: &str) -> Vec<u8> {
    let text: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

#[test]
fn the_documented_vector_matches() {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/ACCOUNTS.md"))
        .unwrap();
    let section = doc
        .split("### Test vector")
        .nth(1)
        .expect("Test vector section");
    let block = section
        .split("```text")
        .nth(1)
        .unwrap()
        .split("```")
        .next()
        .unwrap();

    let seed: [u8; 32] = unhex(field(block, "seed")).try_into().unwrap();
    let key = SigningKey::from_bytes(&seed);
    assert_eq!(
        to_hex(key.verifying_key().as_bytes()),
        field(block, "public key")
    );
    assert_eq!(
        to_hex(&key_id(&key.verifying_key())),
        field(block, "key_id")
    );
    let claims = TicketClaims {
        kind: TicketKind::from_byte(field(block, "kind")[..1].parse().unwrap()).unwrap(),
        account_id: field(block, "account_id").parse().unwrap(),
        account_name: field(block, "name").into(),
        issued_at: field(block, "issued_at").parse().unwrap(),
        expires_at: field(block, "expires_at").parse().unwrap(),
    };
    let nonce: [u8; 8] = unhex(field(block, "nonce")).try_into().unwrap();
    let expected = unhex(block.split("ticket:").nth(1).unwrap());
    assert_eq!(expected.len(), 115);
    assert_eq!(encode_ticket(&key, &claims, nonce).unwrap(), expected);

    let mut verifier = TicketVerifier::new();
    verifier.trust_session_key(key.verifying_key());
    assert_eq!(
        verifier.verify(&expected, claims.issued_at).unwrap(),
        claims
    );
}
