//! Standard test vectors for every primitive the connection layer uses, run
//! through the code paths the protocol uses:
//!
//! - X25519: RFC 7748 §5.2 (scalar × u-coordinate) and §6.1 (Alice and Bob),
//!   through `crypto::KeyPair` and through `x25519-dalek` directly.
//! - HKDF-SHA256: RFC 5869 test cases 1–3 (PRK and OKM), through `hkdf`.
//! - HMAC-SHA256: RFC 4231 test cases 1–7, through `hmac` + `sha2`.
//! - ChaCha20-Poly1305: RFC 8439 §2.8.2 through `ring` directly and through
//!   `crypto::PacketKey` (whose nonce is connection id u32 LE ‖ sequence
//!   u64 LE: the RFC nonce `07000000 4041424344454647` is connection id 7,
//!   sequence 0x4746454443424140), and `ring` cross-checked against the
//!   `chacha20poly1305` crate over a seeded corpus of keys, nonces, AADs and
//!   plaintexts of 0..=1300 bytes.
//! - The protocol's own derivations (key schedule, integrity table) against
//!   their documented formulas (docs/PROTOCOL.md §12 and §22), computed with
//!   the primitives above.

use chacha20poly1305::aead::{AeadInPlace, KeyInit};
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, Nonce, UnboundKey};
use sha2::Sha256;
use tos_protocol::crypto::{KeyPair, KeySet, PacketKey, packet_nonce};
use tos_protocol::integrity::{IntegrityTable, TABLE_LEN};

fn unhex(s: &str) -> Vec<u8> {
    let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    assert!(s.len() % 2 == 0, "odd hex length");
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex digit"))
        .collect()
}

fn unhex32(s: &str) -> [u8; 32] {
    unhex(s).try_into().expect("32 bytes")
}

// ------------------------------------------------------------------ X25519

/// RFC 7748 §5.2: (scalar, input u-coordinate, output u-coordinate).
const RFC7748_5_2: [(&str, &str, &str); 2] = [
    (
        "a546e36bf0527c9d3b16154b82465edd62144c0ac1fc5a18506a2244ba449ac4",
        "e6db6867583030db3594c1a424b15f7c726624ec26b3353b10a903a6d0ab1c4c",
        "c3da55379de9c6908e94ea4df28d084f32eccf03491c71f754b4075577a28552",
    ),
    (
        // The input u-coordinate has its top bit set: X25519 masks it.
        "4b66e9d4d1b4673c5ad22691957d6af5c11b6421e0ea01d42ca4169e7918ba0d",
        "e5210f12786811d3f4b7959d0538ae2c31dbe7106fc03c3efc4cd549c715a493",
        "95cbde9476e8907d7aade45cb4b873f88b595a68799fa152e6f8f7647aac7957",
    ),
];

const ALICE_PRIVATE: &str = "77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a";
const ALICE_PUBLIC: &str = "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a";
const BOB_PRIVATE: &str = "5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb";
const BOB_PUBLIC: &str = "de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f";
const SHARED: &str = "4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742";

#[test]
fn x25519_rfc7748_section_5_2_through_keypair() {
    for (i, (scalar, u, out)) in RFC7748_5_2.iter().enumerate() {
        let kp = KeyPair::from_secret(unhex32(scalar));
        assert_eq!(
            kp.agree(&unhex32(u)),
            Ok(unhex32(out)),
            "RFC 7748 §5.2 vector {}",
            i + 1
        );
    }
}

#[test]
fn x25519_rfc7748_section_5_2_through_dalek() {
    for (i, (scalar, u, out)) in RFC7748_5_2.iter().enumerate() {
        let got = x25519_dalek::x25519(unhex32(scalar), unhex32(u));
        assert_eq!(got, unhex32(out), "RFC 7748 §5.2 vector {}", i + 1);
    }
}

