package balancer

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"hash"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// macEncoding writes and reads the cookie's MAC. Strict, so exactly one
// string decodes to a given MAC, as when encoded strings were compared.
var macEncoding = base64.RawURLEncoding.Strict()

// Sticky signs and checks the cookie that pins a client to a backend. The
// value is "<id>.<expiry>.<mac>": id is derived from the backend address
// with the secret (so it does not reveal the address), expiry is unix
// seconds and mac is HMAC-SHA256 over both. Anything that does not verify
// is treated as no cookie.
type Sticky struct {
	name string
	ttl  time.Duration
	now  func() time.Time
	macs sync.Pool // hash.Hash: HMAC-SHA256 keyed with secret, reused per request
}

// NewSticky returns a cookie signer. Balancers that share secret accept
// each other's cookies. now is the clock; if nil, time.Now.
func NewSticky(name string, ttl time.Duration, secret []byte, now func() time.Time) *Sticky {
	if now == nil {
		now = time.Now
	}
	s := &Sticky{name: name, ttl: ttl, now: now}
	s.macs.New = func() any { return hmac.New(sha256.New, secret) }
	return s
}

// ID is the opaque sticky id of a backend address.
func (s *Sticky) ID(addr string) string {
	var b [sha256.Size]byte
	return hex.EncodeToString(s.sum(b[:0], "backend:"+addr)[:8])
}

// sum appends HMAC-SHA256(secret, payload) to dst with a pooled hash, so
// checking a cookie on every pinned request does not build a new HMAC.
func (s *Sticky) sum(dst []byte, payload string) []byte {
	m := s.macs.Get().(hash.Hash)
	m.Reset()
	io.WriteString(m, payload)
	dst = m.Sum(dst)
	s.macs.Put(m)
	return dst
}

// Value returns a signed cookie value pinning to id until now+ttl.
func (s *Sticky) Value(id string) string {
	payload := id + "." + strconv.FormatInt(s.now().Add(s.ttl).Unix(), 10)
	var b [sha256.Size]byte
	return payload + "." + macEncoding.EncodeToString(s.sum(b[:0], payload))
}

// Verify returns the backend id in a cookie value, or "" when the value is
// malformed, forged, tampered with or expired.
func (s *Sticky) Verify(v string) string {
	i := strings.LastIndexByte(v, '.')
	if i < 0 {
		return ""
	}
	payload, mac := v[:i], v[i+1:]
	var got, want [sha256.Size]byte
	if len(mac) != macEncoding.EncodedLen(sha256.Size) {
		return ""
	}
	if n, err := macEncoding.Decode(got[:], []byte(mac)); err != nil || n != sha256.Size {
		return ""
	}
	if !hmac.Equal(got[:], s.sum(want[:0], payload)) {
		return ""
	}
	id, exp, ok := strings.Cut(payload, ".")
	if !ok {
		return ""
	}
	sec, err := strconv.ParseInt(exp, 10, 64)
	if err != nil || s.now().Unix() >= sec {
		return ""
	}
	return id
}

// pinned is the verified backend id from r's cookie, "" if none. A nil
// Sticky pins nothing.
func (s *Sticky) pinned(r *http.Request) string {
	if s == nil {
		return ""
	}
	for _, c := range r.CookiesNamed(s.name) {
		if id := s.Verify(c.Value); id != "" {
			return id
		}
	}
	return ""
}

// cookie pins to id; secure (the request came over TLS) keeps the browser
// from sending it back over plain HTTP.
func (s *Sticky) cookie(id string, secure bool) *http.Cookie {
	return &http.Cookie{
		Secure:   secure,
		Name:     s.name,
		Value:    s.Value(id),
		Path:     "/",
		MaxAge:   int(s.ttl / time.Second),
		HttpOnly: true,
		SameSite: http.SameSiteLaxMode,
	}
}
