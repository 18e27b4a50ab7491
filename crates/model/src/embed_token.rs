//! Embed tokens (a Keyhole extension): short-lived credentials a backend derives from one of its access
//! keys without asking Keyhole, to template into a web page. The scheme, "Keyhole embed token v1":
//!
//! - The token is a JWT (RFC 7519, compact form) signed with EdDSA over Ed25519 (RFC 8037).
//! - The signing key's 32-byte seed is `SHA-256("keyhole-embed-token-v1:" + access key secret)`; its
//!   public key, base64url without padding, is the JWT header's `kid` (the header is
//!   `{"alg": "EdDSA", "typ": "JWT", "kid": …}`; nothing else is accepted in it).
//! - Claims: `exp` (required, seconds since the epoch, at most [`MAX_TOKEN_LIFETIME_SECS`] ahead), `jti`
//!   (required, 1–64 characters of `[A-Za-z0-9_-]`, the id a single token is revoked by), optionally
//!   `iat`, `nbf`, and the narrowing claims `permitted` (a subset of the key's operations), `filters`
//!   (AND-ed to the key's) and `max_lookback` (shorter than the key's). Any other claim is refused, so a
//!   misspelt `filter` cannot silently mint an unfiltered token.
//!
//! Design: Keyhole stores only the public key, computed when the key is created (or first presented),
//! so a copy of the metadata database cannot mint tokens, just as it cannot recover key secrets. Every
//! common language has a JWT library with EdDSA (PyJWT with `cryptography`, `jose` or Node's `crypto`,
//! Go's `crypto/ed25519`); the README shows the few lines it takes.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use crate::keys::Operation;
use crate::query::Filter;

/// Prefix of the hashed seed: names the scheme and its version.
pub(crate) const SEED_CONTEXT: &str = "keyhole-embed-token-v1:";
/// Longest token accepted, in bytes.
pub(crate) const MAX_TOKEN_BYTES: usize = 16 * 1024;
/// Furthest a token's `exp` may lie ahead of the time it is presented (31 days).
pub(crate) const MAX_TOKEN_LIFETIME_SECS: i64 = 31 * 86_400;
const MAX_TOKEN_ID_CHARS: usize = 64;

/// Why a token was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// The token does not decode, or its header or claims are not what a token holds.
    #[error("the token is not a well-formed Keyhole embed token: {0}")]
    Malformed(String),
    /// The signature does not verify with the key's public key.
    #[error("the token's signature does not verify")]
    BadSignature,
    /// The token is past its `exp`.
    #[error("the token has expired")]
    Expired,
    /// The token's `nbf` is still ahead.
    #[error("the token is not valid yet")]
    NotYetValid,
    /// The claims are invalid or would widen the key.
    #[error("the token's claims are refused: {0}")]
    Claims(String),
}

/// A token's verified claims.
#[derive(Clone, Debug, PartialEq)]
pub struct TokenClaims {
    /// The token's id (`jti`), which it is revoked by.
    pub token_id: String,
    /// When the token expires (`exp`, seconds since the epoch).
    pub expires_at_secs: i64,
    /// The operations the token narrows its key to, if it narrows them.
    pub permitted: Option<Vec<Operation>>,
    /// Filters the token adds to its key's.
    pub filters: Vec<Filter>,
    /// The look-back the token narrows its key to, if it does.
    pub max_lookback_millis: Option<i64>,
}

/// The Ed25519 signing key of an access key's embed tokens.
pub(crate) fn signing_key_of_secret(secret: &str) -> SigningKey {
    let seed: [u8; 32] = Sha256::digest(format!("{SEED_CONTEXT}{secret}").as_bytes()).into();
    SigningKey::from_bytes(&seed)
}

/// The `kid` of an access key's tokens: its public key, base64url without padding.
pub fn key_id_of_secret(secret: &str) -> String {
    URL_SAFE_NO_PAD.encode(signing_key_of_secret(secret).verifying_key().as_bytes())
}

/// Whether a presented credential has a token's shape (key secrets are hex, without dots).
pub fn looks_like_token(credential: &str) -> bool {
    credential.contains('.')
}

/// A token whose header has been read but whose signature is not checked yet.
#[derive(Debug)]
pub struct UnverifiedToken<'a> {
    key_id: String,
    signing_input: &'a str,
    payload: &'a str,
    signature: &'a str,
}