#[test]
fn x25519_rfc7748_iterated_once() {
    // §5.2: k = u = 9; after one iteration k is this value.
    let mut nine = [0u8; 32];
    nine[0] = 9;
    let once = x25519_dalek::x25519(nine, nine);
    assert_eq!(
        once,
        unhex32("422c8e7a6227d7bca1350b3e2bb7279f7897b87bb6854b783c60e80311ae3079")
    );
    assert_eq!(KeyPair::from_secret(nine).public(), once);
}

#[test]
fn x25519_rfc7748_section_6_1_through_keypair() {
    let alice = KeyPair::from_secret(unhex32(ALICE_PRIVATE));
    let bob = KeyPair::from_secret(unhex32(BOB_PRIVATE));
    assert_eq!(alice.public(), unhex32(ALICE_PUBLIC));
    assert_eq!(bob.public(), unhex32(BOB_PUBLIC));
    assert_eq!(alice.agree(&bob.public()), Ok(unhex32(SHARED)));
    assert_eq!(bob.agree(&alice.public()), Ok(unhex32(SHARED)));
}

#[test]
fn x25519_rfc7748_section_6_1_through_dalek() {
    let a = x25519_dalek::StaticSecret::from(unhex32(ALICE_PRIVATE));
    let b = x25519_dalek::StaticSecret::from(unhex32(BOB_PRIVATE));
    let a_pub = x25519_dalek::PublicKey::from(&a);
    let b_pub = x25519_dalek::PublicKey::from(&b);
    assert_eq!(a_pub.as_bytes(), &unhex32(ALICE_PUBLIC));
    assert_eq!(b_pub.as_bytes(), &unhex32(BOB_PUBLIC));
    assert_eq!(a.diffie_hellman(&b_pub).as_bytes(), &unhex32(SHARED));
    assert_eq!(b.diffie_hellman(&a_pub).as_bytes(), &unhex32(SHARED));
}

#[test]
fn x25519_low_order_points_are_refused_by_keypair() {
    // RFC 7748 §6.1: an all-zero output must be detected and refused. The
    // u-coordinates 0 and 1 are of low order; any scalar gives zero.
    let alice = KeyPair::from_secret(unhex32(ALICE_PRIVATE));
    let mut one = [0u8; 32];
    one[0] = 1;
    assert!(alice.agree(&[0u8; 32]).is_err());
    assert!(alice.agree(&one).is_err());
}

// -------------------------------------------------------------- HKDF-SHA256

struct HkdfCase {
    ikm: Vec<u8>,
    salt: Option<Vec<u8>>,
    info: Vec<u8>,
    prk: &'static str,
    okm: &'static str,
}

fn rfc5869_cases() -> Vec<HkdfCase> {
    vec![
        // A.1: basic test case with SHA-256.
        HkdfCase {
            ikm: vec![0x0b; 22],
            salt: Some((0x00..=0x0c).collect()),
            info: (0xf0..=0xf9).collect(),
            prk: "077709362c2e32df0ddc3f0dc47bba6390b6c73bb50f9c3122ec844ad7c2b3e5",
            okm: "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf\
                  34007208d5b887185865",
        },
        // A.2: longer inputs and outputs.
        HkdfCase {
            ikm: (0x00..=0x4f).collect(),
            salt: Some((0x60..=0xaf).collect()),
            info: (0xb0..=0xff).collect(),
            prk: "06a6b88c5853361a06104c9ceb35b45cef760014904671014a193f40c15fc244",
            okm: "b11e398dc80327a1c8e7f78c596a49344f012eda2d4efad8a050cc4c19afa97c\
                  59045a99cac7827271cb41c65e590e09da3275600c2f09b8367793a9aca3db71\
                  cc30c58179ec3e87c14c01d5c1f3434f1d87",
        },
        // A.3: zero-length salt and info.
        HkdfCase {
            ikm: vec![0x0b; 22],
            salt: Some(Vec::new()),
            info: Vec::new(),
            prk: "19ef24a32c717b167f33a91d6f648bdf96596776afdb6377ac434c1c293ccb04",
            okm: "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d\
                  9d201395faa4b61a96c8",
        },
    ]
}

