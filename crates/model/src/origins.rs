//! Origin-bound keys (`options.origins`, a Keyhole extension): the web origins a key may be used from,
//! exact (`https://app.example.com`, `http://localhost:8080`) or with a leading wildcard label
//! (`https://*.example.com`: any subdomain at any depth, not `example.com` itself).
//!
//! Design: a pattern is `scheme://host[:port]` with scheme `http` or `https` and nothing after the
//! authority, compared case-insensitively, default ports (`:80` for http, `:443` for https) dropped on
//! both sides. A wildcard must leave at least two labels and may not cover a public suffix of the Public
//! Suffix List (`*.com`, `*.co.uk`, `*.github.io` are refused when the key is saved: they would match
//! every site registered under them). A request's origin is its `Origin` header or, when it has none
//! (`<img>` tags, no-cors fetches, plain links), the origin of its `Referer`; a request with neither is
//! refused (`Grant::check_origin`). This stops other websites' pages from using a leaked key in their
//! visitors' browsers; it cannot stop a script outside a browser, which may send any header it likes.

use serde_json::Value;

use crate::key_options::{KeyDefinitionError, invalid};

/// Most origins one key may list.
pub(crate) const MAX_ORIGINS: usize = 100;

/// Why an origin-bound key refused a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OriginRefusal {
    /// The request names no origin (neither `Origin` nor `Referer`).
    Missing,
    /// The request's origin is not one the key lists.
    NotListed,
}

/// Whether `host` is itself a public suffix on the Public Suffix List (`com`, `co.uk`, `github.io`).
fn is_public_suffix(host: &str) -> bool {
    psl::suffix(host.as_bytes())
        .is_some_and(|suffix| suffix.is_known() && suffix.as_bytes() == host.as_bytes())
}

/// One allowed origin.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OriginPattern {
    scheme: String,
    /// The host, or for a wildcard the suffix after `*.`.
    host: String,
    wildcard: bool,
    port: Option<u16>,
}

/// An origin split into its parts, default port dropped; `None` when it is not `scheme://host[:port]`.
fn split_origin(text: &str) -> Option<(String, String, Option<u16>)> {
    let text = text.trim().to_ascii_lowercase();
    let (scheme, rest) = text.split_once("://")?;
    if !matches!(scheme, "http" | "https") || rest.is_empty() {
        return None;
    }
    if rest.contains(['/', '?', '#', '@', ' ']) {
        return None;
    }
    // An IPv6 host is bracketed (`[::1]:8080`); otherwise the port follows the last colon.
    let (host, port_text) = match rest.strip_prefix('[') {
        Some(bracketed) => {
            let (address, after) = bracketed.split_once(']')?;
            (
                format!("[{address}]"),
                after
                    .strip_prefix(':')
                    .map(str::to_string)
                    .or_else(|| after.is_empty().then(String::new))?,
            )
        }
        None => match rest.rsplit_once(':') {
            Some((host, port)) => (host.to_string(), port.to_string()),
            None => (rest.to_string(), String::new()),
        },
    };
    let port = match port_text.as_str() {
        "" => None,
        digits => Some(digits.parse::<u16>().ok()?),
    };
    if host.is_empty() {
        return None;
    }
    let default_port = if scheme == "https" { 443 } else { 80 };
    let port = port.filter(|port| *port != default_port);
    Some((scheme.to_string(), host, port))
}

