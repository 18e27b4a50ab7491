-- Dashboard definitions (`keyhole_model::dashboard`), per project, stored as the JSON they are served as.
CREATE TABLE dashboards (
    project_id TEXT NOT NULL,
    name TEXT NOT NULL,
    definition TEXT NOT NULL,
    created_at TEXT NOT NULL,
    modified_at TEXT NOT NULL,
    PRIMARY KEY (project_id, name)
);
