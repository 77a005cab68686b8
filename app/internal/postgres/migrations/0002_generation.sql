-- A random identity for this database's counters. Cache keys include it, so
-- a Redis that outlives a reset (or serves another database) never hands
-- back sums from a different history.
CREATE TABLE hits_meta (
    id         int  PRIMARY KEY CHECK (id = 1),
    generation text NOT NULL
);

INSERT INTO hits_meta (id, generation) VALUES (1, substr(md5(random()::text || clock_timestamp()::text), 1, 12));
