// Package testenv starts real PostgreSQL and Redis servers for tests and
// benchmarks, on free loopback ports, from the local server binaries. When
// DATABASE_URL or REDIS_URL is set, those servers are used instead (tests
// then get a fresh database and a fresh key prefix each). Servers it starts
// can be stopped and started again on the same port and data directory, so
// tests can take a dependency away and bring it back.
package testenv

import (
	"context"
	"errors"
	"fmt"
	"hits/testkit"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// process is a server child process we can stop and start again: each
// start is a new testkit.Process with the same command line and log.
type process struct {
	name string
	args []string
	cred *syscall.Credential
	log  string // file receiving the server's output

	mu  sync.Mutex // guards run
	run *testkit.Process
}

func (p *process) start() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.run != nil {
		return fmt.Errorf("%s already running", p.name)
	}
	cmd := exec.Command(p.name, p.args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: p.cred, Setpgid: true}
	run, err := testkit.Start(cmd, p.log)
	if err != nil {
		return err
	}
	p.run = run
	return nil
}

// stop sends sig and waits for the process to exit (SIGKILL after timeout).
func (p *process) stop(sig syscall.Signal, timeout time.Duration) error {
	p.mu.Lock()
	run := p.run
	p.run = nil
	p.mu.Unlock()
	if run == nil {
		return nil
	}
	return run.Stop(sig, timeout)
}

// pid is the running process's ID, 0 when stopped.
func (p *process) pid() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.run == nil {
		return 0
	}
	return p.run.PID()
}

// exitedChan is closed when the running process exits; nil when stopped.
func (p *process) exitedChan() <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.run == nil {
		return nil
	}
	return p.run.Exited()
}

// waitFor polls ready every 50ms (each call bounded by 1s) until it
// succeeds, the process exits or timeout passes.
func waitFor(p *process, timeout time.Duration, ready func(ctx context.Context) error) error {
	ctx, exited := context.WithCancelCause(context.Background())
	defer exited(nil)
	go func() {
		select {
		case <-p.exitedChan():
			exited(errExited)
		case <-ctx.Done():
		}
	}()
	tctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	err := testkit.Poll(tctx, 50*time.Millisecond, func(ctx context.Context) error {
		cctx, ccancel := context.WithTimeout(ctx, time.Second)
		defer ccancel()
		return ready(cctx)
	})
	switch {
	case err == nil:
		return nil
	case context.Cause(ctx) == errExited:
		out, _ := os.ReadFile(p.log)
		return fmt.Errorf("%s exited while starting: %s", p.name, tail(out, 800))
	default:
		return fmt.Errorf("%s not ready after %s: %w", p.name, timeout, err)
	}
}

var errExited = errors.New("process exited")

func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

// postgresBin finds a PostgreSQL binary: the newest /usr/lib/postgresql/*/bin, else PATH.
func postgresBin(name string) (string, error) {
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return version(dirs[i]) > version(dirs[j]) })
	for _, d := range dirs {
		if p := filepath.Join(d, name); fileExists(p) {
			return p, nil
		}
	}
	p, err := exec.LookPath(name)
	if err != nil {
		return "", fmt.Errorf("%s not found in /usr/lib/postgresql/*/bin or PATH (apt-get install postgresql): %w", name, err)
	}
	return p, nil
}

func version(dir string) int {
	v, _ := strconv.Atoi(filepath.Base(filepath.Dir(dir)))
	return v
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// serverUser returns credentials for running PostgreSQL: it refuses to run
// as root, so as root we run it as the "postgres" user.
func serverUser() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, errors.New("running as root needs a \"postgres\" user to run PostgreSQL (apt-get install postgresql creates it)")
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}
