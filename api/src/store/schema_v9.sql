-- veil store, schema version 9: a privacy ledger whose rows cannot be
-- edited, removed or given back unnoticed.
--
-- Rows are hash-chained like the audit log (prev_hash, hash: see
-- budget.rs), and the last row's id and hash are signed in DIR/audit.head
-- after every charge. A refund is no longer an update: it is a row of its
-- own that negates the row it names (`refunds`), at that row's time, so
-- the sums that decide a budget need no flag an edit could flip.
-- `refunded` is kept for stores written before this version and no
-- longer read.
ALTER TABLE dp_ledger ADD COLUMN refunds INTEGER REFERENCES dp_ledger(id);
ALTER TABLE dp_ledger ADD COLUMN prev_hash BLOB;
ALTER TABLE dp_ledger ADD COLUMN hash BLOB;
CREATE UNIQUE INDEX dp_ledger_one_refund ON dp_ledger(refunds) WHERE refunds IS NOT NULL;
INSERT INTO dp_ledger (principal, dataset, epsilon, delta, rho, delta0, request, time, refunds)
    SELECT principal, dataset, -epsilon, -delta, -rho, -delta0, request, time, id
    FROM dp_ledger WHERE refunded = 1 ORDER BY id;
