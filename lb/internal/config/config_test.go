package config

import (
	"log/slog"
	"net/netip"
	"strings"
	"testing"
	"time"
)

func env(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestDefaults(t *testing.T) {
	c, err := Load(env(map[string]string{"LB_BACKENDS": "app:8080"}))
	if err != nil {
		t.Fatal(err)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"Backends", strings.Join(c.Backends, ","), "app:8080"},
		{"Addr", c.Addr, ":8080"},
		{"AdminAddr", c.AdminAddr, "127.0.0.1:8081"},
		{"Algorithm", c.Algorithm, LeastConnections},
		{"HealthPath", c.HealthPath, "/healthz"},
		{"HealthInterval", c.HealthInterval, time.Second},
		{"HealthTimeout", c.HealthTimeout, 800 * time.Millisecond},
		{"HealthyThreshold", c.HealthyThreshold, 2},
		{"UnhealthyThreshold", c.UnhealthyThreshold, 2},
		{"Sticky", c.Sticky, StickyNone},
		{"StickyCookie", c.StickyCookie, "lb_sticky"},
		{"TrustedProxies", len(c.TrustedProxies), 0},
		{"BackendIdleTimeout", c.BackendIdleTimeout, 30 * time.Second},
		{"MaxAttempts", c.MaxAttempts, 3},
		{"RetryIdempotent", c.RetryIdempotent, true},
		{"AccessLog", c.AccessLog, true},
		{"ClientBodyTimeout", c.ClientBodyTimeout, time.Minute},
		{"ClientSendTimeout", c.ClientSendTimeout, time.Minute},
		{"TunnelIdleTimeout", c.TunnelIdleTimeout, 10 * time.Minute},
		{"MaxBodyBytes", c.MaxBodyBytes, int64(1 << 30)},
		{"MaxIdlePerBackend", c.MaxIdlePerBackend, 256},
		{"AdminHosts", strings.Join(c.AdminHosts, ","), "localhost"},
		{"LogLevel", c.LogLevel, slog.LevelInfo},
		{"SlowStart", c.SlowStart, time.Duration(0)},
		{"DebugHeaders", c.DebugHeaders, false},
	}
	for _, ch := range checks {
		if ch.got != ch.want {
			t.Errorf("%s = %v, want %v", ch.name, ch.got, ch.want)
		}
	}
}

func TestNewSettings(t *testing.T) {
	c, err := Load(env(map[string]string{
		"LB_BACKENDS":             "app:8080",
		"LB_CLIENT_BODY_TIMEOUT":  "2s",
		"LB_CLIENT_SEND_TIMEOUT":  "3s",
		"LB_TUNNEL_IDLE_TIMEOUT":  "1h",
		"LB_MAX_BODY_BYTES":       "0",
		"LB_MAX_IDLE_PER_BACKEND": "0",
		"LB_LOG_LEVEL":            "DEBUG",
		"LB_ADMIN_HOSTS":          "Admin.Example, lb",
		"LB_HEALTH_INTERVAL":      "10ms",
	}))
	if err != nil {
		t.Fatal(err)
	}
	if c.ClientBodyTimeout != 2*time.Second || c.ClientSendTimeout != 3*time.Second || c.TunnelIdleTimeout != time.Hour ||
		c.MaxBodyBytes != 0 || c.MaxIdlePerBackend != 0 || c.LogLevel != slog.LevelDebug || c.HealthInterval != 10*time.Millisecond {
		t.Errorf("parsed %+v", c)
	}
	if got := strings.Join(c.AdminHosts, ","); got != "admin.example,lb" {
		t.Errorf("AdminHosts = %s, want admin.example,lb", got)
	}
	c, err = Load(env(map[string]string{"LB_BACKENDS": "app:8080", "LB_ADMIN_HOSTS": "*"}))
	if err != nil || len(c.AdminHosts) != 1 || c.AdminHosts[0] != "*" {
		t.Errorf("LB_ADMIN_HOSTS=*: %v, %v", c.AdminHosts, err)
	}
}

