//! `Idempotency-Key` (a Keyhole extension): a request header that makes a retried write store its events
//! once. Every event of the request that carries no `keen.uniqueness_token` of its own is given one derived
//! from the key, its collection and its position in the request — the same for the same request sent
//! again — so the retry's events are recognized as duplicates of the first attempt's wherever it was
//! stored (the uniqueness rules of `keen.uniqueness_token`: per collection and writer scope, for 31 days;
//! on several nodes, applied in the shared log's order, so every node keeps the same one).
//!
//! Design: the token is written into the event (`keen.uniqueness_token`), since the event's stored JSON is
//! what every node and every replay reads its token from; it is `idempotency:` and 32 hex digits of
//! SHA-256(key, collection, position), so it says where it came from and reveals nothing of the key.

use std::borrow::Cow;

use axum::http::HeaderMap;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::errors::{ApiError, ErrorCode};

/// The header.
pub(crate) const HEADER: &str = "idempotency-key";
/// The longest key accepted.
const MAX_KEY_CHARS: usize = 255;

/// The request's idempotency key: `None` without the header; refused when it is empty, longer than 255
/// characters or holds anything but visible ASCII.
pub(crate) fn key_of(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get(HEADER) else {
        return Ok(None);
    };
    let text = value.to_str().unwrap_or_default();
    let visible = |byte: u8| (0x21..=0x7e).contains(&byte);
    if text.is_empty() || text.len() > MAX_KEY_CHARS || !text.bytes().all(visible) {
        return Err(ApiError::new(
            ErrorCode::InvalidRequest,
            format!(
                "Idempotency-Key is 1 to {MAX_KEY_CHARS} visible ASCII characters; nothing was stored."
            ),
        ));
    }
    Ok(Some(text.to_string()))
}

/// The uniqueness token of the event at `position` of `collection` in a request with `key`.
fn token(key: &str, collection: &str, position: usize) -> String {
    let mut hasher = Sha256::new();
    hasher.update(key.as_bytes());
    hasher.update([0x1f]);
    hasher.update(collection.as_bytes());
    hasher.update([0x1f]);
    hasher.update(position.to_string().as_bytes());
    let digest = hex::encode(hasher.finalize());
    format!("idempotency:{}", &digest[..32])
}

/// Gives `event` its derived token unless it has a uniqueness token of its own; an event that is not an
/// object (or whose `keen` is not one) is left for validation to refuse.
pub(crate) fn stamp_value(event: &mut Value, key: &str, collection: &str, position: usize) {
    let Some(object) = event.as_object_mut() else {
        return;
    };
    let keen = object
        .entry("keen")
        .or_insert_with(|| Value::Object(serde_json::Map::new()));
    let Some(keen) = keen.as_object_mut() else {
        return;
    };
    keen.entry("uniqueness_token")
        .or_insert_with(|| Value::String(token(key, collection, position)));
}

/// [`stamp_value`] on an event's JSON text: the text unchanged when it does not parse (validation says
/// why) or already has a token.
pub(crate) fn stamp_text<'t>(
    text: &'t [u8],
    key: &str,
    collection: &str,
    position: usize,
) -> Cow<'t, [u8]> {
    let Ok(mut event) = serde_json::from_slice::<Value>(text) else {
        return Cow::Borrowed(text);
    };
    stamp_value(&mut event, key, collection, position);
    match serde_json::to_vec(&event) {
        Ok(stamped) => Cow::Owned(stamped),
        Err(_) => Cow::Borrowed(text),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_request_gets_the_same_tokens_and_an_own_token_is_kept() {
        let first = stamp_text(br#"{"a": 1}"#, "retry-7", "orders", 0);
        let again = stamp_text(br#"{"a": 1}"#, "retry-7", "orders", 0);
        assert_eq!(first, again);
        let parsed: Value = serde_json::from_slice(&first).unwrap();
        let stamped = parsed["keen"]["uniqueness_token"].as_str().unwrap();
        assert!(stamped.starts_with("idempotency:") && stamped.len() == 12 + 32);
        assert_ne!(token("retry-7", "orders", 1), token("retry-7", "orders", 0));
        assert_ne!(token("retry-7", "visits", 0), token("retry-7", "orders", 0));
        let own = stamp_text(br#"{"keen": {"uniqueness_token": "mine"}}"#, "k", "c", 0);
        assert_eq!(
            serde_json::from_slice::<Value>(&own).unwrap()["keen"]["uniqueness_token"],
            "mine"
        );
        assert_eq!(stamp_text(b"not json", "k", "c", 0).as_ref(), b"not json");
    }
}
