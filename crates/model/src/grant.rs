//! The grant: everything one presented credential may do, as a typed value built once when the metadata
//! store loads the key (or verifies an embed token) and handed to handlers by the server's auth
//! extractor. No code downstream reads a key's JSON options; it asks the grant.
//!
//! A grant is built only by [`Grant::for_project_key`], [`Grant::from_stored_access_key`] and
//! [`Grant::narrowed_by_token`]. Each either succeeds with the full set of rules or fails: a stored key
//! whose permissions or options no longer parse is refused, never read with a rule missing (a dropped
//! filter would show a tenant every tenant's events).
//!
//! Design: the fields are private so no other crate can assemble a wider grant by hand; a token's grant
//! is its parent's with the token's narrowing applied, so revoking, updating or deleting the parent acts on
//! every token at the next request.

use serde::Serialize;
use serde_json::{Map, Value};

use crate::embed_token::TokenClaims;
use crate::key_options::{
    DatasetOperation, KeyDefinitionError, KeyLimits, KeyOptions, StoredQueryRules, invalid,
};
use crate::keys::{KeyHash, Operation};
use crate::query::Filter;
use crate::timestamp::EpochMillis;

/// The kinds of key a project has. The project's write and read keys are access keys with fixed
/// permissions (Keen: write = `["writes"]`, read = queries, saved/cached queries, datasets, schema).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyKind {
    /// The project's master key.
    Master,
    /// The project's write key.
    Write,
    /// The project's read key.
    Read,
    /// A key made with the access-key API: its own `permitted` and `options`.
    Access,
}

impl KeyKind {
    /// The kind as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyKind::Master => "master",
            KeyKind::Write => "write",
            KeyKind::Read => "read",
            KeyKind::Access => "access",
        }
    }

    /// The kind stored as `text`.
    pub fn parse(text: &str) -> Option<KeyKind> {
        [
            KeyKind::Master,
            KeyKind::Write,
            KeyKind::Read,
            KeyKind::Access,
        ]
        .into_iter()
        .find(|kind| kind.as_str() == text)
    }

    /// What a project key of this kind may do (access keys carry their own list).
    pub fn permitted(self) -> Vec<Operation> {
        match self {
            KeyKind::Master => Operation::ALL.to_vec(),
            KeyKind::Write => vec![Operation::Writes],
            KeyKind::Read => Operation::READ_KEY.to_vec(),
            KeyKind::Access => Vec::new(),
        }
    }
}

/// Which stored queries a rule is about (`options.saved_queries` / `options.cached_queries`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoredQueryKind {
    /// A saved query's result.
    Saved,
    /// A cached query's result.
    Cached,
}

/// An access key as the metadata store holds it, before it is trusted.
#[derive(Clone, Debug)]
pub struct StoredAccessKey<'a> {
    /// The project of the key.
    pub project_id: &'a str,
    /// The SHA-256 of the key's secret.
    pub key_hash: KeyHash,
    /// The key's display prefix.
    pub key_prefix: &'a str,
    /// The key's name.
    pub name: &'a str,
    /// Whether the key is active (not revoked).
    pub is_active: bool,
    /// When the key expires, if it does.
    pub expires_at: Option<EpochMillis>,
    /// The stored `permitted` names.
    pub permitted: &'a [String],
    /// The stored `options` object.
    pub options: &'a Value,
    /// The key secret the request presented (`None` for an embed token): opens a sealed webhook secret.
    pub presented_secret: Option<&'a str>,
}

/// What one credential may do.
#[derive(Clone, Debug, PartialEq)]
pub struct Grant {
    project_id: String,
    kind: KeyKind,
    key_hash: KeyHash,
    key_prefix: String,
    name: Option<String>,
    is_active: bool,
    expires_at: Option<EpochMillis>,
    operations: Vec<Operation>,
    options: KeyOptions,
    uniqueness_scope: Option<String>,
    token_id: Option<String>,
}

impl Grant {
    /// A project's master, write or read key.
    pub fn for_project_key(
        project_id: &str,
        kind: KeyKind,
        key_hash: KeyHash,
        key_prefix: &str,
        is_active: bool,
    ) -> Grant {
        Grant {
            project_id: project_id.to_string(),
            kind,
            key_hash,
            key_prefix: key_prefix.to_string(),
            name: None,
            is_active,
            expires_at: None,
            operations: kind.permitted(),
            options: KeyOptions::default(),
            uniqueness_scope: None,
            token_id: None,
        }
    }

