package balancer

import (
	"net/http"
	"net/http/cookiejar"
	"strings"
	"testing"
	"time"
)

func stickyLB(t *testing.T, clock *fakeClock, backends ...*testBackend) (*testLB, *Sticky) {
	t.Helper()
	s := NewSticky("lb_sticky", time.Hour, []byte("0123456789abcdef0123456789abcdef"), clock.Now)
	lb := newTestLB(t, PoolOptions{StickyID: s.ID}, ProxyOptions{Sticky: s}, backends...)
	return lb, s
}

func TestStickyCookieKeepsClientOnItsBackend(t *testing.T) {
	a, b, c := startBackend(t, "a", nil), startBackend(t, "b", nil), startBackend(t, "c", nil)
	clock := &fakeClock{now: time.Unix(1_700_000_000, 0)}
	lb, _ := stickyLB(t, clock, a, b, c)
	jar, _ := cookiejar.New(nil)
	client := &http.Client{Jar: jar}

	_, first, resp := get(t, client, newReq(t, "GET", lb.url+"/", nil))
	ck := findCookie(resp, "lb_sticky")
	if ck == nil {
		t.Fatal("first response set no sticky cookie")
	}
	if !ck.HttpOnly || ck.SameSite != http.SameSiteLaxMode || ck.Path != "/" {
		t.Errorf("cookie attributes %+v, want HttpOnly, SameSite=Lax, Path=/", ck)
	}
	for _, be := range []*testBackend{a, b, c} {
		if strings.Contains(ck.Value, be.addr()) || strings.Contains(ck.Value, strings.Split(be.addr(), ":")[1]) {
			t.Errorf("cookie %q reveals a backend address", ck.Value)
		}
	}
	for i := range 10 {
		_, got, resp := get(t, client, newReq(t, "GET", lb.url+"/", nil))
		if got != first {
			t.Fatalf("request %d went to %s, want pinned %s", i, got, first)
		}
		if findCookie(resp, "lb_sticky") != nil {
			t.Errorf("request %d re-set a cookie that was still valid", i)
		}
	}

	// The pinned backend fails its checks: fail over and re-pin.
	pinned := map[string]*testBackend{"a": a, "b": b, "c": c}[first]
	lb.pool.SetHealthy(pinned.addr(), false)
	status, second, resp := get(t, client, newReq(t, "GET", lb.url+"/", nil))
	if status != 200 || second == first {
		t.Fatalf("after %s went down: status %d from %s, want 200 from another", first, status, second)
	}
	if findCookie(resp, "lb_sticky") == nil {
		t.Error("fail-over did not re-set the cookie")
	}
	lb.pool.SetHealthy(pinned.addr(), true)
	for i := range 5 {
		if _, got, _ := get(t, client, newReq(t, "GET", lb.url+"/", nil)); got != second {
			t.Fatalf("request %d after re-pin went to %s, want %s (new pin holds when the old one returns)", i, got, second)
		}
	}
}

func TestBadStickyCookiesAreTreatedAsAbsent(t *testing.T) {
	a, b := startBackend(t, "a", nil), startBackend(t, "b", nil)
	clock := &fakeClock{now: time.Unix(1_700_000_000, 0)}
	lb, s := stickyLB(t, clock, a, b)
	valid := s.Value(s.ID(a.addr()))
	flip := "f"
	if valid[0] == 'f' {
		flip = "e"
	}
	other := NewSticky("lb_sticky", time.Hour, []byte("another-secret-another-secret!!"), clock.Now)
	cases := map[string]string{
		"garbage":         "%%%not-a-cookie",
		"empty parts":     "..",
		"forged":          other.Value(other.ID(a.addr())),
		"tampered id":     flip + valid[1:],
		"tampered expiry": strings.Replace(valid, ".1700", ".1799", 1),
		"unknown backend": s.Value("0000000000000000"),
		"very long":       strings.Repeat("a", 3000),
	}
	for name, value := range cases {
		t.Run(name, func(t *testing.T) {
			req := newReq(t, "GET", lb.url+"/", nil)
			req.AddCookie(&http.Cookie{Name: "lb_sticky", Value: value})
			status, _, resp := get(t, http.DefaultClient, req)
			if status != 200 {
				t.Fatalf("status %d, want 200", status)
			}
			ck := findCookie(resp, "lb_sticky")
			if ck == nil || s.Verify(ck.Value) == "" {
				t.Errorf("no fresh valid cookie set in place of a bad one")
			}
		})
	}
	t.Run("expired", func(t *testing.T) {
		clock.Add(2 * time.Hour)
		if s.Verify(valid) != "" {
			t.Fatal("Verify accepted an expired value")
		}
		req := newReq(t, "GET", lb.url+"/", nil)
		req.AddCookie(&http.Cookie{Name: "lb_sticky", Value: valid})
		status, _, resp := get(t, http.DefaultClient, req)
		if status != 200 || findCookie(resp, "lb_sticky") == nil {
			t.Errorf("expired cookie: status %d, cookie re-set %v; want 200 and a new cookie", status, findCookie(resp, "lb_sticky") != nil)
		}
	})
	t.Run("valid honoured", func(t *testing.T) {
		value := s.Value(s.ID(b.addr()))
		for range 4 {
			req := newReq(t, "GET", lb.url+"/", nil)
			req.AddCookie(&http.Cookie{Name: "lb_sticky", Value: value})
			if _, got, _ := get(t, http.DefaultClient, req); got != "b" {
				t.Fatalf("valid cookie for b sent to %s", got)
			}
		}
	})
}

func findCookie(resp *http.Response, name string) *http.Cookie {
	for _, c := range resp.Cookies() {
		if c.Name == name {
			return c
		}
	}
	return nil
}

func BenchmarkStickyVerify(b *testing.B) {
	s := NewSticky("lb_sticky", time.Hour, []byte("0123456789abcdef"), nil)
	v := s.Value(s.ID("10.0.0.2:8080"))
	b.ReportAllocs()
	for b.Loop() {
		if s.Verify(v) == "" {
			b.Fatal("a fresh cookie did not verify")
		}
	}
}