func TestHealthTimeoutFollowsAShortInterval(t *testing.T) {
	for _, tc := range []struct {
		interval, timeout string
		want              time.Duration
	}{
		{"500ms", "", 500 * time.Millisecond}, // only the interval set: the default timeout shrinks to fit
		{"", "", 800 * time.Millisecond},
		{"10s", "", 800 * time.Millisecond},
		{"10s", "5s", 5 * time.Second},
	} {
		c, err := Load(env(map[string]string{"LB_BACKENDS": "app:8080", "LB_HEALTH_INTERVAL": tc.interval, "LB_HEALTH_TIMEOUT": tc.timeout}))
		if err != nil {
			t.Fatalf("interval %q timeout %q: %v", tc.interval, tc.timeout, err)
		}
		if c.HealthTimeout != tc.want {
			t.Errorf("interval %q timeout %q: HealthTimeout = %s, want %s", tc.interval, tc.timeout, c.HealthTimeout, tc.want)
		}
	}
}

func TestValues(t *testing.T) {
	c, err := Load(env(map[string]string{
		"LB_BACKENDS":          " 10.0.0.2:8080, 10.0.0.3:8080,10.0.0.2:8080 ,[fd00::1]:80",
		"LB_ALGORITHM":         "round_robin",
		"LB_HEALTH_INTERVAL":   "500ms",
		"LB_HEALTH_TIMEOUT":    "500ms",
		"LB_STICKY_SESSIONS":   "cookies",
		"LB_STICKY_SECRET":     "0123456789abcdef",
		"LB_TRUSTED_PROXIES":   "10.0.0.0/8, 192.168.1.7",
		"LB_ACCESS_LOG":        "false",
		"LB_STICKY_COOKIE_TTL": "30m",
		"LB_RETRY_IDEMPOTENT":  "false",
		"LB_SLOW_START":        "5s",
		"LB_DEBUG_HEADERS":     "true",
	}))
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(c.Backends, ","); got != "10.0.0.2:8080,10.0.0.3:8080,[fd00::1]:80" {
		t.Errorf("Backends = %s (duplicates should go, spaces trimmed)", got)
	}
	want := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("192.168.1.7/32")}
	if len(c.TrustedProxies) != 2 || c.TrustedProxies[0] != want[0] || c.TrustedProxies[1] != want[1] {
		t.Errorf("TrustedProxies = %v, want %v", c.TrustedProxies, want)
	}
	if c.Algorithm != RoundRobin || c.HealthInterval != 500*time.Millisecond || c.Sticky != StickyCookies ||
		string(c.StickySecret) != "0123456789abcdef" || c.AccessLog || c.StickyTTL != 30*time.Minute || c.RetryIdempotent ||
		c.SlowStart != 5*time.Second || !c.DebugHeaders {
		t.Errorf("parsed %+v", c)
	}
}

