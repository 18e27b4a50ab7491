ALTER TABLE project_keys ADD COLUMN name TEXT;
ALTER TABLE project_keys ADD COLUMN permitted TEXT;
ALTER TABLE project_keys ADD COLUMN options TEXT;
