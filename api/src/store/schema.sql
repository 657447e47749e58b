-- veil store, schema version 1. Times are RFC 3339 UTC text.

CREATE TABLE policies (
    version    INTEGER PRIMARY KEY,
    name       TEXT NOT NULL,
    digest     TEXT NOT NULL,
    text       TEXT NOT NULL,
    loaded_at  TEXT NOT NULL,
    loaded_by  TEXT NOT NULL
);

-- Every registration is kept; the current entry of a dataset is its
-- highest version.
CREATE TABLE datasets (
    name           TEXT NOT NULL,
    version        INTEGER NOT NULL,
    manifest       TEXT NOT NULL,
    data_path      TEXT NOT NULL,
    file_size      INTEGER NOT NULL,
    file_sha256    TEXT NOT NULL,
    rows           INTEGER NOT NULL,
    registered_at  TEXT NOT NULL,
    registered_by  TEXT NOT NULL,
    PRIMARY KEY (name, version)
);

CREATE TABLE principals (
    id          INTEGER PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    role        TEXT NOT NULL,
    org         TEXT,
    region      TEXT,
    subject     TEXT,
    status      TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'suspended')),
    created_at  TEXT NOT NULL
);

-- API keys are stored as SHA-256 hashes only; the key is shown once.
CREATE TABLE api_keys (
    id            INTEGER PRIMARY KEY,
    principal_id  INTEGER NOT NULL REFERENCES principals(id),
    key_hash      BLOB NOT NULL UNIQUE,
    created_at    TEXT NOT NULL,
    revoked_at    TEXT
);

CREATE TABLE grants (
    id            TEXT PRIMARY KEY,
    principal_id  INTEGER NOT NULL REFERENCES principals(id),
    dataset       TEXT NOT NULL,
    fields        TEXT,          -- JSON array of field names; NULL for all
    purpose       TEXT NOT NULL,
    granted_at    TEXT NOT NULL,
    expires_at    TEXT NOT NULL,
    revoked_at    TEXT
);
CREATE INDEX grants_by_principal ON grants(principal_id);
