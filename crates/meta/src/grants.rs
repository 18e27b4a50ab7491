//! Presented credential → [`Grant`]: a key secret is found by its hash (compared again in constant time),
//! an embed token by its `kid` (the parent access key's public key) and its signature. The grant is
//! built once here and cached (`key_cache`); a stored key whose permissions or options no longer parse is
//! refused and logged, never read with a rule missing.
//!
//! Activity, expiry, project and operation are the server's to check on every request (they depend on
//! the clock and the route); what this module refuses is what no request could use.

use std::sync::Arc;

use keyhole_model::embed_token::{self, TokenError, UnverifiedToken};
use keyhole_model::grant::StoredAccessKey;
use keyhole_model::timestamp::{EpochMillis, parse_timestamp};
use keyhole_model::{Grant, KeyHash, KeyKind};
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::audit::Refusal;
use crate::key_cache::CacheTicket;
use crate::{MetaError, MetaStore, Result};

/// What a presented credential resolved to.
#[derive(Clone, Debug)]
pub enum Resolution {
    /// The credential opens this grant.
    Granted(Arc<Grant>),
    /// The credential is refused, for this reason.
    Refused(Refusal),
}

/// A resolution, and for a grant read from the store, the ticket to cache it with once its request has
/// passed every check ([`MetaStore::cache_grant`]).
#[derive(Debug)]
pub struct Resolved {
    /// What the credential resolved to.
    pub resolution: Resolution,
    /// For a grant read from the store: cache it with this once its request passed every check.
    pub cache_ticket: Option<CacheTicket>,
}

/// The `project_keys` columns a grant is built from (a macro, so queries stay static strings).
macro_rules! key_columns {
    () => {
        "key_hash, key_prefix, project_id, kind, is_active, name, permitted, options, expires_at, token_key_id, \
         (SELECT suspended FROM tenants WHERE tenants.project_id = project_keys.project_id \
          AND tenants.tenant_id = project_keys.tenant_id) AS tenant_suspended"
    };
}

impl MetaStore {
    /// Resolves a key secret or an embed token presented at `now`.
    pub async fn resolve_credential(&self, presented: &str, now: EpochMillis) -> Result<Resolved> {
        let presented_hex = KeyHash::of_secret(presented).to_hex();
        let (cached, generation) = self.resolved_keys.lookup(&presented_hex);
        if let Some(grant) = cached {
            return Ok(Resolved {
                resolution: Resolution::Granted(grant),
                cache_ticket: None,
            });
        }
        let resolution = self
            .database
            .bounded_lookup(async {
                if embed_token::looks_like_token(presented) {
                    self.resolve_token(presented, now).await
                } else {
                    self.resolve_key_secret(presented).await
                }
            })
            .await?;
        let cache_ticket = matches!(resolution, Resolution::Granted(_)).then_some(CacheTicket {
            key_hash_hex: presented_hex,
            generation,
        });
        Ok(Resolved {
            resolution,
            cache_ticket,
        })
    }

    /// The bytes cached grants are charged, and how many there are.
    /// Bounds the grant cache to `bytes` (the server's memory budget share for grants).
    pub fn set_grant_cache_bytes(&self, bytes: usize) {
        self.resolved_keys.set_max_bytes(bytes);
    }

    /// The bytes the grant cache is charged, and how many grants it holds.
    pub fn grant_cache_usage(&self) -> (usize, usize) {
        self.resolved_keys.usage()
    }

    /// Caches a grant whose request passed every check (see `key_cache`).
    pub fn cache_grant(&self, ticket: CacheTicket, grant: Arc<Grant>) {
        self.resolved_keys.store(ticket, grant);
    }

