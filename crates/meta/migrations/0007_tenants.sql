CREATE TABLE project_tenancy (
    project_id TEXT NOT NULL PRIMARY KEY,
    property TEXT NOT NULL,
    modified_at TEXT NOT NULL
);

CREATE TABLE tenants (
    project_id TEXT NOT NULL,
    tenant_id TEXT NOT NULL,
    name TEXT NOT NULL,
    options TEXT NOT NULL,
    suspended BIGINT NOT NULL,
    created_at TEXT NOT NULL,
    modified_at TEXT NOT NULL,
    PRIMARY KEY (project_id, tenant_id)
);

ALTER TABLE project_keys ADD COLUMN tenant_id TEXT;

CREATE INDEX project_keys_by_tenant ON project_keys(project_id, tenant_id);