impl OriginPattern {
    /// Parses an origin pattern as a key definition writes it (`https://*.acme.example`).
    pub fn parse(text: &str) -> Result<OriginPattern, KeyDefinitionError> {
        let refuse = || {
            invalid(format!(
                "options.origins: '{text}' is not an origin such as https://app.example.com or https://*.example.com."
            ))
        };
        let (scheme, host, port) = split_origin(text).ok_or_else(refuse)?;
        let (wildcard, host) = match host.strip_prefix("*.") {
            Some(suffix) => (true, suffix.to_string()),
            None => (false, host),
        };
        let labels: Vec<&str> = host.split('.').collect();
        let well_formed = labels.iter().all(|label| {
            !label.is_empty()
                && label.bytes().all(|byte| {
                    byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'[' | b']' | b':')
                })
        });
        if !well_formed || (wildcard && labels.len() < 2) {
            return Err(refuse());
        }
        if wildcard && is_public_suffix(&host) {
            return Err(invalid(format!(
                "options.origins: '{text}' would match every site under the public suffix '{host}'; list your own domain (https://*.your-domain.{host})."
            )));
        }
        Ok(OriginPattern {
            scheme,
            host,
            wildcard,
            port,
        })
    }

    /// Whether an `Origin` header value matches.
    pub fn matches(&self, origin: &str) -> bool {
        let Some((scheme, host, port)) = split_origin(origin) else {
            return false;
        };
        if scheme != self.scheme || port != self.port {
            return false;
        }
        if !self.wildcard {
            return host == self.host;
        }
        host.strip_suffix(&self.host)
            .and_then(|prefix| prefix.strip_suffix('.'))
            .is_some_and(|subdomain| !subdomain.is_empty())
    }

    /// The pattern as a key definition writes it.
    #[cfg(test)]
    fn to_text(&self) -> String {
        let wildcard = if self.wildcard { "*." } else { "" };
        match self.port {
            Some(port) => format!("{}://{wildcard}{}:{port}", self.scheme, self.host),
            None => format!("{}://{wildcard}{}", self.scheme, self.host),
        }
    }
}

/// Parses `options.origins` (`null` for no restriction).
pub(crate) fn parse_origins(
    value: &Value,
) -> Result<Option<Vec<OriginPattern>>, KeyDefinitionError> {
    let items = match value {
        Value::Null => return Ok(None),
        Value::Array(items) => items,
        _ => return Err(invalid("options.origins must be a list of origins.")),
    };
    if items.is_empty() || items.len() > MAX_ORIGINS {
        return Err(invalid(format!(
            "options.origins must list 1 to {MAX_ORIGINS} origins (leave it out to allow any)."
        )));
    }
    items
        .iter()
        .map(|item| {
            item.as_str()
                .ok_or_else(|| invalid("options.origins must be a list of origins."))
                .and_then(OriginPattern::parse)
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_and_wildcard_origins_match_as_documented() {
        let exact = OriginPattern::parse("https://App.Example.com").unwrap();
        assert!(exact.matches("https://app.example.com"));
        assert!(exact.matches("https://app.example.com:443"));
        assert!(!exact.matches("http://app.example.com"));
        assert!(!exact.matches("https://app.example.com:8443"));
        assert!(!exact.matches("https://evil-app.example.com"));
        assert!(!exact.matches("null"));
        let wildcard = OriginPattern::parse("https://*.example.com").unwrap();
        assert!(wildcard.matches("https://a.example.com"));
        assert!(wildcard.matches("https://a.b.example.com"));
        assert!(!wildcard.matches("https://example.com"));
        assert!(!wildcard.matches("https://evilexample.com"));
        assert!(!wildcard.matches("https://example.com.evil.org"));
        assert!(OriginPattern::parse("https://*.example.co.uk").is_ok());
        assert!(OriginPattern::parse("https://*.acme.github.io").is_ok());
        assert!(OriginPattern::parse("https://*.corp.internal").is_ok());
        let loopback = OriginPattern::parse("http://[::1]:3000").unwrap();
        assert!(loopback.matches("http://[::1]:3000"));
        assert!(
            OriginPattern::parse("http://[::1]")
                .unwrap()
                .matches("http://[::1]:80")
        );
        let local = OriginPattern::parse("http://localhost:8080").unwrap();
        assert!(local.matches("http://localhost:8080"));
        assert!(!local.matches("http://localhost:8081"));
        assert_eq!(local.to_text(), "http://localhost:8080");
        assert_eq!(wildcard.to_text(), "https://*.example.com");
    }

    #[test]
    fn refuses_what_is_not_an_origin() {
        for text in [
            "example.com",
            "ftp://example.com",
            "https://example.com/path",
            "https://*.com",
            "https://*.co.uk",
            "https://*.github.io",
            "http://*.COM.au",
            "https://a.*.example.com",
            "https://user@example.com",
            "https://example.com:99999",
            "https://",
            "*",
        ] {
            assert!(OriginPattern::parse(text).is_err(), "{text}");
        }
        assert!(parse_origins(&serde_json::json!([])).is_err());
        assert!(parse_origins(&serde_json::json!("https://a.com")).is_err());
        assert_eq!(parse_origins(&Value::Null).unwrap(), None);
    }
}
