//! Signed webhook deliveries (`options.writes.webhook`, a Keyhole extension): a key for a third-party
//! webhook may require every delivery to be signed by the provider with a shared secret — HMAC-SHA256 over
//! the raw body, in GitHub's form (`X-Hub-Signature-256: sha256=<hex>`), Stripe's (`Stripe-Signature:
//! t=<unix time>,v1=<hex of HMAC over "t.body">`, refused when older than the tolerance) or a plain
//! `<header>: <hex>`.
//!
//! Design: the metadata store holds nothing that could check or forge a signature: the shared secret is
//! kept sealed (XChaCha20-Poly1305) under a key derived from the access key's own secret, which only its
//! holders — the provider, in the delivery URL's `api_key` — have. It is opened when a delivery presents
//! the key; an embed token of such a key carries no key secret and cannot write. A definition may give the
//! secret in clear (`secret`, sealed before it is stored) or sealed (`secret_sealed`, as the key object
//! shows it, so a read-modify-write of the key keeps it).

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hmac::{Hmac, Mac};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use crate::key_options::{KeyDefinitionError, invalid};

/// Default age beyond which a Stripe-style signed delivery is refused (Stripe's own default).
pub(crate) const DEFAULT_TOLERANCE_SECONDS: u64 = 300;
/// Shortest and longest accepted shared secrets.
const SECRET_CHARS: std::ops::RangeInclusive<usize> = 16..=512;
/// Longest signature header looked at; a longer one is refused unread.
pub(crate) const MAX_SIGNATURE_HEADER_BYTES: usize = 1024;
/// Most `v1=` signatures a Stripe-style header may carry (Stripe sends one per active secret, two while
/// rolling a secret).
pub(crate) const MAX_SIGNATURE_CANDIDATES: usize = 8;

/// How deliveries are signed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SignatureScheme {
    /// `X-Hub-Signature-256: sha256=<hex>`.
    GitHub,
    /// `Stripe-Signature: t=<unix seconds>,v1=<hex>[,v1=…]`, over `"<t>.<body>"`.
    Stripe,
    /// An HMAC-SHA256 of the body in the named header: `<header>: <hex>` (optionally `sha256=<hex>`).
    HmacSha256 {
        /// The header holding the signature.
        header: String,
    },
}

/// The shared secret as the key holds it.
#[derive(Clone, PartialEq, Eq)]
pub enum WebhookSecret {
    /// Given in clear in a definition being created or updated; sealed before it is stored.
    Clear(String),
    /// As stored.
    Sealed(String),
    /// Opened with the presented key secret, ready to check deliveries.
    Open(Vec<u8>),
}

impl std::fmt::Debug for WebhookSecret {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(match self {
            WebhookSecret::Clear(_) => "Clear(…)",
            WebhookSecret::Sealed(_) => "Sealed(…)",
            WebhookSecret::Open(_) => "Open(…)",
        })
    }
}

/// `options.writes.webhook`.
#[derive(Clone, Debug, PartialEq)]
pub struct WebhookRule {
    /// How deliveries are signed.
    pub scheme: SignatureScheme,
    /// How old a signed timestamp may be, in seconds.
    pub tolerance_seconds: u64,
    /// The signing secret (sealed with the key's secret when stored).
    pub secret: WebhookSecret,
}

/// Why a delivery was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeliveryRefusal {
    /// No signature was presented.
    Unsigned,
    /// The signature does not match the body.
    BadSignature,
    /// The header is longer than [`MAX_SIGNATURE_HEADER_BYTES`] or names more than
    /// [`MAX_SIGNATURE_CANDIDATES`] signatures: refused before any signature is computed.
    MalformedSignature,
    /// The signed timestamp is too old.
    Stale,
    /// The secret could not be opened (the key was presented as an embed token).
    SecretUnavailable,
}

