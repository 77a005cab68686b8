package testkit

import (
	"cmp"
	"slices"
	"time"
)

// Median returns the middle of xs (the mean of the two middle values for an
// even count); zero for none. xs is not reordered.
func Median[T int | int64 | float64 | time.Duration](xs []T) T {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// MedianIndex returns the index of the element of xs whose key is the
// median (the upper middle for an even count), for picking the median run
// of a benchmark and reporting its other figures with it; -1 for none.
func MedianIndex[E any, K cmp.Ordered](xs []E, key func(E) K) int {
	if len(xs) == 0 {
		return -1
	}
	idx := make([]int, len(xs))
	for i := range idx {
		idx[i] = i
	}
	slices.SortStableFunc(idx, func(a, b int) int { return cmp.Compare(key(xs[a]), key(xs[b])) })
	return idx[len(idx)/2]
}
