// Package config turns the process environment into a typed, validated Config.
// It is the only place that knows the variable names; every other package
// receives plain values.
package config

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// Config is the app's whole configuration, parsed once at start-up.
type Config struct {
	// DatabaseURL is the PostgreSQL connection string (DATABASE_URL, required).
	DatabaseURL string
	// RedisURL is one Redis server's URL (REDIS_URL: redis:// or rediss://,
	// with password and database in it). Empty, and no Sentinel, means no cache.
	RedisURL string
	// RedisSentinelAddrs are the Sentinels (REDIS_SENTINEL_ADDRS, host:port
	// each) that name the current master of RedisSentinelMaster; empty means
	// no Sentinel. Exclusive with RedisURL.
	RedisSentinelAddrs []string
	// RedisSentinelMaster is the master's name the Sentinels monitor.
	RedisSentinelMaster string
	// RedisSentinelPassword authenticates to the Sentinels themselves.
	RedisSentinelPassword string
	// RedisMasterPassword authenticates to the master found through Sentinel
	// (with RedisURL the password is in the URL).
	RedisMasterPassword string
	// RedisPrefix starts every Redis key, so deployments can share one Redis.
	RedisPrefix string
	// InstanceID names this replica (INSTANCE_ID); empty means detect it.
	InstanceID string
	// Port is the TCP port to listen on, on all interfaces (PORT, default 8080).
	Port int
	// DrainTimeout is how long /readyz answers 503 while the app still serves
	// after SIGTERM, so a balancer notices before connections are refused.
	DrainTimeout time.Duration
	// ShutdownTimeout bounds waiting for in-flight requests after draining.
	ShutdownTimeout time.Duration
	// HitTimeout bounds how long a page load waits for its hit's batch to
	// begin (then for its outcome, up to SettleTimeout longer).
	HitTimeout time.Duration
	// SettleTimeout is how much longer than HitTimeout a page load waits
	// once its batch's COMMIT may have run, for the outcome and its number.
	SettleTimeout time.Duration
	// DBTimeout bounds one batch transaction and each PostgreSQL query.
	DBTimeout time.Duration
	// DBMaxConns caps the PostgreSQL pool.
	DBMaxConns int
	// StartupTimeout bounds waiting for PostgreSQL (and migrations) at start.
	StartupTimeout time.Duration
	// BatchMax caps how many hits share one transaction.
	BatchMax int
	// BatchWorkers is how many batch transactions one replica keeps in flight.
	BatchWorkers int
	// BatchLinger is the longest a batch waits for more hits before it
	// commits (see hits.BatcherConfig.Linger).
	BatchLinger time.Duration
	// BatchLingerHits is the most hits a batch lingers for: one this full
	// commits at once (see hits.BatcherConfig.LingerHits).
	BatchLingerHits int
	// CacheTimeout bounds every Redis call, so a slow Redis never slows a page much.
	CacheTimeout time.Duration
	// OpsAddr is the operations listener (/metrics, pprof): never published,
	// never reached through the balancer.
	OpsAddr string
	// OpsPprof mounts net/http/pprof on the operations listener.
	OpsPprof bool
	// LogLevel is the minimum slog level: debug, info, warn or error.
	LogLevel string
}

// Var describes one environment variable: its name, default and what is allowed.
type Var struct {
	Name, Default, Allowed, Doc string
}

