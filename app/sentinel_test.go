package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"hits/app/internal/testenv"
)

// TestSentinelFailover: with the cache found through three real
// redis-sentinel processes, killing the master keeps every hit exact (and
// quick), and once a replica is promoted the app writes its cache there
// within seconds, without a restart.
func TestSentinelFailover(t *testing.T) {
	set := testenv.StartSentinels(t)
	env := baseEnv(t, pg.NewDatabase(t))
	env["REDIS_URL"] = ""
	env["REDIS_SENTINEL_ADDRS"] = strings.Join(set.Addrs(), ",")
	env["REDIS_SENTINEL_MASTER"] = set.MasterName
	env["INSTANCE_ID"] = "s"
	a := startApp(t, env)

	// keysOn reports whether the server at addr holds any of this app's keys.
	keysOn := func(addr string) func() bool {
		return func() bool {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, DisableIdentity: true})
			defer c.Close()
			keys, err := c.Keys(ctx, env["REDIS_KEY_PREFIX"]+"*").Result()
			return err == nil && len(keys) > 0
		}
	}
	h := &exactHitter{t: t, a: a}
	hitUntil := h.until
	hitUntil("master up", 10*time.Second, keysOn(set.Master.Addr()))
	if err := set.Master.Kill(); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	replica := set.Replica.Addr()
	hitUntil("failover", 60*time.Second, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		addr, err := set.MasterAddr(ctx)
		if err != nil || addr != replica {
			return false
		}
		info, err := testenv.Info(ctx, replica, "replication")
		return err == nil && strings.Contains(info, "role:master")
	})
	promoted := time.Now()
	t.Logf("replica promoted %s after the master was killed; %d hits so far, all exact", promoted.Sub(killed).Round(time.Millisecond), h.want)

	// The promoted replica holds what it replicated; clear this app's keys
	// so that a key seen next was written by the app after the failover.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c := redis.NewClient(&redis.Options{Addr: replica, MaxRetries: -1, DisableIdentity: true})
	defer c.Close()
	if keys, err := c.Keys(ctx, env["REDIS_KEY_PREFIX"]+"*").Result(); err != nil {
		t.Fatal(err)
	} else if len(keys) > 0 {
		if err := c.Del(ctx, keys...).Err(); err != nil {
			t.Fatal(err)
		}
	}
	hitUntil("cache on the new master", 15*time.Second, keysOn(replica))
	took := time.Since(promoted)
	t.Logf("app wrote to the new master %s after the promotion", took.Round(time.Millisecond))
	if took > 10*time.Second {
		t.Errorf("app took %s to use the new master, want a few seconds", took)
	}
	logs := a.logs.String()
	if n := strings.Count(logs, "redis unavailable"); n != 1 {
		t.Errorf("outage logged %d times, want once", n)
	}
	if !strings.Contains(logs, "redis is back") {
		t.Error("recovery not logged")
	}
}
