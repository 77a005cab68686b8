package testenv

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"hits/testkit"
)

// Redis is a Redis server for tests: one we started (Kill and Start work) or
// an external one from REDIS_URL.
type Redis struct {
	url  string
	addr string
	dir  string
	proc *process
}

// StartRedis uses REDIS_URL when set, else starts a server.
func StartRedis() (*Redis, error) {
	if u := os.Getenv("REDIS_URL"); u != "" {
		return &Redis{url: u}, nil
	}
	return StartOwnRedis()
}

// StartOwnRedis always starts a server of our own, with no persistence.
func StartOwnRedis() (*Redis, error) { return startRedis() }

// startRedis starts a server of our own with extra redis-server arguments.
func startRedis(extra ...string) (*Redis, error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, fmt.Errorf("redis-server not found (apt-get install redis-server): %w", err)
	}
	dir, err := os.MkdirTemp("", "hits-redis-")
	if err != nil {
		return nil, err
	}
	port, err := testkit.FreePort()
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	r := &Redis{dir: dir, addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port))}
	r.url = "redis://" + r.addr + "/0"
	r.proc = &process{name: bin, log: filepath.Join(dir, "redis.log"), args: []string{
		"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
		"--dir", dir, "--daemonize", "no"}}
	r.proc.args = append(r.proc.args, extra...)
	if err := r.Start(); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	return r, nil
}

// URL is the server's redis:// URL.
func (r *Redis) URL() string { return r.url }

// PID is the server's process ID (0 for an external server or when
// stopped), for measuring its CPU use.
func (r *Redis) PID() int {
	if r.proc == nil {
		return 0
	}
	return r.proc.pid()
}

// Addr is the server's host:port ("" for an external server).
func (r *Redis) Addr() string { return r.addr }

// Start starts a stopped server again on the same port.
func (r *Redis) Start() error {
	if r.proc == nil {
		return fmt.Errorf("external Redis (REDIS_URL) cannot be started")
	}
	if err := r.proc.start(); err != nil {
		return err
	}
	return waitFor(r.proc, 20*time.Second, func(ctx context.Context) error {
		return ping(ctx, r.addr)
	})
}

// Kill kills the server abruptly, as a crash would.
func (r *Redis) Kill() error {
	if r.proc == nil {
		return fmt.Errorf("external Redis (REDIS_URL) cannot be killed")
	}
	return r.proc.stop(syscall.SIGKILL, 10*time.Second)
}

// Close stops the server and removes its files.
func (r *Redis) Close() {
	if r.proc != nil {
		r.proc.stop(syscall.SIGTERM, 10*time.Second)
		os.RemoveAll(r.dir)
	}
}

// OwnRedis starts a server only this test uses (so it may kill it).
func OwnRedis(t testing.TB) *Redis {
	t.Helper()
	r, err := StartOwnRedis()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Close)
	return r
}

// ping asks the server at addr for PONG on a fresh connection.
func ping(ctx context.Context, addr string) error {
	c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, DisableIdentity: true})
	defer c.Close()
	if pong, err := c.Ping(ctx).Result(); err != nil || pong != "PONG" {
		return fmt.Errorf("redis answered %q: %v", pong, err)
	}
	return nil
}