// Vars lists every variable Load reads, for documentation and error messages.
func Vars() []Var {
	return []Var{
		{"DATABASE_URL", "", "a PostgreSQL URL such as postgres://user:pass@host:5432/db", "PostgreSQL, the source of truth (required)"},
		{"REDIS_URL", "", "a Redis URL such as redis://host:6379/0 or rediss://user:pass@host:6380/0, or empty", "one Redis server, the cache (optional; empty and no Sentinel means no cache)"},
		{"REDIS_SENTINEL_ADDRS", "", "empty, or comma-separated host:port of Redis Sentinels, e.g. s1:26379,s2:26379,s3:26379", "find the cache's master through Redis Sentinel (instead of REDIS_URL)"},
		{"REDIS_SENTINEL_MASTER", "", "the master name the Sentinels monitor (required with REDIS_SENTINEL_ADDRS)", "name of the Sentinel-monitored master"},
		{"REDIS_SENTINEL_PASSWORD", "", "empty, or the Sentinels' own password (requirepass in sentinel.conf)", "password of the Sentinels"},
		{"REDIS_SENTINEL_MASTER_PASSWORD", "", "empty, or the password of the master and replicas (with Sentinel only; REDIS_URL carries its own)", "password of the Redis servers found through Sentinel"},
		{"REDIS_KEY_PREFIX", "hits:", "1..64 characters without spaces", "prefix of every Redis key, so deployments can share one Redis"},
		{"INSTANCE_ID", "", "any text up to 64 characters", "name shown on the page; empty means reverse DNS of the container's IP, else the hostname"},
		{"PORT", "8080", "an integer 0..65535", "listen port, all interfaces"},
		{"DRAIN_TIMEOUT", "5s", "a Go duration 0s..10m", "after SIGTERM: /readyz 503 while still serving"},
		{"SHUTDOWN_TIMEOUT", "10s", "a Go duration 1s..10m", "after draining: wait this long for in-flight requests"},
		{"HIT_TIMEOUT", "5s", "a Go duration 100ms..1m", "longest a page waits for its hit's batch to begin before answering 503 (nothing stored)"},
		{"SETTLE_TIMEOUT", "10s", "a Go duration 1s..10m", "once a hit's batch may have committed (COMMIT sent), how much longer than HIT_TIMEOUT the page waits for the outcome and its number, e.g. while PostgreSQL restarts"},
		{"DB_TIMEOUT", "3s", "a Go duration 100ms..1m", "deadline of one batch transaction or query"},
		{"DB_MAX_CONNS", "8", "an integer 2..1000", "PostgreSQL pool size"},
		{"STARTUP_TIMEOUT", "60s", "a Go duration 1s..1h", "how long start-up waits for PostgreSQL"},
		{"BATCH_MAX", "1000", "an integer 1..100000", "most hits committed in one transaction"},
		{"BATCH_LINGER", "10ms", "a Go duration 0s..20ms", "the longest a batch waits for more hits before it commits: only while hits arrive less than this apart, and only for as many as the replica lately held at once (it waits twice the time the missing hits should take, at most this); 0s: never"},
		{"BATCH_LINGER_HITS", "32", "an integer 1..100000", "the most hits a batch lingers for: a batch this full commits at once"},
		{"BATCH_WORKERS", "1", "an integer 1..16", "batch transactions in flight per replica (they queue on this replica's own rows)"},
		{"CACHE_TIMEOUT", "50ms", "a Go duration 1ms..10s", "deadline of each Redis call"},
		{"OPS_ADDR", ":9090", "host:port or :port, e.g. 127.0.0.1:9090", "operations listener: /metrics (and /debug/pprof with OPS_PPROF); never publish it"},
		{"OPS_PPROF", "false", "true or false", "serve /debug/pprof on OPS_ADDR"},
		{"LOG_LEVEL", "info", "debug, info, warn or error", "minimum log level"},
	}
}

