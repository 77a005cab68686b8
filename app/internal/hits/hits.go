// Package hits is the domain: what a counted page load sees, how concurrent
// hits share one transaction (the Batcher), and how the numbers are derived
// from a batch's result (the Counter). Storage and cache are small interfaces
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

// Commit is what one committed batch transaction reports.
type Commit struct {
	// Total is the all-time total after the batch.
	Total int64
	// Minute is the minute (database clock, truncated) the batch was recorded in.
	Minute time.Time
	// MinuteSum counts hits in Minute across all instances after the batch.
	MinuteSum int64
}

// InstanceCount is one row of the per-instance breakdown.
type InstanceCount struct {
	Instance string `json:"instance"`
	Hits     int64  `json:"hits"`
}

// Committer durably records n hits for an instance in one transaction.
// Batches from every replica must be serialized so that Total and MinuteSum
// describe exactly the hits committed before and in this batch.
type Committer interface {
	CommitHits(ctx context.Context, instance string, n int) (Commit, error)
}

// Store is the durable side the Counter reads besides committing.
type Store interface {
	Committer
	// ClosedSum sums hits over the windowMinutes-1 minutes before minute.
	ClosedSum(ctx context.Context, minute time.Time, minutes int) (int64, error)
	// Breakdown returns the instances with the most hits, most first.
	Breakdown(ctx context.Context, limit int) ([]InstanceCount, error)
}

// Cache is a shared, optional, best-effort cache. A miss is (zero, false, nil);
// any error is treated as a miss by the Counter.
type Cache interface {
	ClosedSum(ctx context.Context, minute time.Time) (int64, bool, error)
	SetClosedSum(ctx context.Context, minute time.Time, sum int64) error
	Breakdown(ctx context.Context) ([]InstanceCount, bool, error)
	SetBreakdown(ctx context.Context, b []InstanceCount) error
}

// ErrUnavailable reports that a hit could not be counted because the store
// failed or timed out; the web layer maps it to 503. The hit was not
// acknowledged, so it may or may not have been committed.
var ErrUnavailable = errors.New("hit store unavailable")

// ErrStopped reports a hit submitted after the Batcher stopped.
var ErrStopped = errors.New("batcher stopped")
