-- No row every replica writes. Counts live only in rows one instance writes
-- (hits_by_minute and instance_hits, keyed by instance); each hit's number
-- comes from a sequence, taken after its batch committed. The one-row
-- hit_totals, whose lock every batch of every replica held through COMMIT,
-- goes; the sequence continues where it stopped.

-- CACHE 1 (the default) is what makes N concurrent hits get exactly 1..N:
-- a session never holds numbers back. nextval takes a buffer lock for a few
-- microseconds and never waits for a transaction.
CREATE SEQUENCE hit_numbers AS bigint MINVALUE 1 NO CYCLE CACHE 1;

SELECT setval('hit_numbers', total) FROM hit_totals WHERE id = 1 AND total > 0;

DROP TABLE hit_totals;
