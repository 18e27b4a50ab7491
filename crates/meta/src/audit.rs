//! The key audit log: every change to an access key (create, update, revoke, unrevoke, delete, token
//! revocation) with its time, the acting key's display prefix and the key object before and after, and
//! every refused request with its reason. Readable by the project's master key, newest first, in pages.
//! No entry holds a secret: key objects are stored as listings show them (display prefix, no `key`).
//!
//! Design: a key change is audited in the same transaction as the change, so neither exists without the
//! other. Refusals are many and cheap to cause (a revoked key left in a busy dashboard makes thousands a
//! minute), so they go through a bounded queue to one writer task that takes up to [`BATCH`] at a time,
//! writes identical ones (same project, reason, key, token and request) as one entry with `times`, pauses
//! [`WRITER_PAUSE`] to let a burst gather so key changes never wait long for the write lock, drops (and
//! counts) what does not fit in the queue, and keeps only the newest [`MAX_REFUSALS_KEPT`] entries. A
//! refusal is recorded only for a project that exists. Ids are generated,
//! time-ordered text, so the table needs no autoincrement and pages by id on SQLite and PostgreSQL alike.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;
use sqlx::Row;

use crate::database::Database;

use crate::{MetaStore, Result, now};

/// Refusal entries kept; older ones are pruned as new ones arrive.
pub(crate) const MAX_REFUSALS_KEPT: i64 = 100_000;
/// Refusals waiting to be written; past this they are dropped (and counted).
const QUEUE_CAPACITY: usize = 10_000;
/// Most refusals written in one transaction.
const BATCH: usize = 2_000;
/// Pause of the refusal writer between transactions.
const WRITER_PAUSE: std::time::Duration = std::time::Duration::from_millis(100);
/// Most entries one page answers.
pub const MAX_PAGE: usize = 1_000;

/// Why a request was refused (the audit log's `reason`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Refusal {
    /// No key was presented.
    MissingKey,
    /// The key is not one of this store's.
    UnknownKey,
    /// A stored key whose rules no longer parse.
    UnreadableKey,
    /// The key is revoked.
    RevokedKey,
    /// The key has expired.
    ExpiredKey,
    /// The key belongs to another project.
    OtherProject,
    /// The route needs the project's master key.
    MasterKeyRequired,
    /// The key does not permit the route's operation.
    OperationNotPermitted,
    /// A write to a collection outside `options.writes.collections`.
    CollectionNotWritable,
    /// The key's rate limit refused the request.
    RateLimited,
    /// The key's daily quota is spent.
    QuotaExceeded,
    /// An embed token that does not decode.
    MalformedToken,
    /// An embed token whose signature does not verify.
    BadTokenSignature,
    /// An embed token past its expiry.
    ExpiredToken,
    /// A revoked embed token.
    RevokedToken,
    /// An embed token whose claims would widen its key.
    RefusedTokenClaims,
    /// A browser request from an origin outside the key's `options.origins`.
    OriginNotAllowed,
    /// A request of an origin-bound key with neither `Origin` nor `Referer`.
    OriginMissing,
    /// A webhook delivery without the signature its key requires.
    WebhookUnsigned,
    /// A webhook delivery whose signature does not match its body.
    WebhookBadSignature,
    /// A signed webhook delivery older than the key's tolerance.
    WebhookStale,
    /// A signed-webhook key presented as an embed token (which cannot open its secret).
    WebhookSecretUnavailable,
    /// A key (or an embed token of a key) of a suspended tenant.
    TenantSuspended,
}

