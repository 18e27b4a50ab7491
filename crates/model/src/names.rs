//! Keen's naming rules for event collections and properties, shared by the write path (validation)
//! and the schema endpoints. Limits follow the official SDKs (see `shared/keen-api.md` §2.5).
//!
//! Design: beyond Keen's rules, a name must be safe for every place it ends up. Collection names may not
//! contain `/` or `\` or consist only of dots (`..`), so no storage backend or tool that maps them to paths
//! can be led outside a project; property names may not contain control characters (NUL among them),
//! Unicode format characters (bidi overrides such as U+202E, zero-width characters, the BOM) or line and
//! paragraph separators, which would make two different names look the same, or reorder what a dashboard
//! shows around them.

use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};

/// Longest collection name Keen accepts (iOS and .NET SDKs).
pub(crate) const MAX_COLLECTION_NAME_CHARS: usize = 64;
/// Property names must be shorter than this (Keen: "< 256 characters").
pub(crate) const MAX_PROPERTY_NAME_CHARS: usize = 256;

/// Why a collection name is refused; the message is shown to the client.
pub fn collection_name_problem(name: &str) -> Option<String> {
    if name.trim().is_empty() {
        return Some("Collection name must not be blank.".to_string());
    }
    if name.chars().count() > MAX_COLLECTION_NAME_CHARS {
        return Some(format!(
            "Collection name must be at most {MAX_COLLECTION_NAME_CHARS} characters: '{name}'."
        ));
    }
    if !name.is_ascii() {
        return Some(format!(
            "Collection name must contain only ASCII characters: '{name}'."
        ));
    }
    if name.chars().any(|c| c.is_ascii_control()) {
        return Some("Collection name must not contain control characters.".to_string());
    }
    if name.contains(['/', '\\']) {
        return Some(format!(
            "Collection name must not contain '/' or '\\': '{name}'."
        ));
    }
    if name.chars().all(|c| c == '.') {
        return Some(format!(
            "Collection name must not consist only of periods: '{name}'."
        ));
    }
    if name.contains('$') {
        return Some(format!("Collection name must not contain '$': '{name}'."));
    }
    if name.starts_with('_') {
        return Some(format!(
            "Collection name must not start with '_': '{name}'."
        ));
    }
    None
}

/// Why a property name (one segment of a dotted path) is refused.
pub fn property_name_problem(name: &str) -> Option<String> {
    if name.trim().is_empty() {
        return Some("Property names must not be blank.".to_string());
    }
    if name.chars().count() >= MAX_PROPERTY_NAME_CHARS {
        return Some(format!(
            "Property names must be shorter than {MAX_PROPERTY_NAME_CHARS} characters: '{name}'."
        ));
    }
    if name.contains('.') {
        return Some(format!(
            "Property names must not contain a period: '{name}'."
        ));
    }
    if name.starts_with('$') {
        return Some(format!("Property names must not start with '$': '{name}'."));
    }
    if let Some(bad) = name.chars().find(|c| is_invisible_or_control(*c)) {
        return Some(format!(
            "Property names must not contain control or invisible formatting characters (found U+{:04X}): {:?}.",
            bad as u32,
            name.escape_debug().to_string()
        ));
    }
    None
}

/// Why a dotted property path (`page.info`, as add-ons name their inputs and outputs) is refused: every
/// segment must be a valid property name, and a value at the path must fit within the event depth limit.
/// The segments are counted before any is split out, so a path of 10,000 segments costs one pass.
pub(crate) fn path_problem(path: &str) -> Option<String> {
    let shown: String = path.chars().take(100).collect();
    let segments = path.bytes().filter(|byte| *byte == b'.').count() + 1;
    if segments >= crate::event::MAX_EVENT_DEPTH {
        return Some(format!(
            "The path '{shown}…' has {segments} segments; a property may be nested at most {} levels deep.",
            crate::event::MAX_EVENT_DEPTH - 1
        ));
    }
    path.split('.').find_map(|segment| {
        property_name_problem(segment).map(|problem| format!("In the path '{shown}': {problem}"))
    })
}

/// Control characters, Unicode format characters (bidi controls, zero-width characters, the BOM) and the
/// line and paragraph separators.
fn is_invisible_or_control(character: char) -> bool {
    // The general-category lookup is a table search; every property name of every event passes here, and
    // an ASCII character is invisible only when it is a control character.
    if character.is_ascii() {
        return character.is_ascii_control();
    }
    character.is_control()
        || matches!(
            character.general_category(),
            GeneralCategory::Control
                | GeneralCategory::Format
                | GeneralCategory::LineSeparator
                | GeneralCategory::ParagraphSeparator
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collection_names() {
        assert!(collection_name_problem("purchases").is_none());
        assert!(collection_name_problem("page views.v2").is_none());
        assert!(collection_name_problem("").is_some());
        assert!(collection_name_problem("   ").is_some());
        assert!(collection_name_problem("_private").is_some());
        assert!(collection_name_problem("a$b").is_some());
        assert!(collection_name_problem("café").is_some());
        assert!(collection_name_problem(&"x".repeat(64)).is_none());
        assert!(collection_name_problem(&"x".repeat(65)).is_some());
        for bad in ["..", ".", "../../x", "a/b", "a\\b", "/etc"] {
            assert!(collection_name_problem(bad).is_some(), "{bad}");
        }
        assert!(collection_name_problem("v1.2").is_none());
    }

    #[test]
    fn paths() {
        assert!(path_problem("page.info").is_none());
        assert!(path_problem("keen.timestamp").is_none());
        for bad in ["", "a..b", ".a", "a.", "a.$b", "a. ", "a.b\u{202E}"] {
            assert!(path_problem(bad).is_some(), "{bad}");
        }
        let limit = crate::event::MAX_EVENT_DEPTH;
        assert!(path_problem(&vec!["d"; limit - 1].join(".")).is_none());
        assert!(path_problem(&vec!["d"; limit].join(".")).is_some());
        assert!(path_problem(&vec!["d"; 10_000].join(".")).is_some());
        assert!(path_problem(&format!("a.{}", "p".repeat(256))).is_some());
    }

    #[test]
    fn property_names() {
        assert!(property_name_problem("price").is_none());
        assert!(property_name_problem("a#b").is_none());
        assert!(property_name_problem("a.b").is_some());
        assert!(property_name_problem("$x").is_some());
        assert!(property_name_problem("").is_some());
        assert!(property_name_problem(&"p".repeat(255)).is_none());
        assert!(property_name_problem(&"p".repeat(256)).is_some());
        for bad in [
            "a\0b",
            "evil\u{202E}txt",
            "zero\u{200B}width",
            "\u{FEFF}bom",
            "tab\t",
            "line\u{2028}",
        ] {
            assert!(property_name_problem(bad).is_some(), "{bad:?}");
        }
        assert!(property_name_problem("café ☕ 価格").is_none());
    }
}
