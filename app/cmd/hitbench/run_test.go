package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"hits/app/internal/loadgen"
)

func TestMedianPicksTheMiddleRun(t *testing.T) {
	rs := []loadgen.Result{
		{OK: 300, Elapsed: time.Second},
		{OK: 100, Elapsed: time.Second},
		{OK: 200, Elapsed: time.Second},
	}
	if got := median(rs); got != 2 {
		t.Errorf("median = run %d, want run 2 (200/s)", got)
	}
	if got := spread(rs, "%.0f"); got != "(100–300)" {
		t.Errorf("spread = %q, want (100–300)", got)
	}
}

func TestFormatting(t *testing.T) {
	for n, want := range map[int64]string{0: "0", 1_000_000: "1M", 10_000_000: "10M", 5000: "5k", 1234: "1234"} {
		if got := human(n); got != want {
			t.Errorf("human(%d) = %q, want %q", n, got, want)
		}
	}
	for d, want := range map[time.Duration]string{0: "-", 2500 * time.Microsecond: "2.50 ms", 25 * time.Millisecond: "25 ms"} {
		if got := ms(d); got != want {
			t.Errorf("ms(%s) = %q, want %q", d, got, want)
		}
	}
}

func TestRunRejectsBadFlags(t *testing.T) {
	for _, args := range [][]string{
		{"hitbench", "-sizes", "ten"},
		{"hitbench", "-rounds", "0"},
		{"hitbench", "-app-env", "NOEQUALS"},
	} {
		var out bytes.Buffer
		err := run(context.Background(), args, func(string) string { return "" }, &out, &out)
		if err == nil {
			t.Errorf("run(%q) = nil, want an error", strings.Join(args, " "))
		}
	}
}