func TestBadValuesStopStartUp(t *testing.T) {
	cases := []struct{ name, value, allowed string }{
		{"LB_BACKENDS", "", "required"},
		{"LB_BACKENDS", "app", "host:port"},
		{"LB_BACKENDS", "app:0", "host:port"},
		{"LB_BACKENDS", "app:http", "host:port"},
		{"LB_BACKENDS", "bad host!:80", "host:port"},
		{"LB_ALGORITHM", "fastest", "round_robin, least_connections"},
		{"LB_ADDR", "8080", "host:port"},
		{"LB_ADMIN_ADDR", "localhost", "host:port"},
		{"LB_HEALTH_PATH", "healthz", "starting with /"},
		{"LB_HEALTH_INTERVAL", "10", "duration"},
		{"LB_HEALTH_INTERVAL", "-1s", "positive"},
		{"LB_HEALTH_TIMEOUT", "5s", "at most LB_HEALTH_INTERVAL"},
		{"LB_HEALTHY_THRESHOLD", "0", "from 1 to 100"},
		{"LB_UNHEALTHY_THRESHOLD", "three", "integer"},
		{"LB_RESOLVE_INTERVAL", "soon", "duration"},
		{"LB_STICKY_SESSIONS", "ip_hash", "none, cookies"},
		{"LB_STICKY_COOKIE_NAME", "a b", "cookie name"},
		{"LB_STICKY_COOKIE_TTL", "1 hour", "duration"},
		{"LB_STICKY_SECRET", "short", "16 bytes"},
		{"LB_TRUSTED_PROXIES", "10.0.0.0/33", "CIDR"},
		{"LB_TRUSTED_PROXIES", "everyone", "CIDR"},
		{"LB_ACCESS_LOG", "sometimes", "true or false"},
		{"LB_MAX_ATTEMPTS", "0", "from 1 to 10"},
		{"LB_RETRY_IDEMPOTENT", "only-gets", "true or false"},
		{"LB_MAX_HEADER_BYTES", "10", "integer"},
		{"LB_DIAL_TIMEOUT", "0s", "positive"},
		{"LB_BACKEND_IDLE_TIMEOUT", "x", "duration"},
		{"LB_SHUTDOWN_TIMEOUT", "x", "duration"},
		{"LB_PPROF", "yes please", "true or false"},
		{"LB_BACKENDS", "127.0.0.1:+18091", "port 1-65535"},
		{"LB_BACKENDS", "127.0.0.1: 80", "port 1-65535"},
		{"LB_ADDR", ":+80", "port 0-65535"},
		{"LB_HEALTH_INTERVAL", "1ns", "at least 10ms"},
		{"LB_HEALTH_INTERVAL", "9ms", "at least 10ms"},
		{"LB_RESOLVE_INTERVAL", "1us", "at least 10ms"},
		{"LB_HEALTH_TIMEOUT", "1ns", "at least 1ms"},
		{"LB_CLIENT_BODY_TIMEOUT", "1ns", "at least 1ms"},
		{"LB_CLIENT_SEND_TIMEOUT", "never", "duration"},
		{"LB_TUNNEL_IDLE_TIMEOUT", "0", "at least 1ms"},
		{"LB_STICKY_COOKIE_TTL", "10ms", "at least 1s"},
		{"LB_MAX_BODY_BYTES", "-1", "integer from 0"},
		{"LB_MAX_BODY_BYTES", "1MB", "integer from 0"},
		{"LB_MAX_IDLE_PER_BACKEND", "-1", "integer from 0"},
		{"LB_LOG_LEVEL", "verbose", "debug, info, warn, error"},
		{"LB_ADMIN_HOSTS", "admin.example:8081", "host names without ports"},
		{"LB_ADMIN_HOSTS", "a b", "host names"},
		{"LB_SLOW_START", "-1s", "0 (off) or a Go duration up to 10m0s"},
		{"LB_SLOW_START", "1h", "up to 10m0s"},
		{"LB_SLOW_START", "soon", "duration"},
		{"LB_DEBUG_HEADERS", "on", "true or false"},
	}
	for _, tc := range cases {
		t.Run(tc.name+"="+tc.value, func(t *testing.T) {
			m := map[string]string{"LB_BACKENDS": "app:8080", tc.name: tc.value}
			if tc.name == "LB_BACKENDS" && tc.value == "" {
				delete(m, "LB_BACKENDS")
			}
			_, err := Load(env(m))
			if err == nil {
				t.Fatalf("Load accepted %s=%q", tc.name, tc.value)
			}
			msg := err.Error()
			if !strings.Contains(msg, tc.name+"=") || !strings.Contains(msg, tc.allowed) {
				t.Errorf("error %q does not name %s and say %q", msg, tc.name, tc.allowed)
			}
			if tc.name != "LB_STICKY_SECRET" && !strings.Contains(msg, tc.value) {
				t.Errorf("error %q does not quote the value %q", msg, tc.value)
			}
			if tc.name == "LB_STICKY_SECRET" && strings.Contains(msg, tc.value) {
				t.Errorf("error %q leaks the secret", msg)
			}
		})
	}
}
