package h1

import (
	"strings"
	"time"
)

// tokenChars marks the bytes allowed in a token (RFC 9110 5.6.2).
var tokenChars = alnumAnd("!#$%&'*+-.^_`|~")

// alnumAnd returns a table marking ASCII letters, digits and the bytes of
// extra.
func alnumAnd(extra string) (t [256]bool) {
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
	}
	for c := 'A'; c <= 'Z'; c++ {
		t[c] = true
	}
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for i := 0; i < len(extra); i++ {
		t[extra[i]] = true
	}
	return t
}

// IsToken reports whether s is a non-empty token: a valid method or
// field name.
func IsToken[T string | []byte](s T) bool {
	if len(s) == 0 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !tokenChars[s[i]] {
			return false
		}
	}
	return true
}

// ValidFieldValue reports whether a field value has no control bytes
// other than horizontal tab (RFC 9110 5.5): a NUL, CR or LF passed on
// could split or truncate the message at the next hop.
func ValidFieldValue[T string | []byte](v T) bool {
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < ' ' && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}

// hostChars marks the bytes a Host value may hold: those of a URI
// authority (RFC 3986 3.2.2), the set net/http's server allows.
var hostChars = alnumAnd("!$%&'()*+,-.:;=[]_~")

// ValidHost reports whether h may be a Host value.
func ValidHost(h string) bool {
	for i := 0; i < len(h); i++ {
		if !hostChars[h[i]] {
			return false
		}
	}
	return true
}

// HasToken reports whether a comma-separated field such as Connection
// lists tok, case-insensitively, without allocating.
func HasToken(vv []string, tok string) bool {
	for _, v := range vv {
		for t := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), tok) {
				return true
			}
		}
	}
	return false
}

// HopByHop reports whether a field describes one connection, not the
// message (RFC 9110 7.6.1), so a proxy must not pass it on. A switch, not
// a map: it runs for every field of every message, and the compiler turns
// it into a few length and byte comparisons.
func HopByHop(k string) bool {
	switch k {
	case "Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization",
		"Te", "Trailer", "Transfer-Encoding", "Upgrade":
		return true
	}
	return false
}

// Deadline remembers the deadline last set on a conn so it is moved only
// when it must: each move is a runtime timer update, and a keep-alive
// conn would otherwise pay two or three per request.
type Deadline struct {
	cur time.Time
}

// Move reports whether the deadline must be set to d, timeout from now
// (zero d: none), and records d if so; the caller then sets it on the
// conn. A current deadline no later than d and only slightly earlier (a
// sixteenth of the timeout, at most a second) is kept. The caller passes
// the timeout rather than Move reading the clock again: a clock read
// costs 60-200 ns on the benchmark machine, several times per request.
func (dl *Deadline) Move(d time.Time, timeout time.Duration) bool {
	if d.IsZero() {
		if dl.cur.IsZero() {
			return false
		}
	} else if !dl.cur.IsZero() && !dl.cur.After(d) && d.Sub(dl.cur) < min(time.Second, timeout/16) {
		return false
	}
	dl.cur = d
	return true
}

// Assume records that the conn's deadline was set to d elsewhere.
func (dl *Deadline) Assume(d time.Time) { dl.cur = d }
