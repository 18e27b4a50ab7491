//! Edits of an event in its flattened form — what the autofill stamp, an add-on's output and an add-on's
//! removal do to a JSON object, done on dotted paths — and the event's JSON text written back from that
//! form, for the WAL.
//!
//! Design: each edit is the flattened counterpart of a JSON edit, so an event edited here and flattened
//! from its JSON are the same: writing at a path replaces what was at the path and whatever scalar sat on
//! the way to it (a JSON parent that is not an object is replaced by one); an object written where an
//! object was keeps the old object's other members, member by member. The JSON text lists members in
//! byte order at every level (the order a JSON object of serde_json keeps), so reading the text back
//! (`event::reload_event`) gives the same properties in the same order.

use serde_json::Value;

use crate::flat::{FlatValue, flatten_at};

/// Whether `path` is `root` or lies under it.
pub(crate) fn is_at_or_under(path: &str, root: &str) -> bool {
    path.strip_prefix(root)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('.'))
}

/// Whether `path` lies strictly under `root`.
fn is_under(path: &str, root: &str) -> bool {
    path.strip_prefix(root)
        .is_some_and(|rest| rest.starts_with('.'))
}

/// Writes `value` at `path`: see the module docs.
pub(crate) fn write_at(properties: &mut Vec<(String, FlatValue)>, path: &str, value: Value) {
    // The common case (an add-on's output where the event has nothing): nothing to replace or merge, so
    // the value is flattened in place, without a scan of the event per member.
    let path_is_free = !properties
        .iter()
        .any(|(existing, _)| is_at_or_under(existing, path) || is_under(path, existing));
    if path_is_free {
        match value {
            Value::Object(members) if !members.is_empty() => {
                for (name, member) in members {
                    flatten_at(format!("{path}.{name}"), member, properties);
                }
            }
            other => flatten_at(path.to_string(), other, properties),
        }
        return;
    }
    write_over(properties, path, value);
}

/// [`write_at`] where something may already be at, under or on the way to `path`.
fn write_over(properties: &mut Vec<(String, FlatValue)>, path: &str, value: Value) {
    // A scalar on the way to the path is replaced by an object.
    properties.retain(|(existing, _)| !is_under(path, existing));
    match value {
        Value::Object(members) => {
            let had_members = properties
                .iter()
                .any(|(existing, _)| is_under(existing, path));
            properties.retain(|(existing, _)| existing != path);
            if members.is_empty() {
                if !had_members {
                    properties.push((path.to_string(), FlatValue::EmptyObject));
                }
                return;
            }
            for (name, member) in members {
                let member_path = format!("{path}.{name}");
                remove_at_or_under(properties, &member_path);
                flatten_at(member_path, member, properties);
            }
        }
        other => {
            remove_at_or_under(properties, path);
            flatten_at(path.to_string(), other, properties);
        }
    }
}

/// Removes the property at `path` and everything under it.
pub(crate) fn remove_at_or_under(properties: &mut Vec<(String, FlatValue)>, path: &str) {
    properties.retain(|(existing, _)| !is_at_or_under(existing, path));
}

/// The string at exactly `path`, if the event holds one there.
pub(crate) fn string_at<'a>(properties: &'a [(String, FlatValue)], path: &str) -> Option<&'a str> {
    properties.iter().find_map(|(existing, value)| match value {
        FlatValue::Str(text) if existing == path => Some(text.as_str()),
        _ => None,
    })
}

/// How many levels of objects and lists a property adds up to: its path's segments, one more when its
/// value is a list or an (empty) object. The event object itself is level 1.
pub(crate) fn nesting_of(path: &str, value: &FlatValue) -> usize {
    let segments = path.bytes().filter(|byte| *byte == b'.').count() + 1;
    let container = matches!(
        value,
        FlatValue::NumList(_)
            | FlatValue::StrList(_)
            | FlatValue::BoolList(_)
            | FlatValue::MixedList(_)
            | FlatValue::EmptyObject
    );
    segments + usize::from(container)
}

