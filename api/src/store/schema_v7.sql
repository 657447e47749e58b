-- veil store, schema version 7: models trained inside (Art. 32, 39). A
-- model keeps its spec as asked, what it released, the policy that decided
-- it and its lineage: the datasets, their catalog versions and providers.
CREATE TABLE models (
    id              TEXT PRIMARY KEY,
    owner           TEXT NOT NULL REFERENCES principals (name),
    template        TEXT NOT NULL,
    spec            TEXT NOT NULL,   -- JSON: the training request
    model           TEXT NOT NULL,   -- JSON: features, bounds, released parameters and metrics
    privacy         TEXT NOT NULL,   -- JSON: epsilon, delta, rho, noise
    lineage         TEXT NOT NULL,   -- JSON: datasets with versions, providers
    policy_version  TEXT NOT NULL,
    ledger          TEXT NOT NULL,   -- JSON array: the dp_ledger rows charged
    created_at      TEXT NOT NULL
);
CREATE INDEX models_owner ON models (owner, created_at);
