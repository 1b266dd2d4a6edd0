//! The C ABI under bad use — null pointers, made-up and freed handles,
//! calls after close, buffers too small, bad keys and addresses, a server
//! that does not hold the pinned key — returns error codes with a message,
//! and never crashes. The calls are the `extern "C"` functions themselves.

mod common;

use std::ffi::{CStr, CString, c_char};
use std::ptr::{null, null_mut};
use std::time::{Duration, Instant};

use tos_client::ffi::*;

fn last_error() -> String {
    // SAFETY: the library returns a valid NUL-terminated string.
    unsafe { CStr::from_ptr(tos_last_error()) }
        .to_string_lossy()
        .into_owned()
}

/// An event buffer entry before the library fills it.
fn blank_event() -> TosEvent {
    TosEvent {
        kind: TosEventKind::Connected,
        tick: 0,
        input_seq: 0,
        code: 0,
        request: 0,
        reserved: 0,
        id: 0,
        expires_at: 0,
        entity: TosEntity::default(),
        position: [0.0; 3],
        velocity: [0.0; 3],
        predicted: [0.0; 3],
        source: 0,
        target: 0,
        amount: 0.0,
        reserved2: 0,
    }
}

fn params(
    addr: &CString,
    key: &[u8; 32],
    account: &CString,
    password: &CString,
) -> TosConnectParams {
    TosConnectParams {
        server_addr: addr.as_ptr(),
        server_key: key.as_ptr(),
        account: account.as_ptr(),
        password: password.as_ptr(),
        character_name: null(),
        character_template: 0,
        register_account: 1,
        choose_character: 0,
        ticket: null(),
        ticket_len: 0,
        integrity_table: null(),
        integrity_version: 0,
        tick_hz: 0,
        handshake_timeout_ms: 0,
    }
}

#[test]
fn null_and_made_up_handles_are_errors() {
    let mut events = [blank_event(); 4];
    let mut n = 0usize;
    let p = [0f32; 3];
    let mut e = TosEntity::default();
    let mut s = TosStats::default();
    let mut t = 0f64;
    let mut len = 0usize;
    // A pointer that was never a client: rejected before any dereference.
    let fake = 0x1000 as *mut TosClient;
    for h in [null_mut(), fake] {
        let want = if h.is_null() {
            TosResult::NullPointer
        } else {
            TosResult::BadHandle
        };
        // SAFETY: the library checks the handle before using it.
        unsafe {
            assert_eq!(tos_client_poll(h, events.as_mut_ptr(), 4, &mut n), want);
            assert_eq!(
                tos_client_move(h, p.as_ptr(), p.as_ptr(), 0.0, 1, 0.016, null_mut()),
                want
            );
            assert_eq!(tos_client_action(h, 1, 0, null_mut()), want);
            assert_eq!(tos_client_ticket(h, null_mut(), 0, &mut len), want);
            assert_eq!(tos_client_sample_entity(h, 1, 3.0, &mut e), want);
            assert_eq!(tos_client_server_tick(h, &mut t), want);
            assert_eq!(tos_client_stats(h, &mut s), want);
            assert_eq!(tos_client_pickup(h, 1, null_mut()), want);
            assert_eq!(tos_client_use_item(h, 0), want);
            assert_eq!(tos_client_equip(h, 0, 0), want);
            assert_eq!(tos_client_unequip(h, 0), want);
            assert_eq!(tos_client_chat(h, 0, null(), c"hi".as_ptr()), want);
            let mut inv = TosInventory::default();
            assert_eq!(tos_client_inventory(h, &mut inv, null_mut(), 0), want);
            let mut cs = TosCharacterStats::default();
            assert_eq!(tos_client_character_stats(h, &mut cs), want);
            let mut line = TosChatLine {
                channel: 0,
                from: [0; 33],
                text: [0; 201],
            };
            assert_eq!(tos_client_poll_chat(h, &mut line), want);
            assert_eq!(tos_client_inspect(h, 1), want);
            let mut d = TosEntityDetails {
                entity_type: 0,
                template: 0,
                level: 0,
                count: 0,
                name: [0; 33],
            };
            assert_eq!(tos_client_entity_details(h, 1, &mut d), want);
            assert_eq!(tos_client_close(h), want);
            tos_client_free(h); // ignored
        }
        assert!(!last_error().is_empty());
    }
}