/// Orders dotted paths as nested JSON objects list their members: segment by segment, each in byte order
/// (a `.` sorts before any byte a property name may hold).
pub(crate) fn path_order(left: &str, right: &str) -> std::cmp::Ordering {
    let key = |byte: u8| if byte == b'.' { 0 } else { byte };
    left.bytes().map(key).cmp(right.bytes().map(key))
}

/// The event's JSON text from its leaves (see the module docs), written into a buffer of `capacity` bytes to
/// start with. No two leaves may share a path or sit one under the other (`event` refuses such events).
pub(crate) fn write_json(mut leaves: Vec<(&str, &FlatValue)>, capacity: usize) -> Vec<u8> {
    leaves.sort_by(|left, right| path_order(left.0, right.0));
    debug_assert!(
        leaves
            .windows(2)
            .all(|pair| !is_at_or_under(pair[1].0, pair[0].0)),
        "leaves on each other's way"
    );
    let mut out = Vec::with_capacity(capacity);
    out.push(b'{');
    // The objects open below the event, by name, and whether each has a member written yet.
    let mut open: Vec<&str> = Vec::new();
    let mut written_in_level = vec![false];
    for (path, leaf) in &leaves {
        let segments: Vec<&str> = path.split('.').collect();
        let (name, parents) = segments.split_last().expect("a path has a segment");
        let common = open
            .iter()
            .zip(parents.iter())
            .take_while(|(open, parent)| open == parent)
            .count();
        while open.len() > common {
            open.pop();
            written_in_level.pop();
            out.push(b'}');
        }
        for parent in &parents[common..] {
            member_start(&mut out, &mut written_in_level, parent);
            out.push(b'{');
            open.push(parent);
            written_in_level.push(false);
        }
        member_start(&mut out, &mut written_in_level, name);
        write_leaf(&mut out, leaf);
    }
    // The objects still open, and the event itself.
    out.resize(out.len() + open.len() + 1, b'}');
    out
}

fn member_start(out: &mut Vec<u8>, written_in_level: &mut [bool], name: &str) {
    let written = written_in_level
        .last_mut()
        .expect("the event level is always open");
    if *written {
        out.push(b',');
    }
    *written = true;
    write_string(out, name);
    out.push(b':');
}

fn write_string(out: &mut Vec<u8>, text: &str) {
    serde_json::to_writer(&mut *out, text).expect("writing to a Vec cannot fail");
}

/// A number as JSON: integral values within f64's exact range without a fraction, others shortest.
fn write_number(out: &mut Vec<u8>, number: f64) {
    const EXACT: f64 = 9_007_199_254_740_992.0;
    if !number.is_finite() {
        out.extend_from_slice(b"null");
    } else if number.fract() == 0.0 && number.abs() < EXACT {
        out.extend_from_slice((number as i64).to_string().as_bytes());
    } else {
        serde_json::to_writer(&mut *out, &number).expect("writing to a Vec cannot fail");
    }
}

fn write_list<T>(
    out: &mut Vec<u8>,
    items: impl Iterator<Item = T>,
    mut write: impl FnMut(&mut Vec<u8>, T),
) {
    out.push(b'[');
    for (index, item) in items.enumerate() {
        if index > 0 {
            out.push(b',');
        }
        write(out, item);
    }
    out.push(b']');
}