impl Refusal {
    /// The reason as the audit log and the metrics name it.
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::MissingKey => "missing_key",
            Refusal::UnknownKey => "unknown_key",
            Refusal::UnreadableKey => "unreadable_key",
            Refusal::RevokedKey => "revoked_key",
            Refusal::ExpiredKey => "expired_key",
            Refusal::OtherProject => "other_project",
            Refusal::MasterKeyRequired => "master_key_required",
            Refusal::OperationNotPermitted => "operation_not_permitted",
            Refusal::CollectionNotWritable => "collection_not_writable",
            Refusal::RateLimited => "rate_limited",
            Refusal::QuotaExceeded => "quota_exceeded",
            Refusal::MalformedToken => "malformed_token",
            Refusal::BadTokenSignature => "bad_token_signature",
            Refusal::ExpiredToken => "expired_token",
            Refusal::RevokedToken => "revoked_token",
            Refusal::RefusedTokenClaims => "refused_token_claims",
            Refusal::OriginNotAllowed => "origin_not_allowed",
            Refusal::OriginMissing => "origin_missing",
            Refusal::WebhookUnsigned => "webhook_unsigned",
            Refusal::WebhookBadSignature => "webhook_bad_signature",
            Refusal::WebhookStale => "webhook_stale",
            Refusal::WebhookSecretUnavailable => "webhook_secret_unavailable",
            Refusal::TenantSuspended => "tenant_suspended",
        }
    }
}

/// One audit entry as the API shows it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AuditEntry {
    /// The entry's id: time-ordered, so the log pages by it.
    pub id: String,
    /// When it happened (ISO-8601, UTC).
    pub at: String,
    /// `create`, `update`, `revoke`, `unrevoke`, `delete`, `revoke_token`, `refused`, or for tenants
    /// `suspend`, `resume`, `rotate` and `erase` (the project's, with no key).
    pub action: String,
    /// Display prefix of the key that acted (or was refused); `organization` for the organization key.
    pub actor: Option<String>,
    /// Display prefix of the key acted on.
    pub key_prefix: Option<String>,
    /// The embed token's id (`jti`) when a token was refused.
    pub token_id: Option<String>,
    /// A refusal's reason.
    pub reason: Option<String>,
    /// A refusal's method and path.
    pub request: Option<String>,
    /// How many identical refusals this entry stands for (1 for key changes).
    pub times: u64,
    /// The key's definition before the change (key changes only).
    pub before: Option<serde_json::Value>,
    /// The key's definition after the change (key changes only); an erase's receipt.
    pub after: Option<serde_json::Value>,
}

/// A page of entries, newest first; `next_before` continues it.
#[derive(Clone, Debug, Serialize)]
pub struct AuditPage {
    /// The entries, newest first.
    pub entries: Vec<AuditEntry>,
    /// The id to pass as `before` for the next page, when there is one.
    pub next_before: Option<String>,
}

/// A key change to record.
pub(crate) struct KeyChangeRecord<'a> {
    pub project_id: &'a str,
    pub action: &'a str,
    pub actor: &'a str,
    pub key_prefix: &'a str,
    pub token_id: Option<&'a str>,
    pub before: Option<serde_json::Value>,
    pub after: Option<serde_json::Value>,
}

struct RefusalRecord {
    id: String,
    at: String,
    project_id: String,
    reason: Refusal,
    actor: Option<String>,
    token_id: Option<String>,
    request: String,
}

enum AuditMessage {
    Refusal(RefusalRecord),
    /// Answered once every refusal queued before it is written.
    Flush(tokio::sync::oneshot::Sender<()>),
}

/// The queue refusals are written through.
#[derive(Clone)]
pub(crate) struct AuditSink {
    sender: tokio::sync::mpsc::Sender<AuditMessage>,
    dropped: Arc<AtomicU64>,
}

impl AuditSink {
    /// Starts the writer task on the current tokio runtime.
    pub(crate) fn start(database: Database) -> AuditSink {
        let (sender, receiver) = tokio::sync::mpsc::channel(QUEUE_CAPACITY);
        tokio::spawn(write_refusals(database, receiver));
        AuditSink {
            sender,
            dropped: Arc::new(AtomicU64::new(0)),
        }
    }
}