impl DeliveryRefusal {
    /// What the client hears of the refusal.
    pub fn message(&self) -> &'static str {
        match self {
            DeliveryRefusal::Unsigned => {
                "This key accepts only signed webhook deliveries; the signature header is missing."
            }
            DeliveryRefusal::BadSignature => {
                "The webhook delivery's signature does not match its body."
            }
            DeliveryRefusal::MalformedSignature => {
                "The webhook delivery's signature header is longer than 1024 bytes or carries more than 8 signatures."
            }
            DeliveryRefusal::Stale => {
                "The webhook delivery's signature is older than the key's tolerance."
            }
            DeliveryRefusal::SecretUnavailable => {
                "Signed webhook deliveries must present the access key itself, not an embed token."
            }
        }
    }
}

/// Parses `options.writes.webhook`.
pub(crate) fn parse_webhook(value: &Value) -> Result<Option<WebhookRule>, KeyDefinitionError> {
    let object = match value {
        Value::Null => return Ok(None),
        Value::Object(object) => object,
        _ => return Err(invalid("options.writes.webhook must be an object.")),
    };
    const FIELDS: [&str; 5] = [
        "signature",
        "secret",
        "secret_sealed",
        "header",
        "tolerance_seconds",
    ];
    if let Some(unknown) = object.keys().find(|key| !FIELDS.contains(&key.as_str())) {
        return Err(invalid(format!(
            "options.writes.webhook has no field '{unknown}'."
        )));
    }
    let header = object.get("header").and_then(Value::as_str);
    let scheme = match object.get("signature").and_then(Value::as_str) {
        Some("github") => SignatureScheme::GitHub,
        Some("stripe") => SignatureScheme::Stripe,
        Some("hmac-sha256") => SignatureScheme::HmacSha256 {
            header: header
                .filter(|header| !header.is_empty() && header.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
                .ok_or_else(|| invalid("options.writes.webhook.header must name the header carrying the signature."))?
                .to_ascii_lowercase(),
        },
        _ => return Err(invalid("options.writes.webhook.signature must be \"github\", \"stripe\" or \"hmac-sha256\".")),
    };
    if header.is_some() && !matches!(scheme, SignatureScheme::HmacSha256 { .. }) {
        return Err(invalid(
            "options.writes.webhook.header is only for \"hmac-sha256\".",
        ));
    }
    let tolerance_seconds = match object.get("tolerance_seconds") {
        None | Some(Value::Null) => DEFAULT_TOLERANCE_SECONDS,
        Some(value) => value
            .as_u64()
            .filter(|seconds| (1..=86_400).contains(seconds))
            .ok_or_else(|| {
                invalid("options.writes.webhook.tolerance_seconds must be 1 to 86400.")
            })?,
    };
    let secret = match (object.get("secret"), object.get("secret_sealed")) {
        (Some(Value::String(secret)), None) if SECRET_CHARS.contains(&secret.chars().count()) => {
            WebhookSecret::Clear(secret.clone())
        }
        (None, Some(Value::String(sealed))) => WebhookSecret::Sealed(sealed.clone()),
        _ => {
            return Err(invalid(
                "options.writes.webhook needs the provider's signing secret (16 to 512 characters) in secret.",
            ));
        }
    };
    Ok(Some(WebhookRule {
        scheme,
        tolerance_seconds,
        secret,
    }))
}

fn cipher_for(key_secret: &str) -> XChaCha20Poly1305 {
    let key = Sha256::digest(format!("keyhole-webhook-secret-v1:{key_secret}").as_bytes());
    XChaCha20Poly1305::new(&key)
}

fn seal(secret: &[u8], key_secret: &str) -> String {
    let mut nonce = [0u8; 24];
    rand::fill(&mut nonce);
    let sealed = cipher_for(key_secret)
        .encrypt(XNonce::from_slice(&nonce), secret)
        .expect("sealing a short secret cannot fail");
    let mut bytes = nonce.to_vec();
    bytes.extend(sealed);
    STANDARD.encode(bytes)
}

fn open(sealed: &str, key_secret: &str) -> Option<Vec<u8>> {
    let bytes = STANDARD.decode(sealed).ok()?;
    if bytes.len() < 24 {
        return None;
    }
    let (nonce, ciphertext) = bytes.split_at(24);
    cipher_for(key_secret)
        .decrypt(XNonce::from_slice(nonce), ciphertext)
        .ok()
}

/// The key options JSON as it is stored: a clear webhook secret sealed under `key_secret`; a sealed one
/// must open with it (else the definition is refused: it was sealed for another key).
pub fn seal_options(options: &Value, key_secret: &str) -> Result<Value, KeyDefinitionError> {
    let Some(webhook) = options
        .get("writes")
        .and_then(|writes| writes.get("webhook"))
        .and_then(Value::as_object)
    else {
        return Ok(options.clone());
    };
    let mut sealed_webhook: Map<String, Value> = webhook.clone();
    if let Some(Value::String(secret)) = sealed_webhook.remove("secret") {
        sealed_webhook.insert(
            "secret_sealed".into(),
            json!(seal(secret.as_bytes(), key_secret)),
        );
    } else if let Some(Value::String(sealed)) = webhook.get("secret_sealed")
        && open(sealed, key_secret).is_none()
    {
        return Err(invalid(
            "options.writes.webhook.secret_sealed was sealed for another key; give the secret in secret.",
        ));
    }
    let mut options = options.clone();
    options["writes"]["webhook"] = Value::Object(sealed_webhook);
    Ok(options)
}

impl WebhookRule {
    /// The rule with its secret opened with the presented key secret (`None`: presented as a token).
    #[must_use]
    pub fn opened(&self, key_secret: Option<&str>) -> WebhookRule {
        let secret = match (&self.secret, key_secret) {
            (WebhookSecret::Sealed(sealed), Some(key_secret)) => open(sealed, key_secret)
                .map_or_else(
                    || WebhookSecret::Sealed(sealed.clone()),
                    WebhookSecret::Open,
                ),
            (other, _) => other.clone(),
        };
        WebhookRule {
            secret,
            ..self.clone()
        }
    }

    /// The (lower-case) name of the header carrying the signature.
    pub fn header_name(&self) -> &str {
        match &self.scheme {
            SignatureScheme::GitHub => "x-hub-signature-256",
            SignatureScheme::Stripe => "stripe-signature",
            SignatureScheme::HmacSha256 { header } => header.as_str(),
        }
    }

    /// The checks of a delivery that need no body: the secret is open, the header is present, at most
    /// [`MAX_SIGNATURE_HEADER_BYTES`] long with at most [`MAX_SIGNATURE_CANDIDATES`] signatures, and a
    /// Stripe-style timestamp is within the tolerance. The server runs them before it reads the body, so
    /// an unsigned, malformed or stale delivery costs no more than its headers.
    pub fn precheck(&self, signature: Option<&str>, now: i64) -> Result<(), DeliveryRefusal> {
        self.parse_signature(signature, now).map(|_| ())
    }

    /// Checks a delivery: `signature` is the value of its [`WebhookRule::header_name`] header, `now` is
    /// Unix seconds. Everything [`WebhookRule::precheck`] checks comes first; then the expected signature
    /// is computed once (one HMAC over the body) and every candidate compared with it in constant time.
    pub fn verify(
        &self,
        signature: Option<&str>,
        body: &[u8],
        now: i64,
    ) -> Result<(), DeliveryRefusal> {
        let (secret, signed_prefix, candidates) = self.parse_signature(signature, now)?;
        let mut mac =
            <Hmac<Sha256> as Mac>::new_from_slice(secret).expect("HMAC takes any key length");
        if let Some(prefix) = &signed_prefix {
            mac.update(prefix.as_bytes());
        }
        mac.update(body);
        let expected = mac.finalize().into_bytes();
        let mut matched = subtle::Choice::from(0);
        for candidate in candidates {
            let mut decoded = [0u8; 32];
            if hex::decode_to_slice(candidate.trim(), &mut decoded).is_ok() {
                matched |= subtle::ConstantTimeEq::ct_eq(&decoded[..], &expected[..]);
            }
        }
        if bool::from(matched) {
            Ok(())
        } else {
            Err(DeliveryRefusal::BadSignature)
        }
    }
}

/// A signature header taken apart: the open secret, what the scheme signs before the body (Stripe's
/// `"<t>."`), and the candidate signatures in hex.
type ParsedSignature<'a> = (&'a [u8], Option<String>, Vec<&'a str>);

impl WebhookRule {
    fn parse_signature<'a>(
        &'a self,
        signature: Option<&'a str>,
        now: i64,
    ) -> Result<ParsedSignature<'a>, DeliveryRefusal> {
        let WebhookSecret::Open(secret) = &self.secret else {
            return Err(DeliveryRefusal::SecretUnavailable);
        };
        let signature = signature.ok_or(DeliveryRefusal::Unsigned)?;
        if signature.len() > MAX_SIGNATURE_HEADER_BYTES {
            return Err(DeliveryRefusal::MalformedSignature);
        }
        match &self.scheme {
            SignatureScheme::GitHub => {
                let hex_signature = signature
                    .strip_prefix("sha256=")
                    .ok_or(DeliveryRefusal::BadSignature)?;
                Ok((secret, None, vec![hex_signature]))
            }
            SignatureScheme::HmacSha256 { .. } => Ok((
                secret,
                None,
                vec![signature.strip_prefix("sha256=").unwrap_or(signature)],
            )),
            SignatureScheme::Stripe => {
                let mut timestamp = None;
                let mut candidates = Vec::new();
                for part in signature.split(',') {
                    match part.trim().split_once('=') {
                        Some(("t", value)) => timestamp = value.parse::<i64>().ok(),
                        Some(("v1", value)) => candidates.push(value),
                        _ => {}
                    }
                    if candidates.len() > MAX_SIGNATURE_CANDIDATES {
                        return Err(DeliveryRefusal::MalformedSignature);
                    }
                }
                let timestamp = timestamp.ok_or(DeliveryRefusal::BadSignature)?;
                if now.saturating_sub(timestamp).unsigned_abs() > self.tolerance_seconds {
                    return Err(DeliveryRefusal::Stale);
                }
                Ok((secret, Some(format!("{timestamp}.")), candidates))
            }
        }
    }
}