fn write_leaf(out: &mut Vec<u8>, value: &FlatValue) {
    match value {
        FlatValue::Num(number) => write_number(out, *number),
        FlatValue::Str(text) => write_string(out, text),
        FlatValue::Bool(flag) => out.extend_from_slice(if *flag { b"true" } else { b"false" }),
        FlatValue::Null => out.extend_from_slice(b"null"),
        FlatValue::EmptyObject => out.extend_from_slice(b"{}"),
        FlatValue::NumList(numbers) => {
            write_list(out, numbers.elements(), |out, number| match number {
                Some(number) => write_number(out, number),
                None => out.extend_from_slice(b"null"),
            });
        }
        FlatValue::StrList(texts) => write_list(out, texts.iter(), |out, text| match text {
            Some(text) => write_string(out, text),
            None => out.extend_from_slice(b"null"),
        }),
        FlatValue::BoolList(flags) => write_list(out, flags.iter(), |out, flag| {
            out.extend_from_slice(match flag {
                Some(true) => b"true",
                Some(false) => b"false",
                None => b"null",
            });
        }),
        FlatValue::MixedList(texts) => write_list(out, texts.iter(), |out, text| {
            out.extend_from_slice(text.as_bytes());
        }),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::flat::flatten_properties;

    fn flat(value: Value) -> Vec<(String, FlatValue)> {
        flatten_properties(value.as_object().cloned().unwrap())
    }

    fn json_of(properties: &[(String, FlatValue)]) -> Value {
        let leaves = properties
            .iter()
            .map(|(path, value)| (path.as_str(), value))
            .collect();
        serde_json::from_slice(&write_json(leaves, 0)).unwrap()
    }

    #[test]
    fn the_json_text_reads_back_as_the_same_properties_in_the_same_order() {
        let event = json!({"b": {"x": 1, "a-b": "s", "a": {"z": [1, null, 2.5]}}, "a": {}, "a-b": [true, null],
                           "m": [1, "one", null, 1.5], "n": null, "s": [], "big": 12_345_678_901_234_567_890_u64});
        let mut properties = flat(event.clone());
        properties.reverse();
        let written = json_of(&properties);
        assert_eq!(
            written,
            json!({"b": {"x": 1, "a-b": "s", "a": {"z": [1, null, 2.5]}}, "a": {}, "a-b": [true, null],
                                    "m": [1, "one", null, 1.5], "n": null, "s": [], "big": 12_345_678_901_234_567_890.0})
        );
        let mut sorted = properties.clone();
        sorted.sort_by(|left, right| path_order(&left.0, &right.0));
        assert_eq!(flat(written), sorted);
    }

    #[test]
    fn writing_at_a_free_path_is_the_general_edit() {
        let base = flat(json!({"tech": {"browser": "x"}, "page": "p", "url": {"full": "u"}}));
        let outputs = [
            json!({"browser": {"family": "Chrome", "major": 126}, "os": {"family": null}, "list": [1, "a"]}),
            json!({}),
            json!({"nested": {}}),
            json!("scalar"),
            json!([true, null]),
        ];
        for output in outputs {
            for path in ["geo", "url.info", "time.local"] {
                let mut fast = base.clone();
                write_at(&mut fast, path, output.clone());
                let mut general = base.clone();
                write_over(&mut general, path, output.clone());
                assert_eq!(fast, general, "{path} = {output}");
            }
        }
    }

    #[test]
    fn edits_do_what_the_json_edits_do() {
        let mut properties = flat(
            json!({"tech": {"profile": {"w": 1}, "browser": {"old": 1}}, "page": "x", "geo": {}}),
        );
        write_at(
            &mut properties,
            "tech",
            json!({"browser": {"family": "Chrome"}}),
        );
        write_at(&mut properties, "page.info", json!({"domain": "a.example"}));
        write_at(&mut properties, "geo", json!({"city": "Berlin"}));
        write_at(&mut properties, "empty", json!({}));
        assert_eq!(
            json_of(&properties),
            json!({"tech": {"profile": {"w": 1}, "browser": {"family": "Chrome"}}, "page": {"info": {"domain": "a.example"}},
                   "geo": {"city": "Berlin"}, "empty": {}})
        );
        remove_at_or_under(&mut properties, "tech");
        assert_eq!(
            string_at(&properties, "page.info.domain"),
            Some("a.example")
        );
        assert!(properties.iter().all(|(path, _)| !path.starts_with("tech")));
        assert_eq!(nesting_of("a.b", &FlatValue::EmptyObject), 3);
        assert_eq!(nesting_of("a", &FlatValue::Num(1.0)), 1);
    }
}
