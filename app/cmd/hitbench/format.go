package main

import (
	"fmt"
	"strconv"
	"time"

	"hits/app/internal/loadgen"
	"hits/testkit"
)

// median returns the index of the run with the median throughput.
func median(rs []loadgen.Result) int {
	return testkit.MedianIndex(rs, loadgen.Result.PerSecond)
}

func spread(rs []loadgen.Result, format string) string {
	if len(rs) < 2 {
		return ""
	}
	lo, hi := rs[0].PerSecond(), rs[0].PerSecond()
	for _, r := range rs {
		lo, hi = min(lo, r.PerSecond()), max(hi, r.PerSecond())
	}
	return "(" + fmt.Sprintf(format, lo) + "–" + fmt.Sprintf(format, hi) + ")"
}

func errorsOf(rs []loadgen.Result) int {
	n := 0
	for _, r := range rs {
		n += r.Errors
	}
	return n
}

func rate(v float64) string {
	if v < 100 {
		return fmt.Sprintf("%.1f", v)
	}
	return fmt.Sprintf("%.0f", v)
}

func ms(d time.Duration) string {
	switch {
	case d == 0:
		return "-"
	case d < 10*time.Millisecond:
		return fmt.Sprintf("%.2f ms", float64(d)/1e6)
	default:
		return fmt.Sprintf("%.0f ms", float64(d)/1e6)
	}
}

func human(n int64) string {
	switch {
	case n >= 1_000_000 && n%1_000_000 == 0:
		return strconv.FormatInt(n/1_000_000, 10) + "M"
	case n >= 1000 && n%1000 == 0:
		return strconv.FormatInt(n/1000, 10) + "k"
	default:
		return strconv.FormatInt(n, 10)
	}
}