async fn write_refusals(
    database: Database,
    mut receiver: tokio::sync::mpsc::Receiver<AuditMessage>,
) {
    let mut messages = Vec::with_capacity(BATCH);
    while receiver.recv_many(&mut messages, BATCH).await > 0 {
        // Let a burst gather, so its identical refusals become one entry and SQLite's write lock is
        // taken at most once per pause.
        if matches!(messages.last(), Some(AuditMessage::Refusal(_))) {
            tokio::time::sleep(WRITER_PAUSE).await;
            while messages.len() < BATCH {
                match receiver.try_recv() {
                    Ok(message) => messages.push(message),
                    Err(_) => break,
                }
            }
        }
        let mut refusals = Vec::with_capacity(messages.len());
        let mut flushes = Vec::new();
        for message in messages.drain(..) {
            match message {
                AuditMessage::Refusal(record) => refusals.push(record),
                AuditMessage::Flush(done) => flushes.push(done),
            }
        }
        if !refusals.is_empty()
            && let Err(error) = insert_refusals(&database, &refusals).await
        {
            tracing::warn!(%error, refusals = refusals.len(), "cannot write refusals to the audit log");
        }
        for done in flushes {
            let _ = done.send(());
        }
    }
}

async fn insert_refusals(database: &Database, batch: &[RefusalRecord]) -> Result<()> {
    // Identical refusals become one entry, at the time of the first.
    let mut coalesced: Vec<(&RefusalRecord, i64)> = Vec::new();
    let mut positions: std::collections::HashMap<_, usize> = std::collections::HashMap::new();
    for record in batch {
        let identity = (
            &record.project_id,
            record.reason,
            &record.actor,
            &record.token_id,
            &record.request,
        );
        if let Some(&position) = positions.get(&identity) {
            coalesced[position].1 += 1;
        } else {
            positions.insert(identity, coalesced.len());
            coalesced.push((record, 1));
        }
    }
    let mut transaction = database.begin_write().await?;
    for (record, times) in coalesced {
        sqlx::query(
            "INSERT INTO key_audit (id, project_id, at, action, actor, token_id, reason, request, times) \
             SELECT $1, $2, $3, 'refused', $4, $5, $6, $7, $8 WHERE EXISTS (SELECT 1 FROM projects WHERE id = $9)",
        )
        .bind(&record.id)
        .bind(&record.project_id)
        .bind(&record.at)
        .bind(&record.actor)
        .bind(&record.token_id)
        .bind(record.reason.as_str())
        .bind(&record.request)
        .bind(times)
        .bind(&record.project_id)
        .execute(&mut *transaction)
        .await?;
    }
    sqlx::query(
        "DELETE FROM key_audit WHERE action = 'refused' AND id < \
         (SELECT id FROM key_audit WHERE action = 'refused' ORDER BY id DESC LIMIT 1 OFFSET $1)",
    )
    .bind(MAX_REFUSALS_KEPT - 1)
    .execute(&mut *transaction)
    .await?;
    transaction.commit().await?;
    Ok(())
}

/// A new, time-ordered entry id: milliseconds, a per-process sequence, and randomness for other nodes.
pub(crate) fn new_entry_id() -> String {
    static SEQUENCE: AtomicU64 = AtomicU64::new(0);
    let millis = chrono::Utc::now().timestamp_millis().max(0);
    let sequence = SEQUENCE.fetch_add(1, Ordering::Relaxed) % 1_000_000;
    let mut random = [0u8; 2];
    rand::fill(&mut random);
    format!(
        "{millis:015}{sequence:06}{:04x}",
        u16::from_be_bytes(random)
    )
}

/// Writes a key change inside the caller's transaction.
pub(crate) async fn record_key_change(
    connection: &mut sqlx::AnyConnection,
    record: KeyChangeRecord<'_>,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO key_audit (id, project_id, at, action, actor, key_prefix, token_id, before_json, after_json) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(new_entry_id())
    .bind(record.project_id)
    .bind(now())
    .bind(record.action)
    .bind(record.actor)
    .bind(record.key_prefix)
    .bind(record.token_id)
    .bind(record.before.map(|value| value.to_string()))
    .bind(record.after.map(|value| value.to_string()))
    .execute(connection)
    .await?;
    Ok(())
}