#[test]
fn bad_connect_arguments_are_errors() {
    let addr = CString::new("127.0.0.1:1").unwrap();
    let account = CString::new("someone").unwrap();
    let password = CString::new("secret words").unwrap();
    let key = [9u8; 32];
    let mut out: *mut TosClient = null_mut();
    // SAFETY: every pointer is valid or null, as the ABI allows.
    unsafe {
        assert_eq!(tos_client_connect(null(), &mut out), TosResult::NullPointer);
        let p = params(&addr, &key, &account, &password);
        assert_eq!(tos_client_connect(&p, null_mut()), TosResult::NullPointer);
        let mut p2 = p;
        p2.server_addr = null();
        assert_eq!(tos_client_connect(&p2, &mut out), TosResult::NullPointer);
        let mut p3 = p;
        p3.server_key = null();
        assert_eq!(tos_client_connect(&p3, &mut out), TosResult::NullPointer);
        let bad = CString::new("not an address").unwrap();
        let mut p4 = p;
        p4.server_addr = bad.as_ptr();
        assert_eq!(
            tos_client_connect(&p4, &mut out),
            TosResult::InvalidArgument
        );
        assert!(last_error().contains("not an address"), "{}", last_error());
        let mut p5 = p;
        p5.account = null();
        assert_eq!(
            tos_client_connect(&p5, &mut out),
            TosResult::InvalidArgument
        );
        let invalid_utf8 = [0xffu8, 0xfe, 0];
        let mut p6 = p;
        p6.password = invalid_utf8.as_ptr().cast::<c_char>();
        assert_eq!(
            tos_client_connect(&p6, &mut out),
            TosResult::InvalidArgument
        );
        let mut p7 = p;
        p7.ticket = key.as_ptr();
        p7.ticket_len = 1 << 20;
        assert_eq!(
            tos_client_connect(&p7, &mut out),
            TosResult::InvalidArgument
        );
    }
    assert!(out.is_null(), "no handle on failure");
}

#[test]
fn key_parsing_and_error_copies() {
    let mut key = [0u8; 32];
    let good = CString::new("ab".repeat(32)).unwrap();
    // SAFETY: valid strings and a 32-byte output.
    unsafe {
        assert_eq!(
            tos_parse_key_hex(good.as_ptr(), key.as_mut_ptr()),
            TosResult::Ok
        );
        assert_eq!(key, [0xab; 32]);
        for bad in [
            "ab".repeat(31),
            "zz".repeat(32),
            String::new(),
            "é".repeat(32),
        ] {
            let bad = CString::new(bad).unwrap();
            assert_eq!(
                tos_parse_key_hex(bad.as_ptr(), key.as_mut_ptr()),
                TosResult::InvalidArgument
            );
        }
        assert_eq!(
            tos_parse_key_hex(null(), key.as_mut_ptr()),
            TosResult::NullPointer
        );
        assert_eq!(
            tos_parse_key_hex(good.as_ptr(), null_mut()),
            TosResult::NullPointer
        );
        // A buffer too small for the message: truncated, NUL-terminated,
        // and the full length returned.
        let full = tos_last_error_copy(null_mut(), 0);
        assert!(full > 8);
        let mut small = [0x55 as c_char; 8];
        assert_eq!(tos_last_error_copy(small.as_mut_ptr(), small.len()), full);
        assert_eq!(small[7], 0);
        assert_eq!(
            CStr::from_ptr(small.as_ptr()).to_bytes(),
            &last_error().as_bytes()[..7]
        );
        assert!(!CStr::from_ptr(tos_version()).to_bytes().is_empty());
    }
}

