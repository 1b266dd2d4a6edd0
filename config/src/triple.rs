//! Per-axis settings read as either `(x, y, z)` or `[x, y, z]`.
//!
//! ron writes fixed-size arrays as tuples, `(x, y, z)`, and refuses
//! brackets for them; operators naturally write `[100, 100, 100]`. Both are
//! accepted, and serialization keeps ron's tuple form.

use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, Deserialize, Deserializer, IgnoredAny, SeqAccess, Visitor};

/// Deserializes one `[T; 3]`.
pub(crate) fn deserialize<'de, D, T>(deserializer: D) -> Result<[T; 3], D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    deserializer.deserialize_any(TripleVisitor(PhantomData))
}

/// Deserializes a `[...]` list of triples.
pub(crate) fn deserialize_vec<'de, D, T>(deserializer: D) -> Result<Vec<[T; 3]>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    struct Item<T>([T; 3]);
    impl<'de, T: Deserialize<'de>> Deserialize<'de> for Item<T> {
        fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            deserialize(deserializer).map(Item)
        }
    }
    let items = Vec::<Item<T>>::deserialize(deserializer)?;
    Ok(items.into_iter().map(|Item(triple)| triple).collect())
}

struct TripleVisitor<T>(PhantomData<T>);

impl<'de, T: Deserialize<'de>> Visitor<'de> for TripleVisitor<T> {
    type Value = [T; 3];

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("three values, one per axis: (x, y, z)")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<[T; 3], A::Error> {
        let x = seq
            .next_element()?
            .ok_or_else(|| de::Error::invalid_length(0, &self))?;
        let y = seq
            .next_element()?
            .ok_or_else(|| de::Error::invalid_length(1, &self))?;
        let z = seq
            .next_element()?
            .ok_or_else(|| de::Error::invalid_length(2, &self))?;
        if seq.next_element::<IgnoredAny>()?.is_some() {
            return Err(de::Error::invalid_length(4, &self));
        }
        Ok([x, y, z])
    }
}