#[test]
fn hkdf_sha256_rfc5869_test_cases_1_to_3() {
    for (i, case) in rfc5869_cases().iter().enumerate() {
        let (prk, hk) = Hkdf::<Sha256>::extract(case.salt.as_deref(), &case.ikm);
        assert_eq!(
            prk.as_slice(),
            &unhex(case.prk)[..],
            "test case {} PRK",
            i + 1
        );
        let expected = unhex(case.okm);
        let mut okm = vec![0u8; expected.len()];
        hk.expand(&case.info, &mut okm).unwrap();
        assert_eq!(okm, expected, "test case {} OKM", i + 1);
        // Expanding from the PRK alone gives the same.
        let from_prk = Hkdf::<Sha256>::from_prk(&prk).unwrap();
        let mut again = vec![0u8; expected.len()];
        from_prk.expand(&case.info, &mut again).unwrap();
        assert_eq!(again, expected, "test case {} OKM from PRK", i + 1);
    }
    // An absent salt is a salt of HashLen zeros (RFC 5869 §2.2), the same
    // as the empty salt of test case 3.
    let (prk, _) = Hkdf::<Sha256>::extract(None, &[0x0b; 22]);
    assert_eq!(
        prk.as_slice(),
        &unhex("19ef24a32c717b167f33a91d6f648bdf96596776afdb6377ac434c1c293ccb04")[..]
    );
}

// ------------------------------------------------------------- HMAC-SHA256

fn hmac_sha256(key: &[u8], data: &[u8]) -> [u8; 32] {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).unwrap();
    mac.update(data);
    mac.finalize().into_bytes().into()
}

#[test]
fn hmac_sha256_rfc4231_test_cases() {
    let key4: Vec<u8> = (0x01..=0x19).collect();
    let cases: [(&str, Vec<u8>, Vec<u8>, &str); 6] = [
        (
            "test case 1",
            vec![0x0b; 20],
            b"Hi There".to_vec(),
            "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7",
        ),
        (
            "test case 2 (key shorter than the output)",
            b"Jefe".to_vec(),
            b"what do ya want for nothing?".to_vec(),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
        ),
        (
            "test case 3 (50 bytes of 0xdd)",
            vec![0xaa; 20],
            vec![0xdd; 50],
            "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe",
        ),
        (
            "test case 4 (25-byte key, 50 bytes of 0xcd)",
            key4,
            vec![0xcd; 50],
            "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b",
        ),
        (
            "test case 6 (131-byte key, hashed first)",
            vec![0xaa; 131],
            b"Test Using Larger Than Block-Size Key - Hash Key First".to_vec(),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54",
        ),
        (
            "test case 7 (131-byte key and long data)",
            vec![0xaa; 131],
            b"This is a test using a larger than block-size key and a larger than \
              block-size data. The key needs to be hashed before being used by the \
              HMAC algorithm."
                .to_vec(),
            "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2",
        ),
    ];
    for (name, key, data, expected) in &cases {
        assert_eq!(hmac_sha256(key, data).to_vec(), unhex(expected), "{name}");
        // Fed in pieces (as the cookie and integrity MACs are), the same.
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).unwrap();
        let (a, b) = data.split_at(data.len() / 2);
        mac.update(a);
        mac.update(b);
        assert!(mac.verify_slice(&unhex(expected)).is_ok(), "{name} verify");
    }
}

#[test]
fn hmac_sha256_rfc4231_test_case_5_truncated_to_128_bits() {
    let full = hmac_sha256(&[0x0c; 20], b"Test With Truncation");
    assert_eq!(&full[..16], &unhex("a3b6167473100ee06e0c796c2955552b")[..]);
}

// ------------------------------------------------------- ChaCha20-Poly1305

const RFC8439_KEY: &str = "808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f";
const RFC8439_NONCE: &str = "070000004041424344454647";
const RFC8439_AAD: &str = "50515253c0c1c2c3c4c5c6c7";
const RFC8439_PLAINTEXT: &[u8] = b"Ladies and Gentlemen of the class of '99: If I could offer you \
only one tip for the future, sunscreen would be it.";
const RFC8439_CIPHERTEXT: &str = "
    d31a8d34648e60db7b86afbc53ef7ec2 a4aded51296e08fea9e2b5a736ee62d6
    3dbea45e8ca9671282fafb69da92728b 1a71de0a9e060b2905d6a5b67ecd3b36
    92ddbd7f2d778b8c9803aee328091b58 fab324e4fad675945585808b4831d7bc
    3ff4def08e4b7a9de576d26586cec64b 6116";
