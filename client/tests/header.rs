//! The checked-in C header is what cbindgen generates from `src/ffi/mod.rs`
//! now: a changed ABI fails here until the header is regenerated with
//! `TOS_BLESS=1 cargo test -p tos-client --test header` (and reviewed).

use std::path::Path;

#[test]
fn header_matches_the_ffi_module() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config = cbindgen::Config::from_file(dir.join("cbindgen.toml")).expect("cbindgen.toml");
    // Only the FFI module: no `cargo metadata` run, no dependency parsing.
    let bindings = cbindgen::Builder::new()
        .with_config(config)
        .with_src(dir.join("src/ffi/mod.rs"))
        .generate()
        .expect("cbindgen generates the header");
    let mut fresh = Vec::new();
    bindings.write(&mut fresh);
    let fresh = String::from_utf8(fresh).expect("UTF-8");
    let path = dir.join("include/tos_client.h");
    if std::env::var_os("TOS_BLESS").is_some() {
        std::fs::write(&path, &fresh).expect("header written");
        return;
    }
    let current = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        current == fresh,
        "client/include/tos_client.h is stale: regenerate it with \
         `TOS_BLESS=1 cargo test -p tos-client --test header` and review the diff"
    );
}