    /// An access key, from what the metadata store holds: refused if any part no longer parses.
    pub fn from_stored_access_key(
        stored: &StoredAccessKey<'_>,
    ) -> Result<Grant, KeyDefinitionError> {
        let operations = stored
            .permitted
            .iter()
            .map(|name| {
                Operation::from_keen_name(name)
                    .ok_or_else(|| invalid(format!("{name} is not a permission")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut options = KeyOptions::parse(stored.options)?;
        options.writes.webhook = options
            .writes
            .webhook
            .map(|rule| rule.opened(stored.presented_secret));
        let uniqueness_scope = options
            .writes
            .autofill
            .as_ref()
            .and_then(|autofill| uniqueness_scope_of(autofill.source()));
        Ok(Grant {
            project_id: stored.project_id.to_string(),
            kind: KeyKind::Access,
            key_hash: stored.key_hash,
            key_prefix: stored.key_prefix.to_string(),
            name: Some(stored.name.to_string()),
            is_active: stored.is_active,
            expires_at: stored.expires_at,
            operations,
            options,
            uniqueness_scope,
            token_id: None,
        })
    }

    /// The grant of an embed token derived from this (access) key: the same rules, narrowed by the
    /// token's claims — its filters AND-ed to the key's, its operations a subset of the key's, its expiry
    /// the earlier of the two, its look-back the shorter. A claim that would widen the key is an error.
    pub fn narrowed_by_token(&self, claims: &TokenClaims) -> Result<Grant, KeyDefinitionError> {
        let mut narrowed = self.clone();
        if let Some(operations) = &claims.permitted {
            if let Some(wider) = operations.iter().find(|op| !self.operations.contains(op)) {
                return Err(invalid(format!(
                    "the token claims '{}', which its key does not permit",
                    wider.keen_name()
                )));
            }
            narrowed.operations.clone_from(operations);
        }
        narrowed
            .options
            .queries
            .filters
            .extend(claims.filters.iter().cloned());
        if let Some(lookback) = claims.max_lookback_millis {
            let current = narrowed.options.queries.max_lookback_millis;
            narrowed.options.queries.max_lookback_millis =
                Some(current.map_or(lookback, |current| current.min(lookback)));
        }
        let token_expiry = claims.expires_at_secs.saturating_mul(1000);
        narrowed.expires_at = Some(
            self.expires_at
                .map_or(token_expiry, |parent| parent.min(token_expiry)),
        );
        narrowed.token_id = Some(claims.token_id.clone());
        Ok(narrowed)
    }

    /// The project the grant is for.
    pub fn project_id(&self) -> &str {
        &self.project_id
    }

    /// Which kind of key it comes from.
    pub fn kind(&self) -> KeyKind {
        self.kind
    }

    /// The hash of the key (the parent key, for a token): what limits, usage and audit are kept by.
    pub fn key_hash(&self) -> KeyHash {
        self.key_hash
    }

    /// The key's display prefix (the parent key's, for a token).
    pub fn key_prefix(&self) -> &str {
        &self.key_prefix
    }

    /// The access key's name (project keys have none).
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// Roughly how much memory the grant holds (see `footprint`): what a cache bounded in bytes charges
    /// for it.
    pub fn approximate_bytes(&self) -> usize {
        std::mem::size_of::<Grant>() + crate::footprint::debug_bytes(self)
    }

    /// The embed token's id, when the credential is a token.
    pub fn token_id(&self) -> Option<&str> {
        self.token_id.as_deref()
    }

    /// Whether the key is active (not revoked).
    pub fn is_active(&self) -> bool {
        self.is_active
    }

    /// When the key (or token) expires, if it does.
    pub fn expires_at(&self) -> Option<EpochMillis> {
        self.expires_at
    }

    /// Active and not expired at `now`.
    pub fn is_usable_at(&self, now: EpochMillis) -> bool {
        self.is_active && self.expires_at.is_none_or(|expiry| now < expiry)
    }

    /// The operations it permits.
    pub fn operations(&self) -> &[Operation] {
        &self.operations
    }

    /// Whether it permits `operation`.
    pub fn permits(&self, operation: Operation) -> bool {
        self.operations.contains(&operation)
    }

    /// The filters AND-ed into every read.
    pub fn forced_query_filters(&self) -> &[Filter] {
        &self.options.queries.filters
    }

    /// How far back its reads may look, if it limits them.
    pub fn max_lookback_millis(&self) -> Option<i64> {
        self.options.queries.max_lookback_millis
    }

    /// The earliest event time a read at `now` may see (`options.queries.max_lookback`).
    pub fn read_window_start(&self, now: EpochMillis) -> Option<EpochMillis> {
        self.max_lookback_millis()
            .map(|lookback| now.saturating_sub(lookback))
    }

    /// What it stamps onto every event it writes, if anything.
    pub fn autofill(&self) -> Option<&std::sync::Arc<crate::autofill::Autofill>> {
        self.options.writes.autofill.as_ref()
    }

    /// The collections the key may write to (`None` for any).
    pub fn writable_collections(&self) -> Option<&[String]> {
        self.options.writes.collections.as_deref()
    }

    /// Whether it may write to `collection` (`options.writes.collections`).
    pub fn may_write_to(&self, collection: &str) -> bool {
        self.writable_collections()
            .is_none_or(|names| names.iter().any(|name| name == collection))
    }

    /// The deduplication scope of the key's writes (see `event::uniqueness_key`): a digest of its
    /// autofill, so keys that stamp the same tenant share one scope and keys of different tenants never do.
    /// Keys without autofill write unscoped: they may write any event, another tenant's included.
    pub fn uniqueness_scope(&self) -> Option<&str> {
        self.uniqueness_scope.as_deref()
    }

    /// Its rate limits and quotas.
    pub fn limits(&self) -> &KeyLimits {
        &self.options.limits
    }

    /// Whether the key may run the saved or cached query `name`: not `blocked`, and on `allowed` when
    /// there is such a list. Blocked wins.
    pub fn allows_stored_query(&self, kind: StoredQueryKind, name: &str) -> bool {
        let rules: &StoredQueryRules = match kind {
            StoredQueryKind::Saved => &self.options.saved_queries,
            StoredQueryKind::Cached => &self.options.cached_queries,
        };
        if rules.blocked.iter().any(|blocked| blocked == name) {
            return false;
        }
        rules
            .allowed
            .as_ref()
            .is_none_or(|allowed| allowed.iter().any(|allowed| allowed == name))
    }

    /// Filters forced on saved-query results: `saved_queries.filters` on top of `queries.filters`.
    pub fn stored_query_filters(&self) -> Vec<Filter> {
        let mut filters = self.options.queries.filters.clone();
        filters.extend(self.options.saved_queries.filters.iter().cloned());
        filters
    }

    /// The signature rule deliveries written with this key must satisfy, if any.
    pub fn webhook_rule(&self) -> Option<&crate::webhook::WebhookRule> {
        self.options.writes.webhook.as_ref()
    }

    /// Whether a request whose page origin is `origin` may use the key: always without `options.origins`;
    /// with it, the origin must be known (a browser sends it as `Origin`, or its page in `Referer`) and
    /// match one of the listed origins. A request that names no origin is refused: `<img>` tags, no-cors
    /// fetches and plain links send neither header, and letting them through would let every site use the
    /// key.
    pub fn check_origin(&self, origin: Option<&str>) -> Result<(), crate::origins::OriginRefusal> {
        let Some(patterns) = &self.options.origins else {
            return Ok(());
        };
        let Some(origin) = origin else {
            return Err(crate::origins::OriginRefusal::Missing);
        };
        if patterns.iter().any(|pattern| pattern.matches(origin)) {
            return Ok(());
        }
        Err(crate::origins::OriginRefusal::NotListed)
    }

    /// Whether the key may do `operation` on dataset `name` (`None` for listing). Blocked wins.
    pub fn allows_dataset(&self, operation: DatasetOperation, name: Option<&str>) -> bool {
        let rules = &self.options.datasets;
        if rules
            .operations
            .as_ref()
            .is_some_and(|operations| !operations.contains(&operation))
        {
            return false;
        }
        let Some(name) = name else { return true };
        if rules.blocked.iter().any(|blocked| blocked == name) {
            return false;
        }
        rules
            .allowed
            .as_ref()
            .is_none_or(|allowed| allowed.contains_key(name))
    }

    /// The `index_by` values the key may read of dataset `name`; `None` when unrestricted.
    pub fn dataset_index_restriction(&self, name: &str) -> Option<&Map<String, Value>> {
        self.options
            .datasets
            .allowed
            .as_ref()?
            .get(name)?
            .index_by
            .as_ref()
    }
}

fn uniqueness_scope_of(autofill: &Map<String, Value>) -> Option<String> {
    use sha2::{Digest, Sha256};
    if autofill.is_empty() {
        return None;
    }
    // serde_json's maps are ordered by key, so equal objects serialize alike.
    let canonical = serde_json::to_vec(autofill).ok()?;
    Some(hex::encode(&Sha256::digest(&canonical)[..16]))
}

/// The properties a project's data should be ordered by, from the grants of its usable access keys: the
/// properties their forced filters test with `eq` at the top level, most used first (ties by name), at
/// most two. A SaaS that scopes each customer's key by `tenant_id` gets `["tenant_id"]`, so one customer's
/// rows are stored together.
pub fn clustering_properties<'a>(grants: impl IntoIterator<Item = &'a Grant>) -> Vec<String> {
    let mut uses: std::collections::BTreeMap<String, usize> = std::collections::BTreeMap::new();
    for grant in grants {
        let mut seen = std::collections::BTreeSet::new();
        for filter in grant.forced_query_filters() {
            if let Filter::Condition {
                property,
                operator: crate::query::Operator::Eq,
                ..
            } = filter
                && seen.insert(property.clone())
            {
                *uses.entry(property.clone()).or_default() += 1;
            }
        }
    }
    let mut ranked: Vec<(String, usize)> = uses.into_iter().collect();
    ranked.sort_by(|left, right| right.1.cmp(&left.1).then_with(|| left.0.cmp(&right.0)));
    ranked
        .into_iter()
        .take(2)
        .map(|(property, _)| property)
        .collect()
}

#[cfg(test)]
mod tests;