const RFC8439_TAG: &str = "1ae10b594f09e26a7e902ecbd0600691";

/// The RFC nonce as the protocol's (connection id, sequence).
const RFC8439_CONNECTION_ID: u32 = 7;
const RFC8439_SEQUENCE: u64 = 0x4746_4544_4342_4140;

fn ring_key(key: &[u8]) -> LessSafeKey {
    LessSafeKey::new(UnboundKey::new(&CHACHA20_POLY1305, key).unwrap())
}

#[test]
fn chacha20_poly1305_rfc8439_through_ring() {
    assert_eq!(RFC8439_PLAINTEXT.len(), 114);
    let key = ring_key(&unhex(RFC8439_KEY));
    let nonce: [u8; 12] = unhex(RFC8439_NONCE).try_into().unwrap();
    let aad = unhex(RFC8439_AAD);
    let mut buf = RFC8439_PLAINTEXT.to_vec();
    let tag = key
        .seal_in_place_separate_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(&aad[..]),
            &mut buf,
        )
        .unwrap();
    assert_eq!(buf, unhex(RFC8439_CIPHERTEXT));
    assert_eq!(tag.as_ref(), &unhex(RFC8439_TAG)[..]);
    buf.extend_from_slice(tag.as_ref());
    let opened = key
        .open_in_place(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(&aad[..]),
            &mut buf,
        )
        .unwrap();
    assert_eq!(opened, RFC8439_PLAINTEXT);
}

#[test]
fn chacha20_poly1305_rfc8439_through_the_chacha20poly1305_crate() {
    let cipher = chacha20poly1305::ChaCha20Poly1305::new_from_slice(&unhex(RFC8439_KEY)).unwrap();
    let nonce = unhex(RFC8439_NONCE);
    let aad = unhex(RFC8439_AAD);
    let mut buf = RFC8439_PLAINTEXT.to_vec();
    let tag = cipher
        .encrypt_in_place_detached(nonce[..].into(), &aad, &mut buf)
        .unwrap();
    assert_eq!(buf, unhex(RFC8439_CIPHERTEXT));
    assert_eq!(tag.as_slice(), &unhex(RFC8439_TAG)[..]);
    cipher
        .decrypt_in_place_detached(nonce[..].into(), &aad, &mut buf, &tag)
        .unwrap();
    assert_eq!(buf, RFC8439_PLAINTEXT);
}

#[test]
fn chacha20_poly1305_rfc8439_through_packet_key() {
    // The protocol's nonce layout expresses the RFC nonce exactly.
    assert_eq!(
        packet_nonce(RFC8439_CONNECTION_ID, RFC8439_SEQUENCE).to_vec(),
        unhex(RFC8439_NONCE)
    );
    let key = PacketKey::new(&unhex32(RFC8439_KEY));
    let aad = unhex(RFC8439_AAD);
    let mut buf = RFC8439_PLAINTEXT.to_vec();
    let tag = key.seal(RFC8439_CONNECTION_ID, RFC8439_SEQUENCE, &aad, &mut buf);
    assert_eq!(buf, unhex(RFC8439_CIPHERTEXT));
    assert_eq!(tag.to_vec(), unhex(RFC8439_TAG));

    let mut sealed = unhex(RFC8439_CIPHERTEXT);
    sealed.extend_from_slice(&unhex(RFC8439_TAG));
    let mut copy = sealed.clone();
    let n = key
        .open(RFC8439_CONNECTION_ID, RFC8439_SEQUENCE, &aad, &mut copy)
        .unwrap();
    assert_eq!(&copy[..n], RFC8439_PLAINTEXT);

    // Another connection id, sequence or AAD, or any flipped bit, refuses.
    let mut copy = sealed.clone();
    assert!(
        key.open(RFC8439_CONNECTION_ID + 1, RFC8439_SEQUENCE, &aad, &mut copy)
            .is_err()
    );
    let mut copy = sealed.clone();
    assert!(
        key.open(RFC8439_CONNECTION_ID, RFC8439_SEQUENCE + 1, &aad, &mut copy)
            .is_err()
    );
    let mut copy = sealed.clone();
    assert!(
        key.open(
            RFC8439_CONNECTION_ID,
            RFC8439_SEQUENCE,
            &aad[1..],
            &mut copy
        )
        .is_err()
    );
    for i in 0..sealed.len() {
        let mut bad = sealed.clone();
        bad[i] ^= 0x01;
        assert!(
            key.open(RFC8439_CONNECTION_ID, RFC8439_SEQUENCE, &aad, &mut bad)
                .is_err(),
            "flipped byte {i}"
        );
    }
}

