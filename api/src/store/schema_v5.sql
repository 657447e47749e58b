-- veil store, schema version 5: a counter that every change to principals,
-- API keys and grants advances, so the service can keep authenticated
-- callers in memory and still see a revocation made by another process
-- (the CLI) on the next request.
CREATE TABLE access_generation (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    n INTEGER NOT NULL
);
INSERT INTO access_generation (id, n) VALUES (1, 0);

CREATE TRIGGER principals_insert AFTER INSERT ON principals BEGIN UPDATE access_generation SET n = n + 1; END;
CREATE TRIGGER principals_update AFTER UPDATE ON principals BEGIN UPDATE access_generation SET n = n + 1; END;
CREATE TRIGGER principals_delete AFTER DELETE ON principals BEGIN UPDATE access_generation SET n = n + 1; END;
CREATE TRIGGER api_keys_insert AFTER INSERT ON api_keys BEGIN UPDATE access_generation SET n = n + 1; END;
CREATE TRIGGER api_keys_update AFTER UPDATE ON api_keys BEGIN UPDATE access_generation SET n = n + 1; END;
CREATE TRIGGER api_keys_delete AFTER DELETE ON api_keys BEGIN UPDATE access_generation SET n = n + 1; END;
CREATE TRIGGER grants_insert AFTER INSERT ON grants BEGIN UPDATE access_generation SET n = n + 1; END;
CREATE TRIGGER grants_update AFTER UPDATE ON grants BEGIN UPDATE access_generation SET n = n + 1; END;
CREATE TRIGGER grants_delete AFTER DELETE ON grants BEGIN UPDATE access_generation SET n = n + 1; END;
