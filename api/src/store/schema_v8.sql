-- veil store, schema version 8: the deployment's settings, set once. The
-- data authority (公共数据主管部门, Art. 6-7) is configured here when the data
-- directory is created, never taken from a manifest.
CREATE TABLE settings (
    key    TEXT PRIMARY KEY,
    value  TEXT NOT NULL,
    set_at TEXT NOT NULL
);
-- A setting, once made, is never changed or removed.
CREATE TRIGGER settings_no_update BEFORE UPDATE ON settings
    BEGIN SELECT RAISE(ABORT, 'settings are set once'); END;
CREATE TRIGGER settings_no_delete BEFORE DELETE ON settings
    BEGIN SELECT RAISE(ABORT, 'settings are set once'); END;