/// SplitMix64: a seeded corpus that is the same on every run.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(tos_protocol::rng::GOLDEN_GAMMA);
        tos_protocol::rng::mix64(self.0)
    }

    fn fill(&mut self, out: &mut [u8]) {
        for b in out {
            *b = self.next() as u8;
        }
    }
}

#[test]
fn ring_and_the_chacha20poly1305_crate_agree_and_open_each_other() {
    let mut rng = SplitMix(0x7105_c4a1_a2c5_2026);
    let mut checked = 0;
    for len in 0..=1300usize {
        let mut key = [0u8; 32];
        let mut nonce = [0u8; 12];
        rng.fill(&mut key);
        rng.fill(&mut nonce);
        let mut aad = vec![0u8; (rng.next() % 65) as usize];
        rng.fill(&mut aad);
        let mut plain = vec![0u8; len];
        rng.fill(&mut plain);

        let ring = ring_key(&key);
        let rc = chacha20poly1305::ChaCha20Poly1305::new_from_slice(&key).unwrap();

        let mut by_ring = plain.clone();
        let ring_tag = ring
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(&aad[..]),
                &mut by_ring,
            )
            .unwrap();
        by_ring.extend_from_slice(ring_tag.as_ref());

        let mut by_rc = plain.clone();
        let rc_tag = rc
            .encrypt_in_place_detached(nonce[..].into(), &aad, &mut by_rc)
            .unwrap();
        by_rc.extend_from_slice(&rc_tag);

        assert_eq!(by_ring, by_rc, "ciphertext and tag differ at length {len}");

        // ring opens the crate's output.
        let mut buf = by_rc.clone();
        let opened = ring
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(&aad[..]),
                &mut buf,
            )
            .unwrap();
        assert_eq!(opened, &plain[..], "ring opening the crate's, length {len}");

        // The crate opens ring's output.
        let mut buf = by_ring[..len].to_vec();
        let tag = chacha20poly1305::Tag::clone_from_slice(&by_ring[len..]);
        rc.decrypt_in_place_detached(nonce[..].into(), &aad, &mut buf, &tag)
            .unwrap();
        assert_eq!(buf, plain, "the crate opening ring's, length {len}");

        // Both refuse a flipped bit (one position per case, spread around).
        let pos = (rng.next() % by_ring.len() as u64) as usize;
        let mut bad = by_ring.clone();
        bad[pos] ^= 1 << (rng.next() % 8);
        let mut for_ring = bad.clone();
        assert!(
            ring.open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(&aad[..]),
                &mut for_ring,
            )
            .is_err(),
            "ring accepted a tampered packet, length {len}"
        );
        let mut for_rc = bad[..len].to_vec();
        let bad_tag = chacha20poly1305::Tag::clone_from_slice(&bad[len..]);
        assert!(
            rc.decrypt_in_place_detached(nonce[..].into(), &aad, &mut for_rc, &bad_tag)
                .is_err(),
            "the crate accepted a tampered packet, length {len}"
        );

        // And the protocol's PacketKey, with the nonce split into
        // (connection id, sequence), gives the same bytes.
        let cid = u32::from_le_bytes(nonce[..4].try_into().unwrap());
        let seq = u64::from_le_bytes(nonce[4..].try_into().unwrap());
        let pk = PacketKey::new(&key);
        let mut by_pk = plain.clone();
        let pk_tag = pk.seal(cid, seq, &aad, &mut by_pk);
        by_pk.extend_from_slice(&pk_tag);
        assert_eq!(by_pk, by_ring, "PacketKey differs at length {len}");
        checked += 1;
    }
    assert_eq!(checked, 1301);
}

