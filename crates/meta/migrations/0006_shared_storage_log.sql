CREATE TABLE storage_log (
    sequence BIGINT PRIMARY KEY,
    kind TEXT NOT NULL,
    payload BYTEA NOT NULL,
    appended_by TEXT NOT NULL
);
CREATE TABLE storage_checkpoint (
    id BIGINT PRIMARY KEY,
    applied_through BIGINT NOT NULL,
    manifest TEXT NOT NULL
);
CREATE TABLE storage_leases (
    name TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    expires_at_millis BIGINT NOT NULL
);