// Load reads and validates every variable through getenv. All problems are
// reported together so one failed start shows everything to fix.
func Load(getenv func(string) string) (Config, error) {
	p := parser{getenv: getenv}
	c := Config{
		DatabaseURL:           p.databaseURL("DATABASE_URL"),
		RedisURL:              p.redisURL("REDIS_URL"),
		RedisSentinelAddrs:    p.hostPorts("REDIS_SENTINEL_ADDRS"),
		RedisSentinelMaster:   p.text("REDIS_SENTINEL_MASTER"),
		RedisSentinelPassword: p.text("REDIS_SENTINEL_PASSWORD"),
		RedisMasterPassword:   p.text("REDIS_SENTINEL_MASTER_PASSWORD"),
		RedisPrefix:           p.prefix("REDIS_KEY_PREFIX"),
		InstanceID:            p.instance("INSTANCE_ID"),
		Port:                  p.integer("PORT", 0, 65535),
		DrainTimeout:          p.duration("DRAIN_TIMEOUT", 0, 10*time.Minute),
		ShutdownTimeout:       p.duration("SHUTDOWN_TIMEOUT", time.Second, 10*time.Minute),
		HitTimeout:            p.duration("HIT_TIMEOUT", 100*time.Millisecond, time.Minute),
		SettleTimeout:         p.duration("SETTLE_TIMEOUT", time.Second, 10*time.Minute),
		DBTimeout:             p.duration("DB_TIMEOUT", 100*time.Millisecond, time.Minute),
		DBMaxConns:            p.integer("DB_MAX_CONNS", 2, 1000),
		StartupTimeout:        p.duration("STARTUP_TIMEOUT", time.Second, time.Hour),
		BatchMax:              p.integer("BATCH_MAX", 1, 100000),
		BatchLinger:           p.duration("BATCH_LINGER", 0, 20*time.Millisecond),
		BatchLingerHits:       p.integer("BATCH_LINGER_HITS", 1, 100000),
		BatchWorkers:          p.integer("BATCH_WORKERS", 1, 16),
		CacheTimeout:          p.duration("CACHE_TIMEOUT", time.Millisecond, 10*time.Second),
		OpsAddr:               p.hostPort("OPS_ADDR"),
		OpsPprof:              p.boolean("OPS_PPROF"),
		LogLevel:              p.oneOf("LOG_LEVEL", "debug", "info", "warn", "error"),
	}
	p.redisMode(c)
	if s := strings.TrimSpace(getenv("PPROF_ADDR")); s != "" {
		p.errs = append(p.errs, fmt.Errorf("PPROF_ADDR=%q is no longer read: profiling is on the operations listener, set OPS_PPROF=true and reach it on OPS_ADDR", s))
	}
	if err := errors.Join(p.errs...); err != nil {
		return Config{}, fmt.Errorf("configuration: %w", err)
	}
	return c, nil
}

// Port reads only PORT, for the healthcheck subcommand, which must work with
// nothing else set.
func Port(getenv func(string) string) (int, error) {
	p := parser{getenv: getenv}
	port := p.integer("PORT", 0, 65535)
	return port, errors.Join(p.errs...)
}

type parser struct {
	getenv func(string) string
	errs   []error
}

// value returns the variable or its default, and the Var for messages.
func (p *parser) value(name string) (string, Var) {
	for _, v := range Vars() {
		if v.Name == name {
			s := strings.TrimSpace(p.getenv(name))
			if s == "" {
				s = v.Default
			}
			return s, v
		}
	}
	p.errs = append(p.errs, fmt.Errorf("%s: not a declared variable", name)) // a programming error every test catches
	return "", Var{Name: name}
}

func (p *parser) fail(v Var, shown string, why string) {
	if why != "" {
		why = " (" + why + ")"
	}
	p.errs = append(p.errs, fmt.Errorf("%s=%q is invalid%s: want %s", v.Name, shown, why, v.Allowed))
}

func (p *parser) integer(name string, lo, hi int) int {
	s, v := p.value(name)
	n, err := strconv.Atoi(s)
	if err != nil || n < lo || n > hi {
		p.fail(v, s, "")
		return 0
	}
	return n
}

func (p *parser) duration(name string, lo, hi time.Duration) time.Duration {
	s, v := p.value(name)
	d, err := time.ParseDuration(s)
	if err != nil || d < lo || d > hi {
		p.fail(v, s, "")
		return 0
	}
	return d
}

func (p *parser) oneOf(name string, allowed ...string) string {
	s, v := p.value(name)
	for _, a := range allowed {
		if strings.EqualFold(s, a) {
			return a
		}
	}
	p.fail(v, s, "")
	return ""
}

func (p *parser) prefix(name string) string {
	s, v := p.value(name)
	if s == "" || len(s) > 64 || strings.ContainsAny(s, " \t\r\n") {
		p.fail(v, s, "")
		return ""
	}
	return s
}

func (p *parser) hostPort(name string) string {
	s, v := p.value(name)
	if s == "" {
		return ""
	}
	host, port, err := net.SplitHostPort(s)
	if n, perr := strconv.Atoi(port); err != nil || perr != nil || n < 0 || n > 65535 || strings.ContainsAny(host, " /") {
		p.fail(v, s, "")
		return ""
	}
	return s
}

