package config

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

func env(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestLoadDefaults(t *testing.T) {
	c, err := Load(env(map[string]string{"DATABASE_URL": "postgres://u:p@db:5432/hits"}))
	if err != nil {
		t.Fatalf("Load = %v, want nil", err)
	}
	want := Config{
		DatabaseURL: "postgres://u:p@db:5432/hits", RedisPrefix: "hits:", Port: 8080,
		DrainTimeout: 5 * time.Second, ShutdownTimeout: 10 * time.Second, HitTimeout: 5 * time.Second,
		SettleTimeout: 10 * time.Second,
		DBTimeout:     3 * time.Second, DBMaxConns: 8, StartupTimeout: time.Minute, BatchMax: 1000, BatchWorkers: 1,
		BatchLinger: 10 * time.Millisecond, BatchLingerHits: 32,
		CacheTimeout: 50 * time.Millisecond, OpsAddr: ":9090", LogLevel: "info",
	}
	if !reflect.DeepEqual(c, want) {
		t.Errorf("Load = %+v\nwant %+v", c, want)
	}
}

func TestLoadValues(t *testing.T) {
	c, err := Load(env(map[string]string{
		"DATABASE_URL": "postgresql://db/hits", "REDIS_URL": "redis://cache:6379/1", "INSTANCE_ID": "bar-1",
		"PORT": "0", "DRAIN_TIMEOUT": "0s", "BATCH_MAX": "1", "LOG_LEVEL": "DEBUG",
	}))
	if err != nil {
		t.Fatalf("Load = %v, want nil", err)
	}
	if c.RedisURL != "redis://cache:6379/1" || c.InstanceID != "bar-1" || c.Port != 0 || c.DrainTimeout != 0 || c.BatchMax != 1 || c.LogLevel != "debug" {
		t.Errorf("Load = %+v", c)
	}
}

func TestLoadSentinel(t *testing.T) {
	c, err := Load(env(map[string]string{
		"DATABASE_URL": "postgres://db/hits", "REDIS_SENTINEL_ADDRS": "s1:26379, 10.0.0.2:26380,[::1]:26381",
		"REDIS_SENTINEL_MASTER": "mymaster", "REDIS_SENTINEL_PASSWORD": "sp", "REDIS_SENTINEL_MASTER_PASSWORD": "rp",
		"OPS_ADDR": "127.0.0.1:0", "OPS_PPROF": "true",
	}))
	if err != nil {
		t.Fatalf("Load = %v, want nil", err)
	}
	want := []string{"s1:26379", "10.0.0.2:26380", "[::1]:26381"}
	if !reflect.DeepEqual(c.RedisSentinelAddrs, want) || c.RedisSentinelMaster != "mymaster" ||
		c.RedisSentinelPassword != "sp" || c.RedisMasterPassword != "rp" || !c.CacheEnabled() {
		t.Errorf("Load = %+v; want sentinels %q, master mymaster, passwords sp and rp", c, want)
	}
	if c.OpsAddr != "127.0.0.1:0" || !c.OpsPprof {
		t.Errorf("ops = %q, pprof %v; want 127.0.0.1:0 and true", c.OpsAddr, c.OpsPprof)
	}
}

func TestLoadRejectsBadValues(t *testing.T) {
	const db = "postgres://u:secret@db/hits"
	tests := []struct {
		name string
		env  map[string]string
		want []string // each must appear in the error
	}{
		{"missing database", map[string]string{}, []string{"DATABASE_URL is required"}},
		{"database not a url", map[string]string{"DATABASE_URL": "mysql://u:secret@db/x"}, []string{`DATABASE_URL="mysql://u:xxxxx@db/x"`, "want a PostgreSQL URL"}},
		{"database no host", map[string]string{"DATABASE_URL": "postgres:///x"}, []string{"DATABASE_URL="}},
		{"redis bad scheme", map[string]string{"DATABASE_URL": db, "REDIS_URL": "http://cache"}, []string{`REDIS_URL="http://cache"`, "want a Redis URL"}},
		{"redis db not a number", map[string]string{"DATABASE_URL": db, "REDIS_URL": "redis://cache:6379/zero"}, []string{`REDIS_URL="redis://cache:6379/zero"`, "database number"}},
		{"redis no host", map[string]string{"DATABASE_URL": db, "REDIS_URL": "redis:///0"}, []string{`REDIS_URL="redis:///0"`, "no host"}},
		{"redis password hidden", map[string]string{"DATABASE_URL": db, "REDIS_URL": "ftp://:s3cret@cache"}, []string{"xxxxx@cache", "scheme must be redis or rediss"}},
		{"port text", map[string]string{"DATABASE_URL": db, "PORT": "eighty"}, []string{`PORT="eighty"`, "want an integer 0..65535"}},
		{"port too big", map[string]string{"DATABASE_URL": db, "PORT": "70000"}, []string{`PORT="70000"`}},
		{"drain no unit", map[string]string{"DATABASE_URL": db, "DRAIN_TIMEOUT": "5"}, []string{`DRAIN_TIMEOUT="5"`, "Go duration"}},
		{"negative shutdown", map[string]string{"DATABASE_URL": db, "SHUTDOWN_TIMEOUT": "-1s"}, []string{`SHUTDOWN_TIMEOUT="-1s"`}},
		{"batch zero", map[string]string{"DATABASE_URL": db, "BATCH_MAX": "0"}, []string{`BATCH_MAX="0"`, "1..100000"}},
		{"log level", map[string]string{"DATABASE_URL": db, "LOG_LEVEL": "loud"}, []string{`LOG_LEVEL="loud"`, "debug, info, warn or error"}},
		{"instance newline", map[string]string{"DATABASE_URL": db, "INSTANCE_ID": "a\nb"}, []string{"INSTANCE_ID="}},
		{"prefix space", map[string]string{"DATABASE_URL": db, "REDIS_KEY_PREFIX": "a b"}, []string{"REDIS_KEY_PREFIX="}},
		{"sentinel and url", map[string]string{"DATABASE_URL": db, "REDIS_URL": "redis://c", "REDIS_SENTINEL_ADDRS": "s:26379", "REDIS_SENTINEL_MASTER": "m"}, []string{"REDIS_URL and REDIS_SENTINEL_ADDRS are both set"}},
		{"sentinel without master", map[string]string{"DATABASE_URL": db, "REDIS_SENTINEL_ADDRS": "s:26379"}, []string{"REDIS_SENTINEL_MASTER is required"}},
		{"sentinel addr no port", map[string]string{"DATABASE_URL": db, "REDIS_SENTINEL_ADDRS": "s1:26379,s2", "REDIS_SENTINEL_MASTER": "m"}, []string{`REDIS_SENTINEL_ADDRS="s1:26379,s2"`, `"s2" is not host:port`}},
		{"sentinel password without sentinel", map[string]string{"DATABASE_URL": db, "REDIS_SENTINEL_MASTER_PASSWORD": "secret"}, []string{"read only with REDIS_SENTINEL_ADDRS"}},
		{"ops addr", map[string]string{"DATABASE_URL": db, "OPS_ADDR": "9090"}, []string{`OPS_ADDR="9090"`, "host:port or :port"}},
		{"ops pprof", map[string]string{"DATABASE_URL": db, "OPS_PPROF": "yes please"}, []string{`OPS_PPROF="yes please"`, "true or false"}},
		{"old pprof", map[string]string{"DATABASE_URL": db, "PPROF_ADDR": "127.0.0.1:6060"}, []string{"PPROF_ADDR", "OPS_PPROF=true"}},
		{"several at once", map[string]string{"PORT": "x", "HIT_TIMEOUT": "1h"}, []string{"DATABASE_URL is required", `PORT="x"`, `HIT_TIMEOUT="1h"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Load(env(tt.env))
			if err == nil {
				t.Fatalf("Load = nil, want an error containing %q", tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
			if strings.Contains(err.Error(), "secret") {
				t.Errorf("error %q shows a password", err)
			}
		})
	}
}

func TestEveryVarIsDocumented(t *testing.T) {
	for _, v := range Vars() {
		if v.Allowed == "" || v.Doc == "" {
			t.Errorf("%s: Allowed %q, Doc %q; want both", v.Name, v.Allowed, v.Doc)
		}
	}
}
