// Package postgres is the durable store of hits on PostgreSQL (pgx pool):
// group-committed batches numbered from a sequence, the rolling window's
// base and the per-instance breakdown, plus the embedded, versioned schema
// migrations.
package postgres

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"

	"hits/app/internal/hits"
)

// Store records and reads hits. It implements hits.Store.
type Store struct {
	pool *pgxpool.Pool
}

// Open creates a pool for url (it does not connect yet: PostgreSQL may come
// up after the app). maxConns caps the pool; connectTimeout bounds each dial.
func Open(ctx context.Context, url string, maxConns int, connectTimeout time.Duration) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("postgres: parse url: %w", err)
	}
	cfg.MaxConns = int32(maxConns)
	cfg.ConnConfig.ConnectTimeout = connectTimeout
	// A dead server leaves pooled connections that fail on first use; checking
	// idle ones after a short while keeps recovery quick once it is back.
	cfg.HealthCheckPeriod = 5 * time.Second
	cfg.MaxConnIdleTime = time.Minute
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("postgres: pool: %w", err)
	}
	return pool, nil
}

// NewStore returns a Store over pool.
func NewStore(pool *pgxpool.Pool) *Store { return &Store{pool: pool} }

// A batch is one pipeline, one round trip: BEGIN, the write, a Flush, COMMIT,
// then the numbers. The write touches only this instance's rows, so batches
// of different replicas never wait for each other; the numbers come from a
// sequence after COMMIT returned, so a number is shown only for a durable
// hit, and N concurrent hits anywhere take exactly the next N numbers.
//
// The write also returns the transaction's id, and the Flush makes the
// server send it before it runs COMMIT (without it, PostgreSQL holds every
// answer of a pipeline until its Sync). So whenever COMMIT may have
// happened, the id has been sent, and a COMMIT whose answer was lost can be
// settled with pg_xact_status instead of guessed.
const (
	// One statement, two upserts of rows keyed by this instance. The minute
	// is the database's clock, so every replica files hits by one clock.
	recordHits = `
WITH m AS (
    INSERT INTO hits_by_minute AS h (minute, instance, hits)
    VALUES (date_trunc('minute', clock_timestamp()), $1, $2)
    ON CONFLICT (minute, instance) DO UPDATE SET hits = h.hits + EXCLUDED.hits
    RETURNING h.minute
), i AS (
    INSERT INTO instance_hits AS i (instance, hits, first_seen, last_seen)
    VALUES ($1, $2, now(), now())
    ON CONFLICT (instance) DO UPDATE SET hits = i.hits + EXCLUDED.hits, last_seen = now()
)
SELECT minute, pg_current_xact_id() FROM m`

	// Runs in its own implicit transaction after COMMIT; nextval is never
	// rolled back, so a number is never handed out twice.
	takeNumbers = `SELECT nextval('hit_numbers') FROM generate_series(1, $1::int)`
)

// batchStatements are prepared once per connection under these names.
var batchStatements = [...]struct{ name, sql string }{
	{"hits_begin", "BEGIN"},
	{"hits_record", recordHits},
	{"hits_commit", "COMMIT"},
	{"hits_numbers", takeNumbers},
}

// binaryResults asks for every result column in binary; never modified.
var binaryResults = []int16{pgtype.BinaryFormatCode}

// CommitHits records n hits for instance in one transaction, then takes
// n+owed numbers and returns them. A nil error means the hits committed and
// the numbers were taken. Otherwise:
//   - an error wrapping hits.ErrNotNumbered: the hits committed, and
//     Commit.Numbers holds only the numbers that arrived (maybe none);
//   - an error wrapping hits.ErrOutcomeUnknown: COMMIT may have run but its
//     answer was lost; Commit.Txn, when nonzero, is the transaction to ask
//     TxnStatus about;
//   - any other error: nothing was committed.
func (s *Store) CommitHits(ctx context.Context, instance string, n, owed int) (hits.Commit, error) {
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return hits.Commit{}, fmt.Errorf("commit %d hits: %w", n, err)
	}
	defer conn.Release()
	var sds [len(batchStatements)]*pgconn.StatementDescription
	for i, st := range batchStatements {
		// A map lookup once the connection has them: no round trip.
		if sds[i], err = conn.Conn().Prepare(ctx, st.name, st.sql); err != nil {
			return hits.Commit{}, fmt.Errorf("commit %d hits: prepare: %w", n, err)
		}
	}
	var num, k [20]byte
	p := conn.Conn().PgConn().StartPipeline(ctx)
	p.SendQueryStatement(sds[0], nil, nil, nil)
	p.SendQueryStatement(sds[1], [][]byte{[]byte(instance), strconv.AppendInt(num[:0], int64(n), 10)}, nil, binaryResults)
	p.SendFlushRequest()
	p.SendQueryStatement(sds[2], nil, nil, nil)
	p.SendQueryStatement(sds[3], [][]byte{strconv.AppendInt(k[:0], int64(n+owed), 10)}, nil, binaryResults)
	c, failed := readBatch(conn.Conn(), p, n+owed)
	// After a failed write the server skips to the Sync and leaves the
	// session in the aborted transaction; the pool then drops the connection,
	// as it drops one whose I/O failed.
	p.Close()
	switch failed.stage {
	case stageDone:
		return c, nil
	case stageCommitted:
		return c, fmt.Errorf("commit %d hits: %w: %w", n, hits.ErrNotNumbered, failed.err)
	case stageCommitting:
		return hits.Commit{Minute: c.Minute, Txn: c.Txn}, fmt.Errorf("commit %d hits: %w: %w", n, hits.ErrOutcomeUnknown, failed.err)
	}
	// Before the transaction's id arrived. An error from the server means it
	// skipped the rest of the pipeline (or the session was already gone), and
	// an error before anything was sent means nothing ran; either way nothing
	// committed. Any other failure left it unknown, with nothing to ask about.
	var pgErr *pgconn.PgError
	if errors.As(failed.err, &pgErr) || pgconn.SafeToRetry(failed.err) {
		return hits.Commit{}, fmt.Errorf("commit %d hits: %w", n, failed.err)
	}
	return hits.Commit{}, fmt.Errorf("commit %d hits: %w: %w", n, hits.ErrOutcomeUnknown, failed.err)
}