impl<'a> UnverifiedToken<'a> {
    /// Reads the token's header. Nothing in it is trusted until [`UnverifiedToken::verify`].
    pub fn decode(token: &'a str) -> Result<UnverifiedToken<'a>, TokenError> {
        let malformed = |why: &str| TokenError::Malformed(why.to_string());
        if token.len() > MAX_TOKEN_BYTES {
            return Err(malformed("it is too long"));
        }
        let mut parts = token.split('.');
        let (Some(header), Some(payload), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(malformed("it needs three dot-separated parts"));
        };
        let header = decode_json(header).ok_or_else(|| malformed("its header is not JSON"))?;
        let header = header
            .as_object()
            .ok_or_else(|| malformed("its header is not an object"))?;
        if let Some(unknown) = header
            .keys()
            .find(|name| !["alg", "typ", "kid"].contains(&name.as_str()))
        {
            return Err(TokenError::Malformed(format!(
                "its header holds \"{unknown}\""
            )));
        }
        if header.get("alg") != Some(&json!("EdDSA")) {
            return Err(malformed("its algorithm must be EdDSA"));
        }
        if header.get("typ").is_some_and(|typ| typ != "JWT") {
            return Err(malformed("its type must be JWT"));
        }
        let key_id = header
            .get("kid")
            .and_then(Value::as_str)
            .ok_or_else(|| malformed("its header needs a kid"))?
            .to_string();
        Ok(UnverifiedToken {
            key_id,
            signing_input: &token[..header_and_payload_len(token)],
            payload,
            signature,
        })
    }

    /// The `kid`: the public key of the access key the token claims to come from.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// Checks the signature against the key id (the public key) and reads the claims at `now_secs`.
    pub fn verify(&self, now_secs: i64) -> Result<TokenClaims, TokenError> {
        let public_key: [u8; 32] = URL_SAFE_NO_PAD
            .decode(&self.key_id)
            .ok()
            .and_then(|bytes| bytes.try_into().ok())
            .ok_or(TokenError::BadSignature)?;
        let public_key =
            VerifyingKey::from_bytes(&public_key).map_err(|_| TokenError::BadSignature)?;
        let signature: [u8; 64] = URL_SAFE_NO_PAD
            .decode(self.signature)
            .ok()
            .and_then(|bytes| bytes.try_into().ok())
            .ok_or(TokenError::BadSignature)?;
        public_key
            .verify_strict(
                self.signing_input.as_bytes(),
                &Signature::from_bytes(&signature),
            )
            .map_err(|_| TokenError::BadSignature)?;
        let payload = URL_SAFE_NO_PAD
            .decode(self.payload)
            .map_err(|_| TokenError::Malformed("its payload is not base64url".into()))?;
        let claims = crate::strict_json::parse(&payload)
            .map_err(|error| TokenError::Claims(format!("not JSON: {error}")))?;
        parse_claims(&claims, now_secs)
    }
}

fn header_and_payload_len(token: &str) -> usize {
    token.rfind('.').unwrap_or(token.len())
}

fn decode_json(part: &str) -> Option<Value> {
    let bytes = URL_SAFE_NO_PAD.decode(part).ok()?;
    crate::strict_json::parse(&bytes).ok()
}

fn parse_claims(value: &Value, now_secs: i64) -> Result<TokenClaims, TokenError> {
    const KNOWN: [&str; 7] = [
        "exp",
        "jti",
        "iat",
        "nbf",
        "permitted",
        "filters",
        "max_lookback",
    ];
    let refused = |why: String| TokenError::Claims(why);
    let claims: &Map<String, Value> = value
        .as_object()
        .ok_or_else(|| refused("they must be an object".into()))?;
    if let Some(unknown) = claims.keys().find(|name| !KNOWN.contains(&name.as_str())) {
        return Err(refused(format!(
            "\"{unknown}\" is not a claim Keyhole knows"
        )));
    }
    let expires_at_secs = claims
        .get("exp")
        .and_then(Value::as_i64)
        .ok_or_else(|| refused("exp (seconds since the epoch) is required".into()))?;
    if expires_at_secs <= now_secs {
        return Err(TokenError::Expired);
    }
    if expires_at_secs - now_secs > MAX_TOKEN_LIFETIME_SECS {
        return Err(refused(format!(
            "exp may lie at most {MAX_TOKEN_LIFETIME_SECS} seconds ahead"
        )));
    }
    match claims.get("nbf") {
        None => {}
        Some(nbf) => {
            let nbf = nbf
                .as_i64()
                .ok_or_else(|| refused("nbf must be seconds since the epoch".into()))?;
            if nbf > now_secs {
                return Err(TokenError::NotYetValid);
            }
        }
    }
    if claims.get("iat").is_some_and(|iat| !iat.is_i64()) {
        return Err(refused("iat must be seconds since the epoch".into()));
    }
    let token_id = claims
        .get("jti")
        .and_then(Value::as_str)
        .filter(|id| is_token_id(id))
        .ok_or_else(|| refused("jti must be 1 to 64 characters of A-Z, a-z, 0-9, _ and -".into()))?
        .to_string();
    let permitted = match claims.get("permitted") {
        None => None,
        Some(Value::Array(names)) => Some(
            names
                .iter()
                .map(|name| name.as_str().and_then(Operation::from_keen_name))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| refused("permitted must list operations".into()))?,
        ),
        Some(_) => return Err(refused("permitted must list operations".into())),
    };
    let filters = match claims.get("filters") {
        None => Vec::new(),
        Some(filters) => {
            Filter::parse_list(filters).map_err(|error| refused(format!("filters: {error}")))?
        }
    };
    let max_lookback_millis = match claims.get("max_lookback") {
        None => None,
        Some(lookback) => Some(
            lookback
                .as_str()
                .and_then(crate::key_options::parse_lookback)
                .ok_or_else(|| {
                    refused("max_lookback must be a duration such as \"7 days\"".into())
                })?,
        ),
    };
    Ok(TokenClaims {
        token_id,
        expires_at_secs,
        permitted,
        filters,
        max_lookback_millis,
    })
}

