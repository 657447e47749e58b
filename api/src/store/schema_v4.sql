-- veil store, schema version 4: whether a dataset has one row per privacy
-- unit (no NULL unit, no unit in two rows), checked on the file at
-- registration.
ALTER TABLE datasets ADD COLUMN unique_units INTEGER NOT NULL DEFAULT 0;
