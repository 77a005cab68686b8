package balancer

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Sticky signs and checks the cookie that pins a client to a backend. The
// value is "<id>.<expiry>.<mac>": id is derived from the backend address
// with the secret (so it does not reveal the address), expiry is unix
// seconds and mac is HMAC-SHA256 over both. Anything that does not verify
// is treated as no cookie.
type Sticky struct {
	name   string
	ttl    time.Duration
	secret []byte
	now    func() time.Time
}

// NewSticky returns a cookie signer. Balancers that share secret accept
// each other's cookies. now is the clock; if nil, time.Now.
func NewSticky(name string, ttl time.Duration, secret []byte, now func() time.Time) *Sticky {
	if now == nil {
		now = time.Now
	}
	return &Sticky{name: name, ttl: ttl, secret: secret, now: now}
}

// ID is the opaque sticky id of a backend address.
func (s *Sticky) ID(addr string) string {
	m := hmac.New(sha256.New, s.secret)
	m.Write([]byte("backend:" + addr))
	return hex.EncodeToString(m.Sum(nil)[:8])
}

func (s *Sticky) mac(payload string) string {
	m := hmac.New(sha256.New, s.secret)
	m.Write([]byte(payload))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// Value returns a signed cookie value pinning to id until now+ttl.
func (s *Sticky) Value(id string) string {
	payload := id + "." + strconv.FormatInt(s.now().Add(s.ttl).Unix(), 10)
	return payload + "." + s.mac(payload)
}

// Verify returns the backend id in a cookie value, or "" when the value is
// malformed, forged, tampered with or expired.
func (s *Sticky) Verify(v string) string {
	i := strings.LastIndexByte(v, '.')
	if i < 0 {
		return ""
	}
	payload, mac := v[:i], v[i+1:]
	if !hmac.Equal([]byte(mac), []byte(s.mac(payload))) {
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

func (s *Sticky) cookie(id string) *http.Cookie {
	return &http.Cookie{
		Name:     s.name,
		Value:    s.Value(id),
		Path:     "/",
		MaxAge:   int(s.ttl / time.Second),
		HttpOnly: true,
		SameSite: http.SameSiteLaxMode,
	}
}
