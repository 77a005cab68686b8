// Package testenv holds what the balancer's test packages share.
package testenv

import (
	"testing"
	"time"
)

// Eventually waits until cond holds, checking it every few milliseconds, and
// fails the test with what it was waiting for if d passes first. It is for
// state the test cannot be told about (another process, a server's
// counters); where a fake can signal a change, wait on that instead.
// Call it from the test's goroutine.
func Eventually(t testing.TB, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-deadline.C:
			t.Fatalf("timed out after %v waiting for %s", d, what)
		case <-tick.C:
		}
	}
}
