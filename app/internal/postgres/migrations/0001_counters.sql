-- The counters. No table grows with the number of hits: hit_totals is one
-- row, hits_by_minute one row per instance per minute, instance_hits one row
-- per instance.

-- One row, updated once per batch. Its row lock is what serializes batches
-- from every replica, so each batch's total and minute sum are exact.
CREATE TABLE hit_totals (
    id    int    PRIMARY KEY CHECK (id = 1),
    total bigint NOT NULL CHECK (total >= 0)
) WITH (fillfactor = 50); -- room for HOT updates of the one row

INSERT INTO hit_totals (id, total) VALUES (1, 0);

-- Hits per instance per minute: "last 24 hours" is a range over at most
-- 1440 x instances rows, whatever the history.
CREATE TABLE hits_by_minute (
    minute   timestamptz NOT NULL,
    instance text        NOT NULL,
    hits     bigint      NOT NULL CHECK (hits > 0),
    PRIMARY KEY (minute, instance)
);

-- All-time hits per instance, for the page's breakdown.
CREATE TABLE instance_hits (
    instance   text        PRIMARY KEY,
    hits       bigint      NOT NULL,
    first_seen timestamptz NOT NULL,
    last_seen  timestamptz NOT NULL
);