/// Polls until `done` or `limit`; returns the events seen.
fn poll_until(
    c: *mut TosClient,
    limit: Duration,
    mut done: impl FnMut(&TosEvent) -> bool,
) -> (Vec<TosEvent>, TosResult) {
    let end = Instant::now() + limit;
    let mut all = Vec::new();
    let mut buf = [blank_event(); 32];
    while Instant::now() < end {
        let mut n = 0;
        // SAFETY: a live handle, a 32-event buffer.
        let r = unsafe { tos_client_poll(c, buf.as_mut_ptr(), buf.len(), &mut n) };
        all.extend_from_slice(&buf[..n]);
        if r != TosResult::Ok {
            return (all, r);
        }
        if buf[..n].iter().any(&mut done) {
            return (all, r);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    (all, TosResult::Ok)
}

#[test]
fn live_server_misuse() {
    let server = common::Server::start();
    let addr = CString::new(server.addr.clone()).unwrap();
    let account = CString::new("ffiuser").unwrap();
    let password = CString::new("correct horse battery").unwrap();
    let mut integrity = vec![0u8; TOS_INTEGRITY_TABLE_BYTES];
    let secret = server.integrity();
    // SAFETY: a 32-byte secret, a buffer of the size given.
    unsafe {
        assert_eq!(
            tos_integrity_table(secret.as_ptr(), 1, integrity.as_mut_ptr(), 100),
            TosResult::BufferTooSmall
        );
        assert_eq!(
            tos_integrity_table(null(), 1, integrity.as_mut_ptr(), integrity.len()),
            TosResult::NullPointer
        );
        assert_eq!(
            tos_integrity_table(secret.as_ptr(), 1, integrity.as_mut_ptr(), integrity.len()),
            TosResult::Ok
        );
    }

    // A key the server does not hold: the handshake cannot complete, the
    // session ends with a handshake timeout, never Connected.
    let wrong = [7u8; 32];
    let mut p = params(&addr, &wrong, &account, &password);
    p.integrity_table = integrity.as_ptr();
    p.handshake_timeout_ms = 1_500;
    let mut c: *mut TosClient = null_mut();
    // SAFETY: valid params.
    assert_eq!(unsafe { tos_client_connect(&p, &mut c) }, TosResult::Ok);
    let (events, r) = poll_until(c, Duration::from_secs(20), |_| false);
    assert_eq!(r, TosResult::Closed, "{events:?}");
    assert!(events.iter().all(|e| e.kind != TosEventKind::Connected));
    assert!(
        events
            .iter()
            .any(|e| e.kind == TosEventKind::Disconnected && e.code == 7),
        "a handshake timeout: {events:?}"
    );
    // SAFETY: a live handle, then freed once; later calls see a bad handle.
    unsafe {
        let seq_pos = [0f32; 3];
        assert_eq!(
            tos_client_move(
                c,
                seq_pos.as_ptr(),
                seq_pos.as_ptr(),
                0.0,
                0,
                0.0,
                null_mut()
            ),
            TosResult::Closed
        );
        tos_client_free(c);
        let mut n = 0;
        assert_eq!(
            tos_client_poll(c, null_mut(), 0, &mut n),
            TosResult::BadHandle
        );
        tos_client_free(c); // a double free is ignored
    }

    // The right key: log in, then a ticket buffer too small, claims before
    // entering, and calls after close.
    let key = server.key();
    let mut p = params(&addr, &key, &account, &password);
    p.integrity_table = integrity.as_ptr();
    let mut c: *mut TosClient = null_mut();
    // SAFETY: valid params.
    assert_eq!(unsafe { tos_client_connect(&p, &mut c) }, TosResult::Ok);
    let pos = [0f32; 3];
    // SAFETY: a live handle and two 3-float arrays.
    let r = unsafe { tos_client_move(c, pos.as_ptr(), pos.as_ptr(), 0.0, 0, 0.0, null_mut()) };
    assert_eq!(r, TosResult::NotInWorld);
    let (events, r) = poll_until(c, Duration::from_secs(20), |e| {
        e.kind == TosEventKind::EnteredWorld
    });
    assert_eq!(r, TosResult::Ok);
    assert!(
        events.iter().any(|e| e.kind == TosEventKind::EnteredWorld),
        "{events:?}\n{}",
        server.log()
    );
    // SAFETY: a live handle and buffers of the sizes given.
    unsafe {
        let mut len = 0usize;
        let mut small = [0u8; 4];
        assert_eq!(
            tos_client_ticket(c, small.as_mut_ptr(), small.len(), &mut len),
            TosResult::BufferTooSmall
        );
        assert!(len > small.len(), "the needed length is reported");
        let mut big = vec![0u8; len];
        let mut got = 0usize;
        assert_eq!(
            tos_client_ticket(c, big.as_mut_ptr(), big.len(), &mut got),
            TosResult::Ok
        );
        assert_eq!(got, len);
        assert_eq!(
            tos_client_ticket(c, null_mut(), 8, &mut got),
            TosResult::NullPointer
        );
        let nan = [f32::NAN, 0.0, 0.0];
        assert_eq!(
            tos_client_move(c, nan.as_ptr(), pos.as_ptr(), 0.0, 0, 0.016, null_mut()),
            TosResult::InvalidArgument
        );
        assert_eq!(
            tos_client_move(c, null(), pos.as_ptr(), 0.0, 0, 0.016, null_mut()),
            TosResult::NullPointer
        );
        assert_eq!(
            tos_client_sample_entity(c, u32::MAX, 3.0, null_mut()),
            TosResult::NullPointer
        );
        let mut e = TosEntity::default();
        assert_eq!(
            tos_client_sample_entity(c, u32::MAX - 1, 3.0, &mut e),
            TosResult::NotFound
        );
        // Gameplay calls with arguments the protocol cannot carry.
        assert_eq!(tos_client_equip(c, 0, 8), TosResult::InvalidArgument);
        assert_eq!(tos_client_unequip(c, 200), TosResult::InvalidArgument);
        assert_eq!(
            tos_client_chat(c, 3, null(), c"hi".as_ptr()),
            TosResult::InvalidArgument
        );
        assert_eq!(
            tos_client_chat(c, 2, null(), c"to whom?".as_ptr()),
            TosResult::InvalidArgument
        );
        assert_eq!(
            tos_client_chat(c, 0, null(), null()),
            TosResult::NullPointer
        );
        let long = CString::new("x".repeat(201)).unwrap();
        assert_eq!(
            tos_client_chat(c, 0, null(), long.as_ptr()),
            TosResult::InvalidArgument
        );
        let bad_utf8 = [0xffu8, 0xfe, 0];
        assert_eq!(
            tos_client_chat(c, 0, null(), bad_utf8.as_ptr().cast()),
            TosResult::InvalidArgument
        );
        let mut inv = TosInventory::default();
        assert_eq!(
            tos_client_inventory(c, &mut inv, null_mut(), 4),
            TosResult::NullPointer
        );
        let mut line = TosChatLine {
            channel: 0,
            from: [0; 33],
            text: [0; 201],
        };
        assert_eq!(tos_client_poll_chat(c, &mut line), TosResult::NotFound);
        let mut d = TosEntityDetails {
            entity_type: 0,
            template: 0,
            level: 0,
            count: 0,
            name: [0; 33],
        };
        assert_eq!(
            tos_client_entity_details(c, 12_345, &mut d),
            TosResult::NotFound
        );
        assert_eq!(
            tos_client_entity_details(c, 12_345, null_mut()),
            TosResult::NullPointer
        );

        assert_eq!(tos_client_close(c), TosResult::Ok);
        assert_eq!(tos_client_close(c), TosResult::Closed);
        assert_eq!(tos_client_action(c, 1, 0, null_mut()), TosResult::Closed);
        assert_eq!(tos_client_pickup(c, 1, null_mut()), TosResult::Closed);
        assert_eq!(
            tos_client_chat(c, 0, null(), c"bye".as_ptr()),
            TosResult::Closed
        );
        assert_eq!(
            tos_client_move(c, pos.as_ptr(), pos.as_ptr(), 0.0, 0, 0.016, null_mut()),
            TosResult::Closed
        );
        // Poll hands out what is left, then says closed.
        let (_, r) = poll_until(c, Duration::from_secs(5), |_| false);
        assert_eq!(r, TosResult::Closed);
        let mut stats = TosStats::default();
        assert_eq!(tos_client_stats(c, &mut stats), TosResult::Ok);
        tos_client_free(c);
        assert_eq!(tos_client_stats(c, &mut stats), TosResult::BadHandle);
    }
}

#[test]
fn choosing_a_character_through_the_c_abi() {
    let server = common::Server::start();
    let addr = CString::new(server.addr.clone()).unwrap();
    let account = CString::new("cchooser").unwrap();
    let password = CString::new("correct horse battery").unwrap();
    let key = server.key();
    let mut table = vec![0u8; TOS_INTEGRITY_TABLE_BYTES];
    let secret = server.integrity();
    let mut p = params(&addr, &key, &account, &password);
    p.integrity_table = table.as_ptr();
    p.choose_character = 1;
    let mut c: *mut TosClient = null_mut();
    // SAFETY: valid pointers and sizes throughout; the handle is freed once.
    unsafe {
        assert_eq!(
            tos_integrity_table(secret.as_ptr(), 1, table.as_mut_ptr(), table.len()),
            TosResult::Ok
        );
        assert_eq!(tos_client_connect(&p, &mut c), TosResult::Ok);
        assert_eq!(tos_client_enter_character(c, 1), TosResult::NotSelecting);
        let (events, _) = poll_until(c, Duration::from_secs(20), |e| {
            e.kind == TosEventKind::CharacterList
        });
        assert_eq!(
            events.last().map(|e| (e.kind, e.code)),
            Some((TosEventKind::CharacterList, 0))
        );
        let mut ch = core::mem::zeroed::<TosCharacter>();
        assert_eq!(tos_client_character(c, 0, &mut ch), TosResult::NotFound);
        assert_eq!(
            tos_client_character(c, 0, null_mut()),
            TosResult::NullPointer
        );
        let name = CString::new("Cchooser").unwrap();
        assert_eq!(
            tos_client_create_character(c, null(), 1, null(), 0),
            TosResult::NullPointer
        );
        assert_eq!(
            tos_client_create_character(c, name.as_ptr(), 1, key.as_ptr(), 1 << 20),
            TosResult::InvalidArgument
        );
        assert_eq!(
            tos_client_create_character(c, name.as_ptr(), 1, null(), 0),
            TosResult::Ok
        );
        let (events, _) = poll_until(c, Duration::from_secs(20), |e| {
            e.kind == TosEventKind::CharacterList
        });
        let list = events
            .iter()
            .rfind(|e| e.kind == TosEventKind::CharacterList);
        assert_eq!(list.map(|e| e.code), Some(1), "{events:?}");
        assert_eq!(tos_client_character(c, 0, &mut ch), TosResult::Ok);
        assert_eq!(
            CStr::from_ptr(ch.name.as_ptr().cast()).to_str(),
            Ok("Cchooser")
        );
        assert_eq!(
            tos_client_enter_character(c, ch.character_id),
            TosResult::Ok
        );
        let (events, _) = poll_until(c, Duration::from_secs(20), |e| {
            e.kind == TosEventKind::EnteredWorld
        });
        let entered = events.iter().find(|e| e.kind == TosEventKind::EnteredWorld);
        assert_eq!(entered.map(|e| e.id), Some(ch.character_id));
        tos_client_free(c);
    }
}

/// The C structs keep the layout the header, the C++ wrapper and the C#
/// binding were written against.
#[test]
fn struct_layouts_are_stable() {
    use core::mem::{align_of, offset_of, size_of};
    assert_eq!(size_of::<TosEntity>(), 60);
    assert_eq!(size_of::<TosEvent>(), 152);
    assert_eq!(offset_of!(TosEvent, source), 136);
    assert_eq!(size_of::<TosItem>(), 12);
    assert_eq!(size_of::<TosInventory>(), 48);
    assert_eq!(size_of::<TosCharacterStats>(), 72);
    assert_eq!(offset_of!(TosCharacterStats, exp), 8);
    assert_eq!(size_of::<TosChatLine>(), 240);
    assert_eq!(offset_of!(TosChatLine, text), 37);
    assert_eq!(size_of::<TosEntityDetails>(), 52);
    assert_eq!(align_of::<TosEvent>(), 8);
    assert_eq!(offset_of!(TosEvent, id), 24);
    assert_eq!(offset_of!(TosEvent, entity), 40);
    assert_eq!(offset_of!(TosEvent, position), 100);
    assert_eq!(size_of::<TosStats>(), 40);
    assert_eq!(size_of::<TosCharacter>(), 88);
    assert_eq!(offset_of!(TosCharacter, deleted_at), 64);
    if size_of::<usize>() == 8 {
        assert_eq!(size_of::<TosConnectParams>(), 88);
        assert_eq!(offset_of!(TosConnectParams, ticket), 48);
        assert_eq!(offset_of!(TosConnectParams, integrity_table), 64);
        assert_eq!(offset_of!(TosConnectParams, tick_hz), 76);
    }
}

/// The numbers the C# binding enumerates by hand (zone transfer's events
/// and result were added last).
#[test]
fn zone_transfer_numbers_are_stable() {
    assert_eq!(TosEventKind::ZoneTransferStarted as u32, 21);
    assert_eq!(TosEventKind::ZoneTransferred as u32, 22);
    assert_eq!(TosEventKind::ZoneTransferFailed as u32, 23);
    assert_eq!(TosResult::Transferring as i32, -12);
}
