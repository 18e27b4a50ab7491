//! Keen's naming rules for event collections and properties, shared by the write path (validation)
//! and the schema endpoints. Limits follow the official SDKs (see `shared/keen-api.md` §2.5).

/// Longest collection name Keen accepts (iOS and .NET SDKs).
pub const MAX_COLLECTION_NAME_CHARS: usize = 64;
/// Property names must be shorter than this (Keen: "< 256 characters").
pub const MAX_PROPERTY_NAME_CHARS: usize = 256;

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
    None
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
    }
}