    async fn resolve_key_secret(&self, secret: &str) -> Result<Resolution> {
        let presented = KeyHash::of_secret(secret);
        let row = sqlx::query(concat!(
            "SELECT ",
            key_columns!(),
            " FROM project_keys WHERE key_hash = $1"
        ))
        .bind(presented.to_hex())
        .fetch_optional(&self.database.pool)
        .await?;
        let Some(row) = row else {
            return Ok(Resolution::Refused(Refusal::UnknownKey));
        };
        let stored: String = row.try_get("key_hash")?;
        let stored =
            KeyHash::from_hex(&stored).ok_or_else(|| MetaError::Corrupt("key hash".into()))?;
        if !stored.matches(&presented) {
            return Ok(Resolution::Refused(Refusal::UnknownKey));
        }
        let resolution = grant_of_row(&row, Some(secret))?;
        let token_key_id: Option<String> = row.try_get("token_key_id")?;
        if matches!(&resolution, Resolution::Granted(grant) if grant.kind() == KeyKind::Access)
            && token_key_id.is_none()
        {
            self.record_token_key_id(&stored, secret).await;
        }
        Ok(resolution)
    }

    /// Keys made before embed tokens existed learn their token key id the first time they are presented
    /// (only then does Keyhole hold the secret it is derived from).
    async fn record_token_key_id(&self, key_hash: &KeyHash, secret: &str) {
        let recorded = sqlx::query("UPDATE project_keys SET token_key_id = $1 WHERE key_hash = $2")
            .bind(embed_token::key_id_of_secret(secret))
            .bind(key_hash.to_hex())
            .execute(&self.database.pool)
            .await;
        if let Err(error) = recorded {
            tracing::warn!(%error, "cannot record an access key's token key id");
        }
    }

    async fn resolve_token(&self, token: &str, now: EpochMillis) -> Result<Resolution> {
        let refused = |refusal| Ok(Resolution::Refused(refusal));
        let Ok(unverified) = UnverifiedToken::decode(token) else {
            return refused(Refusal::MalformedToken);
        };
        let row = sqlx::query(concat!(
            "SELECT ",
            key_columns!(),
            " FROM project_keys WHERE token_key_id = $1 AND kind = 'access'"
        ))
        .bind(unverified.key_id())
        .fetch_optional(&self.database.pool)
        .await?;
        let Some(row) = row else {
            return refused(Refusal::UnknownKey);
        };
        let parent = match grant_of_row(&row, None)? {
            Resolution::Granted(parent) => parent,
            refusal @ Resolution::Refused(_) => return Ok(refusal),
        };
        let claims = match unverified.verify(now.div_euclid(1000)) {
            Ok(claims) => claims,
            Err(TokenError::Expired) => return refused(Refusal::ExpiredToken),
            Err(TokenError::BadSignature) => return refused(Refusal::BadTokenSignature),
            Err(TokenError::Malformed(_)) => return refused(Refusal::MalformedToken),
            Err(TokenError::NotYetValid | TokenError::Claims(_)) => {
                return refused(Refusal::RefusedTokenClaims);
            }
        };
        let revoked =
            sqlx::query("SELECT 1 FROM revoked_tokens WHERE key_hash = $1 AND token_id = $2")
                .bind(parent.key_hash().to_hex())
                .bind(&claims.token_id)
                .fetch_optional(&self.database.pool)
                .await?;
        if revoked.is_some() {
            return refused(Refusal::RevokedToken);
        }
        match parent.narrowed_by_token(&claims) {
            Ok(grant) => Ok(Resolution::Granted(Arc::new(grant))),
            Err(_) => refused(Refusal::RefusedTokenClaims),
        }
    }

    /// The grants of a project's active, unexpired access keys (keys that no longer parse are left out:
    /// they are refused on every request).
    pub async fn usable_access_key_grants(&self, project_id: &str) -> Result<Vec<Grant>> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            key_columns!(),
            " FROM project_keys WHERE project_id = $1 AND kind = 'access' AND is_active = 1"
        ))
        .bind(project_id)
        .fetch_all(&self.database.pool)
        .await?;
        let now = chrono::Utc::now().timestamp_millis();
        let mut grants = Vec::with_capacity(rows.len());
        for row in &rows {
            if let Resolution::Granted(grant) = grant_of_row(row, None)?
                && grant.is_usable_at(now)
            {
                grants.push(Arc::unwrap_or_clone(grant));
            }
        }
        Ok(grants)
    }
}

