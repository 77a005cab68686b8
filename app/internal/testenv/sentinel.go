package testenv

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"hits/testkit"
)

// SentinelSet is a Redis master, one replica and three redis-sentinel
// processes watching them, all on free loopback ports: what a test needs to
// make a real failover happen.
type SentinelSet struct {
	MasterName string
	Master     *Redis
	Replica    *Redis
	sentinels  []*process
	addrs      []string
	dir        string
}

// StartSentinels starts a SentinelSet for t and stops it when t ends. The
// Sentinels declare the master down after 1 s without an answer (quorum 2
// of 3), so a killed master is replaced within a few seconds.
func StartSentinels(t testing.TB) *SentinelSet {
	t.Helper()
	s, err := startSentinels()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

func startSentinels() (*SentinelSet, error) {
	bin, err := exec.LookPath("redis-sentinel")
	if err != nil {
		return nil, fmt.Errorf("redis-sentinel not found (apt-get install redis-sentinel): %w", err)
	}
	dir, err := os.MkdirTemp("", "hits-sentinel-")
	if err != nil {
		return nil, err
	}
	s := &SentinelSet{MasterName: "hitsmaster", dir: dir}
	fail := func(err error) (*SentinelSet, error) {
		s.Close()
		return nil, err
	}
	if s.Master, err = startRedis(); err != nil {
		return fail(err)
	}
	host, port, _ := net.SplitHostPort(s.Master.Addr())
	if s.Replica, err = startRedis("--replicaof", host, port); err != nil {
		return fail(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := testkit.Poll(ctx, 50*time.Millisecond, func(ctx context.Context) error { return s.replicaInSync(ctx, s.Replica.Addr()) }); err != nil {
		return fail(fmt.Errorf("replica never in sync: %w", err))
	}
	for i := range 3 {
		sp, err := testkit.FreePort()
		if err != nil {
			return fail(err)
		}
		conf := filepath.Join(dir, "sentinel"+strconv.Itoa(i)+".conf")
		// Sentinel rewrites its file as it learns; it must be its own.
		text := fmt.Sprintf("port %d\nbind 127.0.0.1\ndir %s\n"+
			"sentinel monitor %s %s %s 2\n"+
			"sentinel down-after-milliseconds %[3]s 1000\n"+
			"sentinel failover-timeout %[3]s 10000\n"+
			"sentinel parallel-syncs %[3]s 1\n", sp, dir, s.MasterName, host, port)
		if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
			return fail(err)
		}
		p := &process{name: bin, args: []string{conf}, log: filepath.Join(dir, "sentinel"+strconv.Itoa(i)+".log")}
		if err := p.start(); err != nil {
			return fail(err)
		}
		s.sentinels = append(s.sentinels, p)
		s.addrs = append(s.addrs, net.JoinHostPort("127.0.0.1", strconv.Itoa(sp)))
	}
	// Ready when every Sentinel knows the replica and the two other
	// Sentinels: only then can they agree on a failover.
	for i, addr := range s.addrs {
		err := waitFor(s.sentinels[i], 30*time.Second, func(ctx context.Context) error {
			c := redis.NewSentinelClient(&redis.Options{Addr: addr, MaxRetries: -1, DisableIdentity: true})
			defer c.Close()
			replicas, err := c.Replicas(ctx, s.MasterName).Result()
			if err != nil {
				return err
			}
			peers, err := c.Sentinels(ctx, s.MasterName).Result()
			if err != nil {
				return err
			}
			if len(replicas) != 1 || len(peers) != 2 {
				return fmt.Errorf("sentinel %s knows %d replicas and %d other sentinels, want 1 and 2", addr, len(replicas), len(peers))
			}
			return nil
		})
		if err != nil {
			return fail(err)
		}
	}
	return s, nil
}

// Addrs are the Sentinels' host:port.
func (s *SentinelSet) Addrs() []string { return s.addrs }

// MasterAddr asks the first Sentinel that answers for the current master.
func (s *SentinelSet) MasterAddr(ctx context.Context) (string, error) {
	var last error
	for _, addr := range s.addrs {
		c := redis.NewSentinelClient(&redis.Options{Addr: addr, MaxRetries: -1, DisableIdentity: true})
		hp, err := c.GetMasterAddrByName(ctx, s.MasterName).Result()
		c.Close()
		if err == nil && len(hp) == 2 {
			return net.JoinHostPort(hp[0], hp[1]), nil
		}
		last = err
	}
	return "", fmt.Errorf("no sentinel named the master: %v", last)
}

// replicaInSync reports whether the server at addr is a replica whose link
// to its master is up.
func (s *SentinelSet) replicaInSync(ctx context.Context, addr string) error {
	info, err := Info(ctx, addr, "replication")
	if err != nil {
		return err
	}
	if !strings.Contains(info, "role:slave") || !strings.Contains(info, "master_link_status:up") {
		return fmt.Errorf("not a replica in sync yet")
	}
	return nil
}

// Close stops the Sentinels, then the servers, and removes their files.
func (s *SentinelSet) Close() {
	for _, p := range s.sentinels {
		p.stop(syscall.SIGTERM, 10*time.Second)
	}
	if s.Replica != nil {
		s.Replica.Close()
	}
	if s.Master != nil {
		s.Master.Close()
	}
	os.RemoveAll(s.dir)
}

// Info returns the INFO section of the Redis server at addr.
func Info(ctx context.Context, addr, section string) (string, error) {
	c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, DisableIdentity: true})
	defer c.Close()
	return c.Info(ctx, section).Result()
}
