package testkit

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// Eventually waits until cond holds, checking it every 2ms, and fails the
// test with what it was waiting for if d passes first. It is for state the
// test cannot be told about (another process, a server's counters); where a
// fake can signal a change, wait on that instead. Call it from the test's
// goroutine.
func Eventually(t testing.TB, what string, d time.Duration, cond func() bool) {
	t.Helper()
	EventuallyNil(t, what, d, func() error {
		if cond() {
			return nil
		}
		return errNotYet
	})
}

var errNotYet = fmt.Errorf("condition not met")

// EventuallyNil is Eventually for a condition that says why it does not
// hold yet: the last error is in the failure message.
func EventuallyNil(t testing.TB, what string, d time.Duration, cond func() error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	if err := Poll(ctx, 2*time.Millisecond, func(context.Context) error { return cond() }); err != nil {
		t.Fatalf("timed out after %v waiting for %s: %v", d, what, err)
	}
}

// Poll calls cond every interval until it returns nil or ctx ends, and
// then returns nil or ctx's error together with cond's last one. Each call
// gets ctx, so a slow check is cut off at the deadline too. It is for
// code outside a test (servers started by TestMain, benchmarks).
func Poll(ctx context.Context, every time.Duration, cond func(ctx context.Context) error) error {
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		err := cond(ctx)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last: %v)", ctx.Err(), err)
		case <-tick.C:
		}
	}
}
