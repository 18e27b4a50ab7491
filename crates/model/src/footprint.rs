//! Approximate heap sizes of the values Keyhole keeps in caches, so every cache is bounded in bytes rather
//! than in entries (entries differ in size by four orders of magnitude: a grant of a key with one filter
//! against an embed token with a 200 KB filter list).
//!
//! Design: an estimate, not an allocator count — it errs high, never low. A JSON value is walked without
//! recursion and charged the size of each node plus the text it owns (strings, object keys) plus a map
//! entry's overhead; other typed values are charged by the length of their `Debug` text (which prints every
//! string and number they hold), counted without building the text, times a factor for the structure
//! around it.

use std::fmt::Write;

use serde_json::Value;

/// What one JSON node costs besides the text it owns: the `Value` itself.
const VALUE_NODE_BYTES: usize = std::mem::size_of::<Value>();
/// What one object member costs besides its key's text and its value: the key `String` and the map's
/// share of bookkeeping.
const MAP_ENTRY_BYTES: usize = 48;
/// Heap bytes a typed value is charged per byte of its `Debug` text.
const DEBUG_TEXT_FACTOR: usize = 3;

/// The approximate heap bytes of a JSON value, itself included.
pub fn value_bytes(value: &Value) -> usize {
    let mut total = 0;
    let mut pending = vec![value];
    while let Some(value) = pending.pop() {
        total += VALUE_NODE_BYTES;
        match value {
            Value::String(text) => total += text.capacity(),
            Value::Array(items) => {
                total += items.capacity() * VALUE_NODE_BYTES;
                pending.extend(items);
            }
            Value::Object(members) => {
                for (name, member) in members {
                    total += MAP_ENTRY_BYTES + name.len();
                    pending.push(member);
                }
            }
            Value::Null | Value::Bool(_) | Value::Number(_) => {}
        }
    }
    total
}

/// The approximate heap bytes of a typed value, from the length of its `Debug` text.
pub(crate) fn debug_bytes(value: &impl std::fmt::Debug) -> usize {
    let mut counter = CountingWriter(0);
    // Writing into a counter cannot fail.
    let _ = write!(counter, "{value:?}");
    counter.0.saturating_mul(DEBUG_TEXT_FACTOR)
}

/// A `fmt::Write` that only counts.
struct CountingWriter(usize);

impl Write for CountingWriter {
    fn write_str(&mut self, text: &str) -> std::fmt::Result {
        self.0 += text.len();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn estimates_grow_with_what_is_held() {
        let small = value_bytes(&json!({"a": 1}));
        let large = value_bytes(&json!({"a": "x".repeat(100_000)}));
        assert!(small < 200, "{small}");
        assert!(large > 100_000, "{large}");
        let list: Vec<i64> = (0..10_000).collect();
        assert!(value_bytes(&json!(list)) >= 10_000 * VALUE_NODE_BYTES);
        let nested = json!({"values": (0..1000).map(|n| json!({"n": n, "name": format!("v{n}")})).collect::<Vec<_>>()});
        assert!(value_bytes(&nested) > nested.to_string().len());
        assert!(debug_bytes(&vec!["y".repeat(5_000)]) >= 5_000);
    }
}