impl MetaStore {
    /// The grant of a project's master key, for what the organization key does in a project (its
    /// tenants' erasure reads as the master key would); `None` when there is no such project.
    pub async fn project_master_grant(&self, project_id: &str) -> Result<Option<Arc<Grant>>> {
        let row = sqlx::query(concat!(
            "SELECT ",
            key_columns!(),
            " FROM project_keys WHERE project_id = $1 AND kind = 'master'"
        ))
        .bind(project_id)
        .fetch_optional(&self.database.pool)
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        match grant_of_row(&row, None)? {
            Resolution::Granted(grant) => Ok(Some(grant)),
            Resolution::Refused(_) => Err(MetaError::Corrupt("master key".into())),
        }
    }
}

/// The grant of a `project_keys` row: a refusal when an access key's stored rules no longer parse.
/// `presented_secret` is the key secret the request carried (it opens a sealed webhook secret).
fn grant_of_row(row: &AnyRow, presented_secret: Option<&str>) -> Result<Resolution> {
    let key_hash: String = row.try_get("key_hash")?;
    let key_hash =
        KeyHash::from_hex(&key_hash).ok_or_else(|| MetaError::Corrupt("key hash".into()))?;
    let project_id: String = row.try_get("project_id")?;
    let key_prefix: String = row.try_get("key_prefix")?;
    let kind: String = row.try_get("kind")?;
    let kind =
        KeyKind::parse(&kind).ok_or_else(|| MetaError::Corrupt(format!("key kind {kind}")))?;
    let is_active = row.try_get::<i64, _>("is_active")? != 0;
    if kind != KeyKind::Access {
        return Ok(Resolution::Granted(Arc::new(Grant::for_project_key(
            &project_id,
            kind,
            key_hash,
            &key_prefix,
            is_active,
        ))));
    }
    // A suspended tenant's keys are refused before anything else about them is read; its embed tokens
    // follow, since a token resolves through its key's row.
    if row
        .try_get::<Option<i64>, _>("tenant_suspended")?
        .unwrap_or(0)
        != 0
    {
        return Ok(Resolution::Refused(Refusal::TenantSuspended));
    }
    let unreadable = |what: &str| {
        tracing::error!(
            project_id,
            key_prefix,
            what,
            "stored access key does not parse; key refused"
        );
        Ok(Resolution::Refused(Refusal::UnreadableKey))
    };
    let Ok(permitted) = serde_json::from_str::<Vec<String>>(
        row.try_get::<Option<String>, _>("permitted")?
            .as_deref()
            .unwrap_or("[]"),
    ) else {
        return unreadable("permitted");
    };
    let Ok(options) = serde_json::from_str::<serde_json::Value>(
        row.try_get::<Option<String>, _>("options")?
            .as_deref()
            .unwrap_or("null"),
    ) else {
        return unreadable("options");
    };
    let expires_at = match row.try_get::<Option<String>, _>("expires_at")? {
        None => None,
        Some(text) => match parse_timestamp(&text) {
            Some(millis) => Some(millis),
            None => return unreadable("expires_at"),
        },
    };
    let name: Option<String> = row.try_get("name")?;
    let stored = StoredAccessKey {
        project_id: &project_id,
        key_hash,
        key_prefix: &key_prefix,
        name: name.as_deref().unwrap_or_default(),
        is_active,
        expires_at,
        permitted: &permitted,
        options: &options,
        presented_secret,
    };
    match Grant::from_stored_access_key(&stored) {
        Ok(grant) => Ok(Resolution::Granted(Arc::new(grant))),
        Err(error) => {
            tracing::error!(project_id, key_prefix, %error, "stored access key does not parse; key refused");
            Ok(Resolution::Refused(Refusal::UnreadableKey))
        }
    }
}
