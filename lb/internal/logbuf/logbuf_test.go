package logbuf

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"hits/testkit"
)

// recorder keeps every write it gets, separately.
type recorder struct {
	mu     sync.Mutex
	writes []string
}

func (r *recorder) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.writes = append(r.writes, string(p))
	return len(p), nil
}

func (r *recorder) get() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.writes...)
}

func TestLinesAreBatchedAndNeverSplit(t *testing.T) {
	var r recorder
	w := New(&r, 100, time.Hour)
	line := strings.Repeat("x", 29) + "\n" // 30 bytes: three fit in 100
	for range 7 {
		w.Write([]byte(line))
	}
	got := r.get()
	if len(got) != 2 || got[0] != strings.Repeat(line, 3) || got[1] != strings.Repeat(line, 3) {
		t.Fatalf("writes before Flush = %q; want two writes of three whole lines", got)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if got := r.get(); len(got) != 3 || got[2] != line {
		t.Fatalf("after Close: %q; want the seventh line written", got)
	}
	w.Write([]byte(line)) // after Close: straight through
	if got := r.get(); len(got) != 4 {
		t.Fatalf("a write after Close was held back: %q", got)
	}
}

func TestALineLongerThanTheBufferGoesStraightThroughInOrder(t *testing.T) {
	var r recorder
	w := New(&r, 10, time.Hour)
	w.Write([]byte("a\n"))
	w.Write([]byte(strings.Repeat("b", 20) + "\n"))
	if got := r.get(); len(got) != 2 || got[0] != "a\n" || !strings.HasPrefix(got[1], "bbb") {
		t.Fatalf("writes = %q; want the pending line, then the long one", got)
	}
}

func TestAPendingLineIsWrittenWithinTheInterval(t *testing.T) {
	var r recorder
	w := New(&r, 1<<16, 50*time.Millisecond)
	defer w.Close()
	start := time.Now()
	w.Write([]byte("first\n"))
	testkit.Eventually(t, "the timer's flush", 5*time.Second, func() bool { return len(r.get()) == 1 })
	if d := time.Since(start); d < 40*time.Millisecond {
		t.Errorf("flushed after %s; want it held about 50ms", d)
	}
	// The timer is re-armed for the next batch.
	w.Write([]byte("second\n"))
	testkit.Eventually(t, "the second batch", 5*time.Second, func() bool { return len(r.get()) == 2 })
}

func TestConcurrentWritersKeepEveryLineWhole(t *testing.T) {
	var out bytes.Buffer
	var mu sync.Mutex
	w := New(writerFunc(func(p []byte) (int, error) { mu.Lock(); defer mu.Unlock(); return out.Write(p) }), 512, time.Millisecond)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 500 {
				fmt.Fprintf(w, "goroutine %d line %d %s\n", g, i, strings.Repeat("z", i%40))
			}
		})
	}
	wg.Wait()
	w.Close()
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	if len(lines) != 8*500 {
		t.Fatalf("%d lines; want %d", len(lines), 8*500)
	}
	seen := map[string]bool{}
	for _, l := range lines {
		var g, i int
		var z string
		if n, _ := fmt.Sscanf(l, "goroutine %d line %d %s", &g, &i, &z); n < 2 || seen[l] {
			t.Fatalf("broken or repeated line %q", l)
		}
		seen[l] = true
	}
}

func TestAWriteErrorIsReportedByFlushAndClose(t *testing.T) {
	boom := errors.New("disk full")
	w := New(writerFunc(func([]byte) (int, error) { return 0, boom }), 64, time.Hour)
	if _, err := w.Write([]byte("x\n")); err != nil {
		t.Fatalf("Write = %v; want nil (errors are reported by Flush)", err)
	}
	if err := w.Flush(); !errors.Is(err, boom) {
		t.Errorf("Flush = %v; want %v", err, boom)
	}
	if err := w.Close(); !errors.Is(err, boom) {
		t.Errorf("Close = %v; want %v", err, boom)
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }
