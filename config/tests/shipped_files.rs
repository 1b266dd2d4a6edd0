//! The RON files shipped in `config/` and the reference in `docs/CONFIG.md`
//! must agree with the types and defaults in code.

use std::path::{Path, PathBuf};

use tos_config::{LayoutKind, ServerConfig, ShardLayout};

fn crate_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn layout_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(crate_dir().join("layouts"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "ron"))
        .collect();
    files.sort();
    files
}

/// Field names in RON text: identifiers followed by `:`, outside strings
/// and comments.
fn field_names(ron_text: &str) -> Vec<String> {
    let mut names = Vec::new();
    for line in ron_text.lines() {
        let code = line.split("//").next().unwrap_or_default();
        let mut in_string = false;
        let mut word = String::new();
        for c in code.chars() {
            if c == '"' {
                in_string = !in_string;
                word.clear();
            } else if in_string {
                continue;
            } else if c.is_ascii_alphanumeric() || c == '_' {
                word.push(c);
            } else {
                if c == ':' && !word.is_empty() && !names.contains(&word) {
                    names.push(word.clone());
                }
                if !c.is_whitespace() {
                    word.clear();
                }
            }
        }
    }
    names
}

#[test]
fn server_ron_is_exactly_the_default() {
    let path = crate_dir().join("server.ron");
    let loaded = ServerConfig::load(&path).unwrap();
    assert_eq!(loaded, ServerConfig::default());
}

#[test]
fn server_ron_lists_every_field_with_a_comment() {
    let text = std::fs::read_to_string(crate_dir().join("server.ron")).unwrap();
    let every_field = field_names(&ServerConfig::default().to_ron_string().unwrap());
    assert!(every_field.len() > 60, "{every_field:?}");
    let shipped = field_names(&text);
    assert_eq!(
        shipped, every_field,
        "server.ron should list every field in order"
    );

    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    for (number, line) in lines.iter().enumerate() {
        let is_field = !line.starts_with("//") && !field_names(line).is_empty();
        if is_field {
            let previous = lines[..number].last().copied().unwrap_or_default();
            assert!(
                previous.starts_with("//") || line.contains("//"),
                "server.ron line {}: `{line}` has no comment",
                number + 1
            );
        }
    }
}

#[test]
fn every_shipped_layout_resolves_on_the_default_world() {
    let grid = ServerConfig::default().world.quadrant_grid();
    let files = layout_files();
    assert!(files.len() >= 5, "{files:?}");
    for path in files {
        let layout = ShardLayout::load(&path).unwrap();
        let resolved = layout
            .resolve(grid)
            .unwrap_or_else(|error| panic!("{}: {error}", path.display()));
        let shares: Vec<usize> = (0..layout.cores)
            .map(|core| resolved.quadrants_of(core).count())
            .collect();
        let name = path.file_name().unwrap().to_str().unwrap();
        match name {
            "single-core.ron" => {
                assert_eq!(layout, ShardLayout::default());
                assert_eq!(shares, [256]);
            }
            "stripes-2.ron" => {
                assert_eq!(layout.kind, LayoutKind::Stripes);
                assert_eq!(shares, [128; 2]);
            }
            "stripes-16.ron" => {
                assert_eq!(layout.kind, LayoutKind::Stripes);
                assert_eq!(shares, [16; 16]);
            }
            "blocks-4x4.ron" => {
                assert_eq!(layout.kind, LayoutKind::Blocks { cols: 4, rows: 4 });
                assert_eq!(shares, [16; 16]);
            }
            "explicit-capital-4.ron" => {
                assert!(matches!(layout.kind, LayoutKind::Explicit(_)));
                assert_eq!(shares, [8, 8, 120, 120]);
                assert_eq!(resolved.owner([7, 7, 0]), 0);
                assert_eq!(resolved.owner([8, 9, 0]), 1);
            }
            other => panic!("add expectations for the new layout {other}"),
        }
    }
}

#[test]
fn the_reference_documents_every_field() {
    let docs_path = crate_dir().join("../docs/CONFIG.md");
    let docs = std::fs::read_to_string(&docs_path).unwrap();
    let mut names = field_names(&ServerConfig::default().to_ron_string().unwrap());
    let layout = ShardLayout {
        kind: LayoutKind::Explicit(Vec::new()),
        ..ShardLayout::default()
    };
    names.extend(field_names(&ron::ser::to_string(&layout).unwrap()));
    names.extend(["cols", "rows", "core", "quadrants"].map(String::from));
    for name in names {
        assert!(
            docs.contains(&format!("`{name}`")),
            "docs/CONFIG.md does not describe `{name}`"
        );
    }
    for variant in [
        "Auto", "IoUring", "Mmsg", "Cbpf", "Software", "All", "List", "Count", "Stripes", "Blocks",
        "Explicit",
    ] {
        assert!(
            docs.contains(variant),
            "docs/CONFIG.md does not mention {variant}"
        );
    }
}
