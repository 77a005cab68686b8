// Package hits is the domain: what a counted page load sees, how concurrent
// hits share one transaction and are then numbered (the Batcher), and how
// the page's numbers are derived from a hit's number (the Counter). Storage and cache are small interfaces
// implemented by the postgres and rediscache packages.
package hits

import (
	"context"
	"errors"
	"time"
)

// Window is the span "Hits in the last day" covers, at minute granularity.
const Window = 24 * time.Hour

// windowMinutes is Window in minutes: the current minute plus the 1439 before it.
const windowMinutes = int(Window / time.Minute)

// Hit is what one counted page load sees. Both numbers include the hit itself.
type Hit struct {
	// Instance is the replica that counted the hit.
	Instance string
	// Total is this hit's own number: the count of all hits ever, up to and including it.
	Total int64
	// LastDay counts hits in the rolling last 24 hours (by minute), up to and including it.
	LastDay int64
	// Minute is the database minute the hit was recorded in.
	Minute time.Time
}

// Commit is what one committed and numbered batch transaction reports.
type Commit struct {
	// Minute is the minute (database clock, truncated) the batch was recorded in.
	Minute time.Time
	// Numbers are the numbers taken after the batch committed, one per hit
	// (plus any owed ones the Batcher asked for), ascending. Unique across
	// all replicas, never reused; not necessarily contiguous, since other
	// replicas take numbers at the same time.
	Numbers []int64
	// Txn is the batch transaction's id (PostgreSQL's xid8), read inside it
	// before COMMIT was sent; zero if it never arrived.
	Txn uint64
}

// TxnStatus is what became of a batch transaction whose COMMIT's answer was lost.
type TxnStatus int

// The states of a transaction, as pg_xact_status reports them.
const (
	TxnInProgress TxnStatus = iota // not finished yet, or not known (the error says why)
	TxnCommitted
	TxnAborted
)

// InstanceCount is one row of the per-instance breakdown.
type InstanceCount struct {
	Instance string `json:"instance"`
	Hits     int64  `json:"hits"`
}

// Committer durably records n hits for an instance in one transaction that
// touches only rows no other instance writes, and after it committed takes
// n+owed numbers from one sequence shared by every replica.
type Committer interface {
	// CommitHits records the hits and takes the numbers. An error wrapping
	// ErrNotNumbered means the hits committed but only the numbers in
	// Commit.Numbers (maybe none) were taken; one
	// wrapping ErrOutcomeUnknown means COMMIT's answer was lost (ask
	// TxnStatus about Commit.Txn when it is nonzero); any other error means
	// nothing was committed.
	CommitHits(ctx context.Context, instance string, n, owed int) (Commit, error)
	// TakeNumbers takes k numbers, ascending, for a batch that committed
	// without them. On error it returns those it did take.
	TakeNumbers(ctx context.Context, k int) ([]int64, error)
	// TxnStatus asks, on a connection of its own, what became of transaction txn.
	TxnStatus(ctx context.Context, txn uint64) (TxnStatus, error)
}

// Store is the durable side the Counter reads besides committing.
type Store interface {
	Committer
	// WindowBase counts the hits recorded before the window of minute (the
	// minute and the minutes-1 before it). It never changes for a minute.
	WindowBase(ctx context.Context, minute time.Time, minutes int) (int64, error)
	// Breakdown returns the instances with the most hits, most first.
	Breakdown(ctx context.Context, limit int) ([]InstanceCount, error)
}

// Cache is a shared, optional, best-effort cache. A miss is (zero, false, nil);
// any error is treated as a miss by the Counter.
type Cache interface {
	WindowBase(ctx context.Context, minute time.Time) (int64, bool, error)
	SetWindowBase(ctx context.Context, minute time.Time, base int64) error
	Breakdown(ctx context.Context) ([]InstanceCount, bool, error)
	SetBreakdown(ctx context.Context, b []InstanceCount) error
}

// ErrUnavailable reports that a hit could not be counted because the store
// failed or timed out; the web layer maps it to 503. The hit was not
// acknowledged; it was not committed unless its batch's outcome could not be
// learnt in time (see the Batcher).
var ErrUnavailable = errors.New("hit store unavailable")

// ErrNotNumbered reports a batch that committed but whose numbers could not
// be taken (PostgreSQL failed between COMMIT and nextval). The Batcher takes
// them again while its requests wait; if it cannot, their hits are stored but
// not acknowledged, and the next batch takes those numbers too and skips
// them, so numbers keep matching the stored count.
var ErrNotNumbered = errors.New("hits committed but not numbered")

// ErrOutcomeUnknown reports a batch whose COMMIT was sent but whose answer
// was lost (connection cut, deadline, PostgreSQL restarting). The Batcher
// asks PostgreSQL what became of the transaction; it never runs the write
// again, which would count those hits twice.
var ErrOutcomeUnknown = errors.New("outcome of commit unknown")

// ErrStopped reports a hit submitted after the Batcher stopped.
var ErrStopped = errors.New("batcher stopped")
