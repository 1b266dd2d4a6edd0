//! The hex vectors of `docs/PROTOCOL.md`, parsed: fenced blocks opened
//! with ```` ```hex vector=NAME ````, `XX*N` for N copies of byte XX, `#`
//! starting a comment. Shared by the vector and transcript tests.

/// Every `hex vector=NAME` block of the specification, in order.
pub fn doc_vectors() -> Vec<(String, Vec<u8>)> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/PROTOCOL.md");
    let text = std::fs::read_to_string(path).expect("docs/PROTOCOL.md is readable");
    let mut out = Vec::new();
    let mut current: Option<(String, Vec<u8>)> = None;
    for line in text.lines() {
        let trimmed = line.trim();
        if let Some(name) = trimmed.strip_prefix("```hex vector=") {
            current = Some((name.trim().to_string(), Vec::new()));
        } else if trimmed == "```" {
            if let Some(v) = current.take() {
                out.push(v);
            }
        } else if let Some((name, bytes)) = current.as_mut() {
            let code = trimmed.split('#').next().unwrap_or("");
            for token in code.split_whitespace() {
                let (byte, count) = match token.split_once('*') {
                    Some((b, n)) => (
                        b,
                        n.parse::<usize>()
                            .unwrap_or_else(|_| panic!("{name}: bad count {token}")),
                    ),
                    None => (token, 1),
                };
                let b = u8::from_str_radix(byte, 16)
                    .unwrap_or_else(|_| panic!("{name}: bad byte {token}"));
                bytes.extend(std::iter::repeat_n(b, count));
            }
        }
    }
    out
}

/// Bytes as space-separated hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}