// batchStage is how far a batch's pipeline got before it failed.
type batchStage int

const (
	stageWriting    batchStage = iota // before the transaction's id arrived
	stageCommitting                   // id known, COMMIT's answer not seen
	stageCommitted                    // COMMIT answered, numbers not taken
	stageDone                         // everything answered
)

type batchError struct {
	stage batchStage
	err   error
}

// readBatch reads the answers of CommitHits' pipeline in order.
func readBatch(conn *pgx.Conn, p *pgconn.Pipeline, k int) (hits.Commit, batchError) {
	var c hits.Commit
	if err := p.Sync(); err != nil {
		return c, batchError{stageWriting, err}
	}
	if _, err := closeNext(p); err != nil {
		return c, batchError{stageWriting, fmt.Errorf("begin: %w", err)}
	}
	rr, err := nextResult(p)
	if err != nil {
		return c, batchError{stageWriting, err}
	}
	if !rr.NextRow() {
		_, err := rr.Close()
		if err == nil {
			err = errors.New("no row")
		}
		return c, batchError{stageWriting, fmt.Errorf("record: %w", err)}
	}
	row := rr.Values()
	if len(row) != 2 || len(row[1]) != 8 {
		rr.Close()
		return c, batchError{stageWriting, fmt.Errorf("record: unexpected row of %d columns", len(row))}
	}
	c.Txn = binary.BigEndian.Uint64(row[1])
	err = conn.TypeMap().Scan(pgtype.TimestamptzOID, pgtype.BinaryFormatCode, row[0], &c.Minute)
	if _, cerr := rr.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return c, batchError{stageCommitting, fmt.Errorf("record: %w", err)}
	}
	if _, err := closeNext(p); err != nil {
		return c, batchError{stageCommitting, fmt.Errorf("commit: %w", err)}
	}
	if rr, err = nextResult(p); err != nil {
		return c, batchError{stageCommitted, err}
	}
	c.Numbers = make([]int64, 0, k)
	for rr.NextRow() {
		if v := rr.Values(); len(v) == 1 && len(v[0]) == 8 {
			c.Numbers = append(c.Numbers, int64(binary.BigEndian.Uint64(v[0])))
		}
	}
	// Numbers that arrived are this batch's even if the session died
	// before the rest (or before its Sync): the batcher takes only the
	// missing ones again, so none is skipped unseen.
	_, err = rr.Close()
	if len(c.Numbers) == k {
		return c, batchError{stage: stageDone}
	}
	if err == nil {
		err = fmt.Errorf("got %d numbers, want %d", len(c.Numbers), k)
	}
	return c, batchError{stageCommitted, err}
}

// nextResult returns the pipeline's next statement result.
func nextResult(p *pgconn.Pipeline) (*pgconn.ResultReader, error) {
	res, err := p.GetResults()
	if err != nil {
		return nil, err
	}
	rr, ok := res.(*pgconn.ResultReader)
	if !ok {
		return nil, fmt.Errorf("got %T, want a statement's result", res)
	}
	return rr, nil
}

// closeNext reads the pipeline's next statement result to its end.
func closeNext(p *pgconn.Pipeline) (pgconn.CommandTag, error) {
	rr, err := nextResult(p)
	if err != nil {
		return pgconn.CommandTag{}, err
	}
	return rr.Close()
}

