-- veil store, schema version 3: the differential-privacy ledger.

-- One row per dataset a DP answer spent, under both accountants: ε and δ
-- for basic composition; zCDP ρ and the δ₀ outside zCDP.
-- Charged in a BEGIN IMMEDIATE transaction that sums what was spent before,
-- so concurrent queries can never overspend; a failed query is refunded.
CREATE TABLE dp_ledger (
    id         INTEGER PRIMARY KEY,
    principal  TEXT NOT NULL,
    dataset    TEXT NOT NULL,
    epsilon    REAL NOT NULL,
    delta      REAL NOT NULL,
    rho        REAL NOT NULL,
    delta0     REAL NOT NULL,
    request    TEXT NOT NULL,
    time       TEXT NOT NULL,
    refunded   INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX dp_ledger_by_principal ON dp_ledger(principal, dataset);
