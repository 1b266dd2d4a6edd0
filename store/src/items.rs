//! The byte layout of a character's items in its row (`characters.items`):
//! one column written in the same UPDATE as the rest of the state, so a
//! save moves every item of a character at once or not at all.
//!
//! Layout: format u8 (1), then per item 6 bytes: place u8 (0 = inventory,
//! 1 = worn), slot u8, template u16 LE, count u16 LE. An empty column (rows
//! of schema version 1, new characters) is no items. Reading checks every
//! entry (a known place, a count ≥ 1, no slot used twice), so corrupt
//! data is an error, never a duplicated item. The same bytes carry a
//! character's items when it moves to another node of a cluster.

use crate::{ItemPlace, SavedItem, StoreError};

/// The format byte of the layout above.
const FORMAT: u8 = 1;
/// Bytes per item.
const ENTRY: usize = 6;
/// The most items a row may hold (inventory slots plus equipment slots,
/// with room to spare); more is refused on write and corrupt on read.
pub const MAX_SAVED_ITEMS: usize = 256;

/// Encodes a character's items.
pub fn encode_items(items: &[SavedItem]) -> Result<Vec<u8>, StoreError> {
    if items.is_empty() {
        return Ok(Vec::new());
    }
    if items.len() > MAX_SAVED_ITEMS {
        return Err(StoreError::Invalid(format!(
            "{} items, at most {MAX_SAVED_ITEMS}",
            items.len()
        )));
    }
    let mut out = Vec::with_capacity(1 + items.len() * ENTRY);
    out.push(FORMAT);
    for i in items {
        if i.count == 0 {
            return Err(StoreError::Invalid(format!(
                "item {} at {:?} has count 0",
                i.template, i.place
            )));
        }
        let (kind, slot) = match i.place {
            ItemPlace::Bag(s) => (0u8, s),
            ItemPlace::Worn(s) => (1u8, s),
        };
        out.extend_from_slice(&[kind, slot]);
        out.extend_from_slice(&i.template.to_le_bytes());
        out.extend_from_slice(&i.count.to_le_bytes());
    }
    Ok(out)
}

/// Decodes what [`encode_items`] wrote; the message says what is wrong.
pub fn decode_items(bytes: &[u8]) -> Result<Vec<SavedItem>, String> {
    let Some((&format, body)) = bytes.split_first() else {
        return Ok(Vec::new());
    };
    if format != FORMAT {
        return Err(format!("unknown format {format}"));
    }
    if body.len() % ENTRY != 0 || body.len() / ENTRY > MAX_SAVED_ITEMS {
        return Err(format!("{} bytes is not a list of items", body.len()));
    }
    let mut out: Vec<SavedItem> = Vec::with_capacity(body.len() / ENTRY);
    for e in body.chunks_exact(ENTRY) {
        let place = match e[0] {
            0 => ItemPlace::Bag(e[1]),
            1 => ItemPlace::Worn(e[1]),
            other => return Err(format!("unknown place {other}")),
        };
        let item = SavedItem {
            place,
            template: u16::from_le_bytes([e[2], e[3]]),
            count: u16::from_le_bytes([e[4], e[5]]),
        };
        if item.count == 0 {
            return Err(format!("item {} at {place:?} has count 0", item.template));
        }
        if out.iter().any(|o| o.place == place) {
            return Err(format!("two items at {place:?}"));
        }
        out.push(item);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn items() -> Vec<SavedItem> {
        vec![
            SavedItem {
                place: ItemPlace::Bag(0),
                template: 100,
                count: 5,
            },
            SavedItem {
                place: ItemPlace::Worn(3),
                template: 20,
                count: 1,
            },
        ]
    }

    #[test]
    fn items_round_trip() {
        let bytes = encode_items(&items()).unwrap();
        assert_eq!(
            bytes,
            [1, 0, 0, 100, 0, 5, 0, 1, 3, 20, 0, 1, 0],
            "the documented layout"
        );
        assert_eq!(decode_items(&bytes).unwrap(), items());
        assert_eq!(encode_items(&[]).unwrap(), Vec::<u8>::new());
        assert_eq!(decode_items(&[]).unwrap(), Vec::new());
    }

    #[test]
    fn corrupt_items_are_errors() {
        let good = encode_items(&items()).unwrap();
        let mut bad = good.clone();
        bad[0] = 9;
        assert!(decode_items(&bad).is_err(), "unknown format");
        assert!(decode_items(&good[..good.len() - 1]).is_err(), "truncated");
        let mut bad = good.clone();
        bad[1] = 7;
        assert!(decode_items(&bad).is_err(), "unknown place");
        let mut bad = good.clone();
        bad[5] = 0;
        assert!(decode_items(&bad).is_err(), "count 0");
        let mut twice = good.clone();
        twice.extend_from_slice(&good[1..7]);
        assert!(decode_items(&twice).is_err(), "one slot used twice");
        let zero = [SavedItem {
            count: 0,
            ..items()[0]
        }];
        assert!(encode_items(&zero).is_err());
    }
}