// TakeNumbers takes k numbers from the sequence, ascending: for a batch that
// committed but could not take its numbers in its own pipeline. On error it
// still returns the numbers that arrived: they were taken.
func (s *Store) TakeNumbers(ctx context.Context, k int) ([]int64, error) {
	rows, err := s.pool.Query(ctx, takeNumbers, k)
	if err != nil {
		return nil, fmt.Errorf("take %d numbers: %w", k, err)
	}
	defer rows.Close()
	nums := make([]int64, 0, k)
	for rows.Next() {
		var v int64
		if err := rows.Scan(&v); err != nil {
			return nums, fmt.Errorf("take %d numbers: %w", k, err)
		}
		nums = append(nums, v)
	}
	if err := rows.Err(); err != nil {
		return nums, fmt.Errorf("take %d numbers: %w", k, err)
	}
	if len(nums) != k {
		return nums, fmt.Errorf("take %d numbers: got %d", k, len(nums))
	}
	return nums, nil
}

// TxnStatus asks PostgreSQL (pg_xact_status) what became of transaction txn.
// It dials a connection of its own: the batch's connection is broken, and
// the pool's idle ones may be too after a restart.
func (s *Store) TxnStatus(ctx context.Context, txn uint64) (hits.TxnStatus, error) {
	conn, err := pgx.ConnectConfig(ctx, s.pool.Config().ConnConfig)
	if err != nil {
		return hits.TxnInProgress, fmt.Errorf("status of transaction %d: %w", txn, err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var status *string
	if err := conn.QueryRow(ctx, `SELECT pg_xact_status($1::xid8)`, txn).Scan(&status); err != nil {
		return hits.TxnInProgress, fmt.Errorf("status of transaction %d: %w", txn, err)
	}
	switch {
	case status == nil:
		// Too old for the commit log: cannot happen within the seconds a
		// batch is settled, but say so rather than guess.
		return hits.TxnInProgress, fmt.Errorf("status of transaction %d: too old to tell", txn)
	case *status == "committed":
		return hits.TxnCommitted, nil
	case *status == "aborted":
		return hits.TxnAborted, nil
	}
	return hits.TxnInProgress, nil
}

// WindowBase counts the hits recorded before the window of minute, that is
// before the minutes-1 minutes preceding it: all hits (the instances' rows)
// less those recorded in the window or later, read in one snapshot. Rows a
// day old are never written again, so the answer for a minute never changes.
func (s *Store) WindowBase(ctx context.Context, minute time.Time, minutes int) (int64, error) {
	var base int64
	err := s.pool.QueryRow(ctx, `
SELECT (SELECT COALESCE(sum(hits), 0) FROM instance_hits)::bigint
     - (SELECT COALESCE(sum(hits), 0) FROM hits_by_minute
        WHERE minute >= $1::timestamptz - make_interval(mins => $2))::bigint`,
		minute, minutes-1).Scan(&base)
	if err != nil {
		return 0, fmt.Errorf("window base: %w", err)
	}
	return base, nil
}

// Breakdown returns up to limit instances with the most hits, most first.
func (s *Store) Breakdown(ctx context.Context, limit int) ([]hits.InstanceCount, error) {
	rows, err := s.pool.Query(ctx, `SELECT instance, hits FROM instance_hits ORDER BY hits DESC, instance LIMIT $1`, limit)
	if err != nil {
		return nil, fmt.Errorf("breakdown: %w", err)
	}
	b, err := pgx.CollectRows(rows, pgx.RowToStructByPos[hits.InstanceCount])
	if err != nil {
		return nil, fmt.Errorf("breakdown: %w", err)
	}
	return b, nil
}

// Totals reads the stored count (every committed hit) and the last-day sum without counting
// anything: for tests and tools, not for the page (it scans the window).
func (s *Store) Totals(ctx context.Context) (total, lastDay int64, err error) {
	err = s.pool.QueryRow(ctx, `
SELECT (SELECT COALESCE(sum(hits), 0) FROM instance_hits)::bigint,
       (SELECT COALESCE(sum(hits), 0)::bigint FROM hits_by_minute
        WHERE minute > date_trunc('minute', clock_timestamp()) - interval '1 day')`).Scan(&total, &lastDay)
	if err != nil {
		return 0, 0, fmt.Errorf("totals: %w", err)
	}
	return total, lastDay, nil
}

// Generation returns the random identity of this database's counters, for
// cache keys.
func (s *Store) Generation(ctx context.Context) (string, error) {
	var g string
	if err := s.pool.QueryRow(ctx, `SELECT generation FROM hits_meta WHERE id = 1`).Scan(&g); err != nil {
		return "", fmt.Errorf("generation: %w", err)
	}
	return g, nil
}

// Ping checks that PostgreSQL answers.
func (s *Store) Ping(ctx context.Context) error { return s.pool.Ping(ctx) }
