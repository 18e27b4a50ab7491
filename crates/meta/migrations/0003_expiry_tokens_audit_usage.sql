ALTER TABLE project_keys ADD COLUMN expires_at TEXT;
ALTER TABLE project_keys ADD COLUMN token_key_id TEXT;
CREATE UNIQUE INDEX project_keys_by_token_key_id ON project_keys(token_key_id);
CREATE TABLE revoked_tokens (
    key_hash TEXT NOT NULL,
    token_id TEXT NOT NULL,
    revoked_at TEXT NOT NULL,
    PRIMARY KEY (key_hash, token_id)
);
CREATE TABLE key_audit (
    id TEXT PRIMARY KEY,
    project_id TEXT NOT NULL,
    at TEXT NOT NULL,
    action TEXT NOT NULL,
    actor TEXT,
    key_prefix TEXT,
    token_id TEXT,
    reason TEXT,
    request TEXT,
    times BIGINT NOT NULL DEFAULT 1,
    before_json TEXT,
    after_json TEXT
);
CREATE INDEX key_audit_by_project ON key_audit(project_id, id);
CREATE TABLE key_usage (
    key_hash TEXT NOT NULL,
    day TEXT NOT NULL,
    reads BIGINT NOT NULL,
    writes BIGINT NOT NULL,
    events BIGINT NOT NULL,
    queries BIGINT NOT NULL,
    refused BIGINT NOT NULL,
    PRIMARY KEY (key_hash, day)
);
