CREATE TABLE saved_queries (
    project_id TEXT NOT NULL,
    name TEXT NOT NULL,
    query_json TEXT NOT NULL,
    metadata_json TEXT NOT NULL,
    refresh_rate BIGINT NOT NULL,
    created_at TEXT NOT NULL,
    modified_at TEXT NOT NULL,
    PRIMARY KEY (project_id, name)
);
