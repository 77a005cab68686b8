package balancer

import (
	"testing"
	"time"
)

// FuzzStickyCookie: any cookie value is either a value this secret made
// (then it verifies to its id until it expires) or it is treated as
// absent; changing any byte of a good value makes it absent.
func FuzzStickyCookie(f *testing.F) {
	clock := &fakeClock{now: time.Unix(1_800_000_000, 0)}
	s := NewSticky("lb_sticky", time.Hour, []byte("0123456789abcdef0123"), clock.Now)
	good := s.Value(s.ID("10.0.0.2:8080"))
	f.Add(good, uint(0), byte('x'))
	f.Add("", uint(0), byte(0))
	f.Add("garbage", uint(3), byte('.'))
	f.Add("a.b.c", uint(1), byte('='))
	f.Add(good+".", uint(len(good)-1), byte('A'))
	f.Fuzz(func(t *testing.T, v string, pos uint, b byte) {
		if id := s.Verify(v); id != "" && v != good {
			t.Fatalf("forged value %q verified as %q", v, id)
		}
		mutated := []byte(good)
		mutated[pos%uint(len(mutated))] = b
		if string(mutated) != good && s.Verify(string(mutated)) != "" {
			t.Fatalf("tampered value %q verified", mutated)
		}
		if id := s.Verify(good); id != s.ID("10.0.0.2:8080") {
			t.Fatalf("good value verified as %q", id)
		}
	})
}