/// Writes a change of the project that no single key carries (a tenant's erasure) inside the caller's
/// transaction: no key prefix, `after` what was done.
pub(crate) async fn record_project_change(
    connection: &mut sqlx::AnyConnection,
    project_id: &str,
    action: &str,
    actor: &str,
    after: &serde_json::Value,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO key_audit (id, project_id, at, action, actor, after_json) VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(new_entry_id())
    .bind(project_id)
    .bind(now())
    .bind(action)
    .bind(actor)
    .bind(after.to_string())
    .execute(connection)
    .await?;
    Ok(())
}

impl MetaStore {
    /// Queues a refused request for the audit log (never waits; drops and counts when the queue is full).
    pub fn record_refusal(
        &self,
        project_id: &str,
        reason: Refusal,
        actor: Option<&str>,
        token_id: Option<&str>,
        request: String,
    ) {
        let record = RefusalRecord {
            id: new_entry_id(),
            at: now(),
            project_id: project_id.to_string(),
            reason,
            actor: actor.map(str::to_string),
            token_id: token_id.map(str::to_string),
            request,
        };
        if self
            .audit
            .sender
            .try_send(AuditMessage::Refusal(record))
            .is_err()
        {
            let dropped = self.audit.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if dropped.is_power_of_two() {
                tracing::warn!(dropped, "audit queue full; refusals dropped");
            }
        }
    }

    /// A page of the project's audit log, newest first, strictly older than `before` when given.
    pub async fn audit_log(
        &self,
        project_id: &str,
        limit: usize,
        before: Option<&str>,
    ) -> Result<AuditPage> {
        self.audit_page(project_id, None, limit, before).await
    }

    /// The refused webhook deliveries of the key with `key_prefix`, newest first, paged like the log.
    pub async fn refused_deliveries(
        &self,
        project_id: &str,
        key_prefix: &str,
        limit: usize,
        before: Option<&str>,
    ) -> Result<AuditPage> {
        self.audit_page(project_id, Some(key_prefix), limit, before)
            .await
    }

    async fn audit_page(
        &self,
        project_id: &str,
        webhook_refusals_of: Option<&str>,
        limit: usize,
        before: Option<&str>,
    ) -> Result<AuditPage> {
        let limit = limit.clamp(1, MAX_PAGE);
        let rows = sqlx::query(
            "SELECT id, at, action, actor, key_prefix, token_id, reason, request, times, before_json, after_json \
             FROM key_audit WHERE project_id = $1 AND ($2 IS NULL OR id < $3) \
             AND ($4 IS NULL OR (actor = $5 AND action = 'refused' AND reason LIKE 'webhook_%')) \
             ORDER BY id DESC LIMIT $6",
        )
        .bind(project_id)
        .bind(before)
        .bind(before)
        .bind(webhook_refusals_of)
        .bind(webhook_refusals_of)
        .bind(limit as i64 + 1)
        .fetch_all(&self.database.pool)
        .await?;
        let json = |text: Option<String>| text.and_then(|text| serde_json::from_str(&text).ok());
        let mut entries = rows
            .iter()
            .map(|row| {
                Ok(AuditEntry {
                    id: row.try_get("id")?,
                    at: row.try_get("at")?,
                    action: row.try_get("action")?,
                    actor: row.try_get("actor")?,
                    key_prefix: row.try_get("key_prefix")?,
                    token_id: row.try_get("token_id")?,
                    reason: row.try_get("reason")?,
                    request: row.try_get("request")?,
                    times: u64::try_from(row.try_get::<i64, _>("times")?).unwrap_or(1),
                    before: json(row.try_get("before_json")?),
                    after: json(row.try_get("after_json")?),
                })
            })
            .collect::<std::result::Result<Vec<_>, sqlx::Error>>()?;
        let next_before = (entries.len() > limit).then(|| {
            entries.truncate(limit);
            entries.last().map(|entry| entry.id.clone())
        });
        Ok(AuditPage {
            entries,
            next_before: next_before.flatten(),
        })
    }

    /// Waits until the refusals queued so far are written.
    pub async fn flush_audit(&self) {
        let (done, written) = tokio::sync::oneshot::channel();
        if self
            .audit
            .sender
            .send(AuditMessage::Flush(done))
            .await
            .is_ok()
        {
            let _ = written.await;
        }
    }
}
