// Package config turns the balancer's environment into a typed, validated
// Config. It is the only place that knows the LB_* variable names.
package config

import (
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// Algorithm names accepted by LB_ALGORITHM.
const (
	RoundRobin       = "round_robin"
	LeastConnections = "least_connections"
)

// Sticky session modes accepted by LB_STICKY_SESSIONS.
const (
	StickyNone    = "none"
	StickyCookies = "cookies"
)

// Config is everything the balancer needs to start. Durations are already
// parsed; every field has been validated by Load.
type Config struct {
	Backends    []string // host:port as written; names are re-resolved
	Addr        string   // proxy listener
	AdminAddr   string   // admin listener (status, dashboard, metrics)
	Algorithm   string   // RoundRobin or LeastConnections
	MaxAttempts int      // distinct backends tried per request
	// RetryIdempotent lets an idempotent request without a body be resent
	// after it may have reached a backend; false when GET has side effects.
	RetryIdempotent bool

	ResolveInterval time.Duration
	ResolveTimeout  time.Duration

	HealthPath         string
	HealthInterval     time.Duration
	HealthTimeout      time.Duration
	HealthyThreshold   int
	UnhealthyThreshold int
	PassiveFailures    int // consecutive connection failures that eject a backend; 0 disables
	// SlowStart is how long a backend entering rotation takes to grow to
	// its full share of new requests; 0 disables.
	SlowStart time.Duration

	Sticky       string // StickyNone or StickyCookies
	StickyCookie string
	StickyTTL    time.Duration
	StickySecret []byte // nil: a random per-process secret is made by the caller

	TrustedProxies []netip.Prefix

	DialTimeout            time.Duration
	BackendResponseTimeout time.Duration // time to the backend's response headers
	BackendIdleTimeout     time.Duration // idle keep-alive conns to backends are closed after this
	MaxIdlePerBackend      int

	ReadHeaderTimeout time.Duration
	ClientIdleTimeout time.Duration
	ClientBodyTimeout time.Duration // between two reads of a request body
	ClientSendTimeout time.Duration // between two writes to a client
	TunnelIdleTimeout time.Duration // an upgraded (WebSocket) tunnel with no bytes either way
	MaxBodyBytes      int64         // request body limit (413); 0: none
	MaxHeaderBytes    int
	ShutdownTimeout   time.Duration

	// AdminHosts are the Host names the admin listener answers besides IP
	// literals; ["*"] answers any (a DNS-rebinding page could then read it).
	AdminHosts []string

	LogLevel  slog.Level
	AccessLog bool
	Pprof     bool
	// DebugHeaders adds X-LB-Backend and X-LB-Reason to proxied responses
	// and to the requests backends get.
	DebugHeaders bool

	TLS TLS
	// ProxyProtocolFrom are the peers whose connections must begin with a
	// PROXY protocol header; a header from anyone else is refused. Empty:
	// PROXY protocol off.
	ProxyProtocolFrom []netip.Prefix
}

// DefaultAdminAddr is LB_ADMIN_ADDR's default; `lb healthcheck` asks it
// too when the variable is unset.
const DefaultAdminAddr = "127.0.0.1:8081"

// Floors below which a duration is a mistake, not a tuning: a 1ns health
// interval burns a core and never lets a probe finish.
const (
	minInterval = 10 * time.Millisecond
	minTimeout  = time.Millisecond
)

// DefaultACMEDirectory is Let's Encrypt's production directory.
const DefaultACMEDirectory = "https://acme-v02.api.letsencrypt.org/directory"

// TLS is the HTTPS listener's configuration. Addr empty: no TLS listener,
// and every other field is zero.
type TLS struct {
	Addr string // LB_TLS_ADDR

	// Certificates from files (both set) or over ACME (Domains set).
	CertFile, KeyFile string

	Domains      []string // lower-case host names
	Email        string
	Directory    string // ACME directory URL
	CARootsFile  string // PEM roots to trust the ACME server with; empty: the system's
	ACMECacheDir string

	Redirect   bool // plain listener answers 308 to https
	PublicPort int  // port in redirects; 0: the TLS listener's
	HSTSMaxAge time.Duration
}

// ACME reports whether certificates come from an ACME server.
func (t TLS) ACME() bool { return len(t.Domains) > 0 }

// Load reads and validates the configuration. getenv is os.Getenv in
// production and a map lookup in tests. The first bad value stops loading
// with an error naming the variable, the value and what is allowed.
func Load(getenv func(string) string) (Config, error) {
	p := parser{getenv: getenv}
	c := Config{
		Addr:        p.str("LB_ADDR", ":8080"),
		AdminAddr:   p.str("LB_ADMIN_ADDR", DefaultAdminAddr),
		Algorithm:   p.oneOf("LB_ALGORITHM", LeastConnections, RoundRobin, LeastConnections),
		MaxAttempts: p.intRange("LB_MAX_ATTEMPTS", 3, 1, 10),

		RetryIdempotent: p.boolean("LB_RETRY_IDEMPOTENT", true),

		ResolveInterval: p.duration("LB_RESOLVE_INTERVAL", 2*time.Second, minInterval),
		ResolveTimeout:  p.duration("LB_RESOLVE_TIMEOUT", 2*time.Second, minTimeout),

		HealthPath:         p.str("LB_HEALTH_PATH", "/healthz"),
		HealthInterval:     p.duration("LB_HEALTH_INTERVAL", time.Second, minInterval),
		HealthTimeout:      p.duration("LB_HEALTH_TIMEOUT", 0, minTimeout), // 0: derived from the interval below
		HealthyThreshold:   p.intRange("LB_HEALTHY_THRESHOLD", 2, 1, 100),
		UnhealthyThreshold: p.intRange("LB_UNHEALTHY_THRESHOLD", 2, 1, 100),
		PassiveFailures:    p.intRange("LB_PASSIVE_FAILURES", 3, 0, 100),
		SlowStart:          p.durationOrZero("LB_SLOW_START", 0, 10*time.Minute),

		Sticky:       p.oneOf("LB_STICKY_SESSIONS", StickyNone, StickyNone, StickyCookies),
		StickyCookie: p.str("LB_STICKY_COOKIE_NAME", "lb_sticky"),
		StickyTTL:    p.duration("LB_STICKY_COOKIE_TTL", time.Hour, time.Second),

		DialTimeout:            p.duration("LB_DIAL_TIMEOUT", 2*time.Second, minTimeout),
		BackendResponseTimeout: p.duration("LB_BACKEND_RESPONSE_TIMEOUT", 60*time.Second, minTimeout),
		BackendIdleTimeout:     p.duration("LB_BACKEND_IDLE_TIMEOUT", 30*time.Second, minTimeout),
		// 0 keeps no idle conns: every request dials (honest, and slow).
		MaxIdlePerBackend: p.intRange("LB_MAX_IDLE_PER_BACKEND", 256, 0, 100000),

		ReadHeaderTimeout: p.duration("LB_READ_HEADER_TIMEOUT", 10*time.Second, minTimeout),
		ClientIdleTimeout: p.duration("LB_CLIENT_IDLE_TIMEOUT", 120*time.Second, minTimeout),
		ClientBodyTimeout: p.duration("LB_CLIENT_BODY_TIMEOUT", 60*time.Second, minTimeout),
		ClientSendTimeout: p.duration("LB_CLIENT_SEND_TIMEOUT", 60*time.Second, minTimeout),
		TunnelIdleTimeout: p.duration("LB_TUNNEL_IDLE_TIMEOUT", 10*time.Minute, minTimeout),
		MaxBodyBytes:      int64(p.intRange("LB_MAX_BODY_BYTES", 1<<30, 0, 1<<62)),
		MaxHeaderBytes:    p.intRange("LB_MAX_HEADER_BYTES", 64<<10, 4<<10, 1<<20),
		ShutdownTimeout:   p.duration("LB_SHUTDOWN_TIMEOUT", 15*time.Second, minTimeout),

		LogLevel:  p.logLevel("LB_LOG_LEVEL"),
		AccessLog: p.boolean("LB_ACCESS_LOG", true),
		Pprof:     p.boolean("LB_PPROF", false),
		// Off unless asked for: replica names are internal topology. The
		// compose file turns them on, where seeing them is the lesson.
		DebugHeaders: p.boolean("LB_DEBUG_HEADERS", false),
	}
	c.Backends = p.backends("LB_BACKENDS")
	c.TrustedProxies = p.prefixes("LB_TRUSTED_PROXIES")
	c.AdminHosts = p.hosts("LB_ADMIN_HOSTS", []string{"localhost"})
	if s := getenv("LB_STICKY_SECRET"); s != "" {
		if len(s) < 16 {
			p.fail("LB_STICKY_SECRET", "(hidden)", "at least 16 bytes")
		}
		c.StickySecret = []byte(s)
	}
	p.check(c.HealthPath != "" && c.HealthPath[0] == '/', "LB_HEALTH_PATH", c.HealthPath, "a path starting with /")
	if c.HealthTimeout == 0 {
		// Unset: 800ms, but never longer than the interval, so setting only
		// LB_HEALTH_INTERVAL (to 500ms, say) is a valid configuration.
		c.HealthTimeout = min(800*time.Millisecond, c.HealthInterval)
	}
	p.check(c.HealthTimeout <= c.HealthInterval, "LB_HEALTH_TIMEOUT", c.HealthTimeout.String(), "at most LB_HEALTH_INTERVAL ("+c.HealthInterval.String()+")")
	p.check(validCookieName(c.StickyCookie), "LB_STICKY_COOKIE_NAME", c.StickyCookie, "a cookie name of letters, digits, '-' and '_'")
	p.address("LB_ADDR", c.Addr)
	p.address("LB_ADMIN_ADDR", c.AdminAddr)
	c.ProxyProtocolFrom = p.prefixes("LB_PROXY_PROTOCOL_FROM")
	c.TLS = p.tls()
	if p.err != nil {
		return Config{}, p.err
	}
	return c, nil
}

// parser keeps the first error so Load reads as a flat list of fields.
type parser struct {
	getenv func(string) string
	err    error
}

func (p *parser) fail(name, value, allowed string) {
	if p.err == nil {
		p.err = fmt.Errorf("config: %s=%q is invalid: want %s", name, value, allowed)
	}
}

func (p *parser) check(ok bool, name, value, allowed string) {
	if !ok {
		p.fail(name, value, allowed)
	}
}

func (p *parser) str(name, def string) string {
	if v := strings.TrimSpace(p.getenv(name)); v != "" {
		return v
	}
	return def
}

func (p *parser) oneOf(name, def string, allowed ...string) string {
	v := p.str(name, def)
	for _, a := range allowed {
		if v == a {
			return v
		}
	}
	p.fail(name, v, "one of "+strings.Join(allowed, ", "))
	return def
}

// duration parses a Go duration of at least floor.
func (p *parser) duration(name string, def, floor time.Duration) time.Duration {
	v := strings.TrimSpace(p.getenv(name))
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < floor {
		p.fail(name, v, "a positive Go duration of at least "+floor.String()+", such as 500ms, 10s or 1m")
		return def
	}
	return d
}

func (p *parser) logLevel(name string) slog.Level {
	switch v := strings.ToLower(strings.TrimSpace(p.getenv(name))); v {
	case "", "info":
		return slog.LevelInfo
	case "debug":
		return slog.LevelDebug
	case "warn":
		return slog.LevelWarn
	case "error":
		return slog.LevelError
	default:
		p.fail(name, v, "one of debug, info, warn, error")
		return slog.LevelInfo
	}
}

// hosts is a comma-separated list of host names (lower-cased), or "*".
func (p *parser) hosts(name string, def []string) []string {
	raw := strings.TrimSpace(p.getenv(name))
	if raw == "" {
		return def
	}
	if raw == "*" {
		return []string{"*"}
	}
	var out []string
	for _, item := range strings.Split(raw, ",") {
		item = strings.ToLower(strings.TrimSpace(item))
		if item == "" || !validHost(item) || strings.Contains(item, ":") {
			p.fail(name, raw, `"*" or a comma-separated list of host names without ports`)
			return def
		}
		out = append(out, item)
	}
	return out
}

// durationOrZero is a duration from 0 ("off") to hi.
func (p *parser) durationOrZero(name string, def, hi time.Duration) time.Duration {
	v := strings.TrimSpace(p.getenv(name))
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 || d > hi {
		p.fail(name, v, "0 (off) or a Go duration up to "+hi.String()+", such as 5s")
		return def
	}
	return d
}

func (p *parser) intRange(name string, def, lo, hi int) int {
	v := strings.TrimSpace(p.getenv(name))
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < lo || n > hi {
		p.fail(name, v, fmt.Sprintf("an integer from %d to %d", lo, hi))
		return def
	}
	return n
}

func (p *parser) boolean(name string, def bool) bool {
	v := strings.TrimSpace(p.getenv(name))
	if v == "" {
		return def
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		p.fail(name, v, "true or false")
		return def
	}
	return b
}

func (p *parser) address(name, v string) {
	if _, port, err := net.SplitHostPort(v); err != nil || !validPort(port, true) {
		p.fail(name, v, "host:port or :port, port 0-65535")
	}
}

func (p *parser) backends(name string) []string {
	raw := strings.TrimSpace(p.getenv(name))
	if raw == "" {
		p.fail(name, raw, "a comma-separated list of host:port (required)")
		return nil
	}
	var out []string
	seen := map[string]bool{}
	for _, item := range strings.Split(raw, ",") {
		item = strings.TrimSpace(item)
		host, port, err := net.SplitHostPort(item)
		if err != nil || host == "" || !validPort(port, false) || !validHost(host) {
			p.fail(name, raw, "a comma-separated list of host:port with a host name or IP and a port 1-65535")
			return nil
		}
		if !seen[item] {
			seen[item] = true
			out = append(out, item)
		}
	}
	return out
}

func (p *parser) prefixes(name string) []netip.Prefix {
	raw := strings.TrimSpace(p.getenv(name))
	if raw == "" {
		return nil
	}
	var out []netip.Prefix
	for _, item := range strings.Split(raw, ",") {
		item = strings.TrimSpace(item)
		if pre, err := netip.ParsePrefix(item); err == nil {
			out = append(out, pre.Masked())
			continue
		}
		if ip, err := netip.ParseAddr(item); err == nil {
			out = append(out, netip.PrefixFrom(ip, ip.BitLen()))
			continue
		}
		p.fail(name, raw, "a comma-separated list of CIDRs (10.0.0.0/8) or IP addresses")
		return nil
	}
	return out
}

// validPort accepts decimal digits only: Atoi alone would take "+80".
func validPort(s string, zeroOK bool) bool {
	if s == "" || len(s) > 5 || strings.Trim(s, "0123456789") != "" {
		return false
	}
	n, err := strconv.Atoi(s)
	return err == nil && n <= 65535 && (n > 0 || zeroOK && n == 0)
}

func validHost(h string) bool {
	if _, err := netip.ParseAddr(h); err == nil {
		return true
	}
	for _, r := range h {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '.' || r == '_') {
			return false
		}
	}
	return len(h) <= 253
}

func validCookieName(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
			return false
		}
	}
	return true
}