// ------------------------------------------- the protocol's own derivations

fn hkdf_expand(prk: &[u8], info: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    Hkdf::<Sha256>::from_prk(prk)
        .unwrap()
        .expand(info, &mut out)
        .unwrap();
    out
}

/// `KeySet::handshake` is the documented schedule: secret =
/// HKDF-Extract(salt = client nonce ‖ server nonce, ikm = ee ‖ es), keys =
/// HKDF-Expand(secret, "tos v1 c2s" / "tos v1 s2c" / "tos v1 chain", 32).
#[test]
fn key_schedule_is_the_documented_hkdf() {
    let mut rng = SplitMix(0x5eed);
    for _ in 0..16 {
        let mut ee = [0u8; 32];
        let mut es = [0u8; 32];
        let mut cn = [0u8; 16];
        let mut sn = [0u8; 16];
        rng.fill(&mut ee);
        rng.fill(&mut es);
        rng.fill(&mut cn);
        rng.fill(&mut sn);
        let set = KeySet::handshake(&ee, &es, &cn, &sn);

        let salt = [&cn[..], &sn[..]].concat();
        let ikm = [&ee[..], &es[..]].concat();
        let (prk, _) = Hkdf::<Sha256>::extract(Some(&salt), &ikm);
        let c2s = hkdf_expand(&prk, b"tos v1 c2s");
        let s2c = hkdf_expand(&prk, b"tos v1 s2c");
        let chain = hkdf_expand(&prk, b"tos v1 chain");
        assert_eq!(set.chain, chain);

        // The packet keys are opaque: compare what they seal.
        for (pk, raw) in [(&set.client_to_server, c2s), (&set.server_to_client, s2c)] {
            let mut a = *b"0123456789abcdef";
            let tag = pk.seal(0x0102_0304, 9, b"header bytes..", &mut a);
            let mut b = *b"0123456789abcdef";
            let tag2 = ring_key(&raw)
                .seal_in_place_separate_tag(
                    Nonce::assume_unique_for_key(packet_nonce(0x0102_0304, 9)),
                    Aad::from(&b"header bytes.."[..]),
                    &mut b,
                )
                .unwrap();
            assert_eq!(a, b);
            assert_eq!(&tag[..], tag2.as_ref());
        }

        // A rekey is the same derivation with the previous chain secret in
        // place of es and the two rekey nonces as the salt.
        let next = KeySet::rekey(&ee, &chain, &sn, &cn);
        let salt = [&sn[..], &cn[..]].concat();
        let ikm = [&ee[..], &chain[..]].concat();
        let (prk, _) = Hkdf::<Sha256>::extract(Some(&salt), &ikm);
        assert_eq!(next.chain, hkdf_expand(&prk, b"tos v1 chain"));
    }
}

/// `IntegrityTable::generate` is the documented formula:
/// entry[i] = HMAC-SHA256(secret, "tos integrity" ‖ version u16 LE ‖ i u16 LE)[..16].
#[test]
fn integrity_table_is_the_documented_hmac() {
    let secret = [0x5c; 32];
    for version in [0u16, 1, 0x0203] {
        let table = IntegrityTable::generate(&secret, version);
        for i in 0..TABLE_LEN {
            let msg = [
                &b"tos integrity"[..],
                &version.to_le_bytes(),
                &i.to_le_bytes(),
            ]
            .concat();
            let full = hmac_sha256(&secret, &msg);
            assert_eq!(table.entry(i), Some(full[..16].try_into().unwrap()));
        }
        assert_eq!(table.entry(TABLE_LEN), None);
    }
}
