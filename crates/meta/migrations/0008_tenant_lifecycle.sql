-- A tenant key set to expire by a key rotation (its expiry is its retirement, which changing the tenant's
-- options never extends).
ALTER TABLE project_keys ADD COLUMN tenant_retiring BIGINT NOT NULL DEFAULT 0;

-- Erase receipts: what `DELETE …/tenants/{id}?erase=true` deleted, kept after the tenant is gone.
CREATE TABLE tenant_erasures (
    project_id TEXT NOT NULL,
    receipt_id TEXT NOT NULL,
    tenant_id TEXT NOT NULL,
    receipt TEXT NOT NULL,
    completed_at TEXT NOT NULL,
    PRIMARY KEY (project_id, receipt_id)
);

-- When a key last had a request counted (stored with its usage, so within a few seconds).
ALTER TABLE project_keys ADD COLUMN last_used_at TEXT;
