-- veil store, schema version 2: the audit log (Art. 43).

-- Append-only and hash-chained: hash = SHA-256(prev_hash, seq, every field),
-- see api/src/audit.rs for the exact encoding.
CREATE TABLE audit_log (
    seq        INTEGER PRIMARY KEY,
    time       TEXT NOT NULL,
    principal  TEXT NOT NULL,
    role       TEXT NOT NULL,
    purpose    TEXT NOT NULL,
    endpoint   TEXT NOT NULL,
    request    TEXT NOT NULL,
    datasets   TEXT NOT NULL,   -- JSON array
    fields     TEXT NOT NULL,   -- JSON array
    rows       INTEGER,         -- rows released; NULL when none or unknown
    privacy    TEXT NOT NULL,   -- JSON object
    outcome    TEXT NOT NULL,
    prev_hash  BLOB NOT NULL,
    hash       BLOB NOT NULL
);

-- Every so often the head of the chain is signed with the service's Ed25519
-- key, so truncation and wholesale rewriting are detectable offline.
CREATE TABLE audit_checkpoints (
    seq        INTEGER PRIMARY KEY,
    hash       BLOB NOT NULL,
    time       TEXT NOT NULL,
    signature  BLOB NOT NULL
);

-- Receipts of answers whose body cannot carry one (CSV, Arrow): fetched by
-- request id once the stream is complete.
CREATE TABLE receipts (
    request_id  TEXT PRIMARY KEY,
    principal   TEXT NOT NULL,
    receipt     TEXT NOT NULL,
    time        TEXT NOT NULL
);