/// An HMAC-SHA256 signature in hex (for tests and for documenting the schemes).
pub fn hmac_sha256_hex(secret: &[u8], parts: &[&[u8]]) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret).expect("HMAC takes any key length");
    for part in parts {
        mac.update(part);
    }
    hex::encode(mac.finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "0f3c6b1d2e4a59687766554433221100ffeeddccbbaa99887766554433221100";

    fn rule(definition: Value) -> WebhookRule {
        let sealed = seal_options(&json!({"writes": {"webhook": definition}}), KEY).unwrap();
        assert!(
            sealed["writes"]["webhook"].get("secret").is_none(),
            "the clear secret is not stored"
        );
        parse_webhook(&sealed["writes"]["webhook"])
            .unwrap()
            .unwrap()
            .opened(Some(KEY))
    }

    #[test]
    fn github_stripe_and_plain_signatures_are_checked() {
        let secret = b"whsec_test_0123456789abcdef";
        let body = br#"{"action":"opened"}"#;
        let github = rule(json!({"signature": "github", "secret": "whsec_test_0123456789abcdef"}));
        let signature = format!("sha256={}", hmac_sha256_hex(secret, &[body]));
        let headers = |_name: &str, value: String| value;
        assert_eq!(
            github.verify(
                Some(&*headers("x-hub-signature-256", signature.clone())),
                body,
                0
            ),
            Ok(())
        );
        assert_eq!(
            github.verify(
                Some(&*headers("x-hub-signature-256", signature.clone())),
                b"{}",
                0
            ),
            Err(DeliveryRefusal::BadSignature)
        );
        assert_eq!(github.verify(None, body, 0), Err(DeliveryRefusal::Unsigned));

        let stripe = rule(json!({"signature": "stripe", "secret": "whsec_test_0123456789abcdef"}));
        let now = 1_800_000_000i64;
        let signed = |t: i64| {
            format!(
                "t={t},v1={}",
                hmac_sha256_hex(secret, &[t.to_string().as_bytes(), b".", body])
            )
        };
        assert_eq!(
            stripe.verify(
                Some(&*headers("stripe-signature", signed(now - 10))),
                body,
                now
            ),
            Ok(())
        );
        assert_eq!(
            stripe.verify(
                Some(&*headers("stripe-signature", signed(now - 1000))),
                body,
                now
            ),
            Err(DeliveryRefusal::Stale)
        );
        assert_eq!(
            stripe.verify(Some(&*headers("stripe-signature", signed(now))), b"x", now),
            Err(DeliveryRefusal::BadSignature)
        );

        let plain = rule(
            json!({"signature": "hmac-sha256", "header": "X-Signature", "secret": "whsec_test_0123456789abcdef"}),
        );
        assert_eq!(
            plain.verify(
                Some(&*headers("x-signature", hmac_sha256_hex(secret, &[body]))),
                body,
                0
            ),
            Ok(())
        );

        // A stale delivery is refused before its signature is computed; a header with too many signatures
        // or too long is refused unread.
        assert_eq!(
            stripe.verify(
                Some(&*headers(
                    "stripe-signature",
                    format!("t={},v1=00", now - 1000)
                )),
                body,
                now
            ),
            Err(DeliveryRefusal::Stale)
        );
        let many = format!(
            "t={now},{}",
            ["v1=00"; MAX_SIGNATURE_CANDIDATES + 1].join(",")
        );
        assert_eq!(
            stripe.verify(Some(&*headers("stripe-signature", many)), body, now),
            Err(DeliveryRefusal::MalformedSignature)
        );
        let rolled = format!(
            "t={now},v1=00,v1=zz,{}",
            &signed(now)[format!("t={now},").len()..]
        );
        assert_eq!(
            stripe.verify(Some(&*headers("stripe-signature", rolled)), body, now),
            Ok(())
        );
        assert_eq!(
            github.verify(
                Some(&*headers(
                    "x-hub-signature-256",
                    format!("sha256={}", "0".repeat(2000))
                )),
                body,
                0
            ),
            Err(DeliveryRefusal::MalformedSignature)
        );

        // Without the key secret (an embed token) the rule cannot check anything: refused.
        let sealed_only = parse_webhook(&seal_options(&json!({"writes": {"webhook": {"signature": "github", "secret": "whsec_test_0123456789abcdef"}}}), KEY).unwrap()["writes"]["webhook"]).unwrap().unwrap().opened(None);
        assert_eq!(
            sealed_only.verify(Some(&*headers("x-hub-signature-256", signature)), body, 0),
            Err(DeliveryRefusal::SecretUnavailable)
        );
    }

    #[test]
    fn definitions_are_checked_and_sealed_secrets_stay_with_their_key() {
        for bad in [
            json!({"signature": "md5", "secret": "0123456789abcdef"}),
            json!({"signature": "github", "secret": "short"}),
            json!({"signature": "github"}),
            json!({"signature": "github", "secret": "0123456789abcdef", "header": "X"}),
            json!({"signature": "hmac-sha256", "secret": "0123456789abcdef"}),
            json!({"signature": "stripe", "secret": "0123456789abcdef", "tolerance_seconds": 0}),
        ] {
            assert!(parse_webhook(&bad).is_err(), "{bad}");
        }
        let sealed = seal_options(
            &json!({"writes": {"webhook": {"signature": "github", "secret": "0123456789abcdef"}}}),
            KEY,
        )
        .unwrap();
        assert!(
            seal_options(&sealed, KEY).is_ok(),
            "a read-modify-write keeps the sealed secret"
        );
        assert!(seal_options(&sealed, "another key").is_err());
    }
}
