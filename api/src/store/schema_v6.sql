-- veil store, schema version 6: the regulation's requests (sharing, open
-- data, correction, complaint, emergency data, catalog change,
-- qualification), every step taken on them, and what their steps set:
-- development qualifications and the access state of datasets.
CREATE TABLE requests (
    id          TEXT PRIMARY KEY,
    kind        TEXT NOT NULL,
    state       TEXT NOT NULL,
    applicant   TEXT NOT NULL,
    dataset     TEXT,
    purpose     TEXT,
    fields      TEXT,            -- JSON array; NULL for every field
    days        INTEGER,         -- the grant length asked for
    detail      TEXT NOT NULL,   -- JSON object: what the applicant wrote
    due         TEXT,            -- YYYY-MM-DD of the next step's deadline
    assumed     TEXT NOT NULL,   -- JSON array: years counted Monday to Friday
    grant_id    TEXT,
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL
);
CREATE INDEX requests_open ON requests (state, due);

CREATE TABLE request_steps (
    request_id  TEXT NOT NULL REFERENCES requests (id),
    n           INTEGER NOT NULL,
    action      TEXT NOT NULL,
    from_state  TEXT,
    to_state    TEXT NOT NULL,
    actor       TEXT NOT NULL,
    notes       TEXT NOT NULL,   -- JSON object
    at          TEXT NOT NULL,
    PRIMARY KEY (request_id, n)
);

CREATE TABLE qualifications (
    principal   TEXT PRIMARY KEY,
    request_id  TEXT NOT NULL,
    agreement   TEXT NOT NULL,
    granted_at  TEXT NOT NULL,
    revoked_at  TEXT
);

-- A dataset's access apart from the policy: open (no row), suspended and
-- opening_withdrawn (Art. 36: refused to everyone), sealed and destroyed
-- (Art. 23).
CREATE TABLE dataset_access (
    dataset     TEXT PRIMARY KEY,
    state       TEXT NOT NULL,
    request_id  TEXT NOT NULL,
    since       TEXT NOT NULL
);

-- A dataset's access changing is a change of who may see what: the service
-- notices it on the next request, as it does a revoked key.
CREATE TRIGGER dataset_access_insert AFTER INSERT ON dataset_access BEGIN UPDATE access_generation SET n = n + 1; END;
CREATE TRIGGER dataset_access_update AFTER UPDATE ON dataset_access BEGIN UPDATE access_generation SET n = n + 1; END;
CREATE TRIGGER dataset_access_delete AFTER DELETE ON dataset_access BEGIN UPDATE access_generation SET n = n + 1; END;