/// Whether `id` can name a token (`jti`).
pub fn is_token_id(id: &str) -> bool {
    (1..=MAX_TOKEN_ID_CHARS).contains(&id.len())
        && id
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'-')
}

/// Mints a token from an access key's secret and a claims object: what a backend does (tests, the
/// benchmark and `keyhole token mint` use it).
pub fn mint(secret: &str, claims: &Value) -> String {
    let signing_key = signing_key_of_secret(secret);
    let header = json!({"alg": "EdDSA", "typ": "JWT", "kid": key_id_of_secret(secret)});
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let signature = signing_key.sign(signing_input.as_bytes());
    format!(
        "{signing_input}.{}",
        URL_SAFE_NO_PAD.encode(signature.to_bytes())
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    const NOW: i64 = 1_800_000_000;

    fn claims() -> Value {
        json!({"exp": NOW + 3600, "jti": "t-1", "filters": [{"property_name": "user", "operator": "eq", "property_value": "u1"}], "permitted": ["queries"]})
    }

    #[test]
    fn a_minted_token_verifies_and_carries_its_claims() {
        let token = mint(SECRET, &claims());
        let unverified = UnverifiedToken::decode(&token).unwrap();
        assert_eq!(unverified.key_id(), key_id_of_secret(SECRET));
        let claims = unverified.verify(NOW).unwrap();
        assert_eq!(claims.token_id, "t-1");
        assert_eq!(claims.filters.len(), 1);
        assert_eq!(claims.permitted, Some(vec![Operation::Queries]));
        assert!(looks_like_token(&token));
        assert!(!looks_like_token(SECRET));
    }

    #[test]
    fn tampering_expiry_and_unknown_claims_are_refused() {
        let token = mint(SECRET, &claims());
        let (head, _) = token.rsplit_once('.').unwrap();
        let other = mint(&SECRET.replace('0', "1"), &claims());
        let forged = format!("{head}.{}", other.rsplit_once('.').unwrap().1);
        assert_eq!(
            UnverifiedToken::decode(&forged).unwrap().verify(NOW),
            Err(TokenError::BadSignature)
        );
        let widened_payload =
            URL_SAFE_NO_PAD.encode(json!({"exp": NOW + 3600, "jti": "t-1"}).to_string());
        let parts: Vec<&str> = token.split('.').collect();
        let widened = format!("{}.{widened_payload}.{}", parts[0], parts[2]);
        assert_eq!(
            UnverifiedToken::decode(&widened).unwrap().verify(NOW),
            Err(TokenError::BadSignature)
        );
        assert_eq!(
            UnverifiedToken::decode(&token).unwrap().verify(NOW + 3600),
            Err(TokenError::Expired)
        );
        for bad in [
            json!({"exp": NOW + 3600, "jti": "t", "filter": []}),
            json!({"exp": NOW + 3600}),
            json!({"exp": NOW + 3600, "jti": "a b"}),
            json!({"exp": NOW + MAX_TOKEN_LIFETIME_SECS + 10, "jti": "t"}),
            json!({"exp": NOW + 3600, "jti": "t", "permitted": ["everything"]}),
            json!({"exp": NOW + 3600, "jti": "t", "filters": [{"property_name": "a", "operator": "eq"}]}),
            json!({"exp": NOW + 3600, "jti": "t", "nbf": NOW + 60}),
            json!({"exp": "soon", "jti": "t"}),
        ] {
            let token = mint(SECRET, &bad);
            assert!(
                UnverifiedToken::decode(&token)
                    .unwrap()
                    .verify(NOW)
                    .is_err(),
                "{bad}"
            );
        }
        for malformed in [
            "a.b",
            "a.b.c.d",
            "e30.e30.",
            &"x".repeat(MAX_TOKEN_BYTES + 1),
        ] {
            assert!(UnverifiedToken::decode(malformed).is_err(), "{malformed}");
        }
        let none_alg = format!(
            "{}.{}.",
            URL_SAFE_NO_PAD
                .encode(json!({"alg": "none", "kid": key_id_of_secret(SECRET)}).to_string()),
            URL_SAFE_NO_PAD.encode(claims().to_string())
        );
        assert!(UnverifiedToken::decode(&none_alg).is_err());
    }
}