// hostPorts reads a comma-separated list of host:port; empty is no list.
func (p *parser) hostPorts(name string) []string {
	s, v := p.value(name)
	if s == "" {
		return nil
	}
	var out []string
	for _, a := range strings.Split(s, ",") {
		a = strings.TrimSpace(a)
		host, port, err := net.SplitHostPort(a)
		if n, perr := strconv.Atoi(port); err != nil || perr != nil || n < 1 || n > 65535 || host == "" || strings.ContainsAny(host, " /") {
			p.fail(v, s, fmt.Sprintf("%q is not host:port", a))
			return nil
		}
		out = append(out, a)
	}
	return out
}

// text reads a free-form value (a name or a password); it is never echoed.
func (p *parser) text(name string) string {
	s, v := p.value(name)
	if strings.ContainsAny(s, "\r\n") {
		p.errs = append(p.errs, fmt.Errorf("%s is invalid (contains a line break): want %s", v.Name, v.Allowed))
		return ""
	}
	return s
}

func (p *parser) boolean(name string) bool {
	s, v := p.value(name)
	b, err := strconv.ParseBool(s)
	if err != nil {
		p.fail(v, s, "")
		return false
	}
	return b
}

// redisMode checks that the Redis settings describe one way to reach Redis.
func (p *parser) redisMode(c Config) {
	sentinel := len(c.RedisSentinelAddrs) > 0
	switch {
	case sentinel && c.RedisURL != "":
		p.errs = append(p.errs, errors.New("REDIS_URL and REDIS_SENTINEL_ADDRS are both set: want one of them (one server, or the Sentinels that name the master)"))
	case sentinel && c.RedisSentinelMaster == "":
		p.errs = append(p.errs, errors.New("REDIS_SENTINEL_MASTER is required with REDIS_SENTINEL_ADDRS: want the master name the Sentinels monitor"))
	case !sentinel && (c.RedisSentinelMaster != "" || c.RedisSentinelPassword != "" || c.RedisMasterPassword != ""):
		p.errs = append(p.errs, errors.New("REDIS_SENTINEL_MASTER, REDIS_SENTINEL_PASSWORD and REDIS_SENTINEL_MASTER_PASSWORD are read only with REDIS_SENTINEL_ADDRS: set it, or put the password in REDIS_URL"))
	}
}

// CacheEnabled reports whether a Redis cache is configured.
func (c Config) CacheEnabled() bool { return c.RedisURL != "" || len(c.RedisSentinelAddrs) > 0 }

func (p *parser) instance(name string) string {
	s, v := p.value(name)
	if len(s) > 64 || strings.ContainsAny(s, "\r\n\t") {
		p.fail(v, s, "")
		return ""
	}
	return s
}

func (p *parser) databaseURL(name string) string {
	s, v := p.value(name)
	if s == "" {
		p.errs = append(p.errs, fmt.Errorf("%s is required: want %s", v.Name, v.Allowed))
		return ""
	}
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") || u.Host == "" {
		p.fail(v, redact(s), "")
		return ""
	}
	if _, err := pgconn.ParseConfig(s); err != nil {
		p.fail(v, redact(s), "")
		return ""
	}
	return s
}

func (p *parser) redisURL(name string) string {
	s, v := p.value(name)
	if s == "" {
		return ""
	}
	if why := checkRedisURL(s); why != "" {
		p.fail(v, redact(s), why)
		return ""
	}
	return s
}

// redisDB is the optional database number in a Redis URL's path.
var redisDB = regexp.MustCompile(`^(/[0-9]*)?$`)

// checkRedisURL says what is wrong with a Redis URL, by the rules of the
// client's dialer, so a bad one stops start-up instead of every cache call.
func checkRedisURL(s string) string {
	u, err := url.Parse(s)
	switch {
	case err != nil:
		return "not a URL"
	case u.Scheme != "redis" && u.Scheme != "rediss":
		return "scheme must be redis or rediss"
	case u.Opaque != "" || u.Host == "":
		return "no host"
	case !redisDB.MatchString(u.Path):
		return "path must be a database number"
	}
	return ""
}

// redact hides a password so an error message can show the rest of a URL.
func redact(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		if i := strings.LastIndex(s, "@"); i >= 0 {
			return "xxxxx" + s[i:]
		}
		return s
	}
	return u.Redacted()
}
