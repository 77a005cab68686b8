package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"hits/app/internal/testenv"
	"hits/testkit"
	"hits/testkit/procstat"
)

// native runs lb and the replicas as processes of this machine, on one
// PostgreSQL and one Redis of their own (loopback, free ports).
type native struct {
	o      options
	budget bool
	name   string
	slug   string // name, safe in file names, cgroup names and instance names
	stderr io.Writer
	lbEnv  []string // lb.KEY=VALUE settings of the mode
	pg     *testenv.Postgres
	rds    *testenv.Redis
	dbURL  string
	pool   *pgxpool.Pool
	runs   int

	// this run's processes and quotas
	replicas []*proc
	lb       *proc
	quotas   []*cpuQuota
}

func newNative(ctx context.Context, o options, name string, budget bool, stderr io.Writer) (*native, error) {
	s := &native{o: o, budget: budget, name: name, slug: slug(name), stderr: stderr}
	if budget {
		// Fail now, not after the other modes ran, if quotas cannot be made.
		q, err := newCPUQuota(fmt.Sprintf("hits-scalebench-%d-check", os.Getpid()), o.budget)
		if err != nil {
			return nil, err
		}
		if err := q.remove(); err != nil {
			return nil, err
		}
	}
	// Settings written pg.NAME=VALUE in the mode are PostgreSQL's, and
	// lb.KEY=VALUE lb's environment.
	settings := []string{"shared_buffers=256MB"}
	var appEnv []string
	for _, kv := range o.appEnv {
		if v, ok := strings.CutPrefix(kv, "pg."); ok {
			settings = append(settings, v)
		} else if v, ok := strings.CutPrefix(kv, "lb."); ok {
			s.lbEnv = append(s.lbEnv, v)
		} else if v, ok := strings.CutPrefix(kv, "bin="); ok {
			s.o.app = v // another build of the app, to compare it with this one
		} else {
			appEnv = append(appEnv, kv)
		}
	}
	s.o.appEnv = appEnv
	for _, b := range []string{s.o.app, s.o.lb} {
		if _, err := os.Stat(b); err != nil {
			return nil, fmt.Errorf("binary: %w (make build)", err)
		}
	}
	var err error
	if s.pg, err = testenv.StartOwnPostgres(testenv.PostgresOptions{Durable: true, Settings: settings}); err != nil {
		return nil, err
	}
	if s.rds, err = testenv.StartOwnRedis(); err != nil {
		s.close()
		return nil, err
	}
	if s.dbURL, err = s.pg.CreateDatabase(ctx); err != nil {
		s.close()
		return nil, err
	}
	if s.pool, err = pgxpool.New(ctx, s.dbURL); err != nil {
		s.close()
		return nil, err
	}
	return s, nil
}

func (s *native) start(ctx context.Context, n int) (string, error) {
	s.runs++
	var ports testkit.Ports // every port of a run distinct
	// launch starts replica i on fresh free ports, in its quota if any.
	launch := func(i int, q *cpuQuota) (*proc, string, error) {
		port, err := ports.Free()
		if err != nil {
			return nil, "", err
		}
		// Each replica its own operations port: the default :9090 would
		// make every replica after the first fail to bind.
		ops, err := ports.Free()
		if err != nil {
			return nil, "", err
		}
		env := []string{
			"OPS_ADDR=127.0.0.1:" + strconv.Itoa(ops),
			"DATABASE_URL=" + s.dbURL, "REDIS_URL=" + s.rds.URL(), "REDIS_KEY_PREFIX=" + s.slug + ":",
			"INSTANCE_ID=" + fmt.Sprintf("%s-%d", s.slug, i+1), "PORT=" + strconv.Itoa(port),
			"DRAIN_TIMEOUT=0s", "LOG_LEVEL=warn",
		}
		p, err := startProc(s.o.app, append(env, s.o.appEnv...), filepath.Join(s.o.work, fmt.Sprintf("%s-run%d-app%d.log", s.slug, s.runs, i+1)), q)
		return p, "127.0.0.1:" + strconv.Itoa(port), err
	}
	var backends []string
	var quotas []*cpuQuota
	for i := range n {
		var q *cpuQuota
		if s.budget {
			var err error
			if q, err = newCPUQuota(fmt.Sprintf("hits-scalebench-%d-%s-%d", os.Getpid(), s.slug, i+1), s.o.budget); err != nil {
				return "", err
			}
			s.quotas = append(s.quotas, q)
		}
		quotas = append(quotas, q)
		p, addr, err := launch(i, q)
		if err != nil {
			return "", err
		}
		s.replicas = append(s.replicas, p)
		backends = append(backends, addr)
	}
	for i := range backends {
		// A free port can be taken by someone else between FreePort and
		// the replica's bind (the machine is shared): start that one again.
		for try := 1; ; try++ {
			err := waitOK(ctx, "http://"+backends[i]+"/healthz", s.replicas[i], time.Minute)
			if err == nil {
				break
			}
			if try == 3 || !strings.Contains(mustRead(s.replicas[i].log), "address already in use") {
				return "", err
			}
			_ = s.replicas[i].stop() // it has exited: its bind failed
			p, addr, err := launch(i, quotas[i])
			if err != nil {
				return "", err
			}
			s.replicas[i], backends[i] = p, addr
		}
	}
	var lbPort int
	for try := 1; ; try++ {
		var adminPort int
		var err error
		if lbPort, err = ports.Free(); err != nil {
			return "", err
		}
		if adminPort, err = ports.Free(); err != nil {
			return "", err
		}
		// The compose file's settings, so both modes balance alike.
		env := []string{
			"LB_ADDR=127.0.0.1:" + strconv.Itoa(lbPort), "LB_ADMIN_ADDR=127.0.0.1:" + strconv.Itoa(adminPort),
			"LB_BACKENDS=" + strings.Join(backends, ","), "LB_HEALTH_PATH=/readyz", "LB_HEALTH_INTERVAL=1s",
			"LB_HEALTH_TIMEOUT=800ms", "LB_HEALTHY_THRESHOLD=1", "LB_UNHEALTHY_THRESHOLD=2",
			"LB_RETRY_IDEMPOTENT=false", "LB_RESOLVE_INTERVAL=1s",
		}
		env = append(env, s.lbEnv...)
		if s.lb, err = startProc(s.o.lb, env, filepath.Join(s.o.work, fmt.Sprintf("%s-run%d-lb.log", s.slug, s.runs)), nil); err != nil {
			return "", err
		}
		err = waitBackends(ctx, "http://127.0.0.1:"+strconv.Itoa(adminPort)+"/status", n, s.lb, time.Minute)
		if err == nil {
			break
		}
		if try == 3 || !strings.Contains(mustRead(s.lb.log), "address already in use") {
			return "", err
		}
		_ = s.lb.stop() // it has exited: a port was taken meanwhile
	}
	return "http://127.0.0.1:" + strconv.Itoa(lbPort) + "/", nil
}

func (s *native) cpu() cpuSample {
	var c cpuSample
	for _, p := range s.replicas {
		c.replicas += procstat.CPU(p.PID())
	}
	if s.lb != nil {
		c.lb = procstat.CPU(s.lb.PID())
	}
	c.postgres = procstat.WithChildren(s.pg.PID())
	c.redis = procstat.CPU(s.rds.PID())
	return c
}

func (s *native) batches(ctx context.Context) (batchSample, bool) {
	var urls []string
	for _, p := range s.replicas {
		urls = append(urls, "http://127.0.0.1:"+p.ops+"/metrics")
	}
	return scrapeBatches(ctx, urls)
}

func (s *native) stored(ctx context.Context) (int64, error) {
	return storedHits(ctx, s.pool)
}

func storedHits(ctx context.Context, pool *pgxpool.Pool) (int64, error) {
	var n int64
	err := pool.QueryRow(ctx, `SELECT COALESCE(sum(hits), 0)::bigint FROM instance_hits`).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("stored hits: %w", err)
	}
	return n, nil
}

func (s *native) stopRun() error {
	var errs []error
	if len(s.replicas) > 0 {
		saveMetrics("http://127.0.0.1:"+s.replicas[0].ops+"/metrics", filepath.Join(s.o.work, fmt.Sprintf("%s-run%d-app1.metrics", s.slug, s.runs)))
	}
	if s.lb != nil {
		errs = append(errs, s.lb.stop())
		s.lb = nil
	}
	for _, p := range s.replicas {
		errs = append(errs, p.stop())
	}
	s.replicas = nil
	for _, q := range s.quotas {
		errs = append(errs, q.remove())
	}
	s.quotas = nil
	return errors.Join(errs...)
}

func (s *native) close() error {
	err := s.stopRun()
	if s.pool != nil {
		s.pool.Close()
	}
	if s.rds != nil {
		s.rds.Close()
	}
	if s.pg != nil {
		s.pg.Close()
	}
	return err
}

// slug makes a mode name ("budget+GOMAXPROCS=1") safe as a file, cgroup or
// instance name.
func slug(name string) string {
	return strings.NewReplacer("+", "_", "=", "-", "/", "_").Replace(name)
}

// proc is a process this benchmark started; stop ends it by its PID.
type proc struct {
	*testkit.Process
	port string
	ops  string // OPS_ADDR's port: /metrics
	log  string // its stdout and stderr
}

// startProc starts bin; with a quota, inside it from its first instruction
// (a shell joins the cgroup, then execs bin under the same PID), so the
// program sees its limit when it starts.
func startProc(bin string, env []string, logPath string, q *cpuQuota) (*proc, error) {
	cmd := exec.Command(bin)
	if q != nil {
		cmd = exec.Command("/bin/sh", "-c", `echo $$ > "$0" && exec "$1"`, q.procsFile(), bin)
	}
	cmd.Env = append(os.Environ(), env...)
	os.Remove(logPath) // a fresh log per run
	run, err := testkit.Start(cmd, logPath)
	if err != nil {
		return nil, err
	}
	p := &proc{Process: run, log: logPath}
	for _, e := range env {
		if v, ok := strings.CutPrefix(e, "PORT="); ok {
			p.port = v
		}
		if v, ok := strings.CutPrefix(e, "OPS_ADDR=127.0.0.1:"); ok {
			p.ops = v
		}
	}
	return p, nil
}

func (p *proc) url(path string) string { return "http://127.0.0.1:" + p.port + path }

func (p *proc) stop() error {
	if err := p.Stop(syscall.SIGTERM, 30*time.Second); err != nil {
		return err
	}
	if err := p.Err(); err != nil {
		return fmt.Errorf("exited: %w", err)
	}
	return nil
}

// poll calls ready every 50 ms until it is true, p exits, or timeout.
func poll(ctx context.Context, what string, p *proc, timeout time.Duration, ready func(ctx context.Context) (bool, error)) error {
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	var last error
	for {
		rctx, cancel := context.WithTimeout(ctx, time.Second)
		ok, err := ready(rctx)
		cancel()
		if ok {
			return nil
		}
		last = err
		var exited <-chan struct{}
		if p != nil {
			exited = p.Exited()
		}
		select {
		case <-exited:
			return fmt.Errorf("%s: exited while waiting: %v", what, p.Err())
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: not ready after %s (last: %v)", what, timeout, last)
		}
	}
}

func waitOK(ctx context.Context, url string, p *proc, timeout time.Duration) error {
	return poll(ctx, url, p, timeout, func(ctx context.Context) (bool, error) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return false, err
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, fmt.Errorf("status %s", resp.Status)
	})
}

// waitBackends waits until lb's /status reports exactly n backends, all healthy.
func waitBackends(ctx context.Context, statusURL string, n int, p *proc, timeout time.Duration) error {
	return poll(ctx, statusURL, p, timeout, func(ctx context.Context) (bool, error) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, statusURL, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return false, err
		}
		defer resp.Body.Close()
		var st struct {
			Backends []struct {
				Address string   `json:"address"`
				Healthy bool     `json:"healthy"`
				Removed bool     `json:"removed"`
				Slow    *float64 `json:"slow_start"`
			} `json:"backends"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
			return false, err
		}
		healthy := 0
		for _, b := range st.Backends {
			if b.Healthy && !b.Removed && b.Slow == nil {
				healthy++
			}
		}
		return healthy == n && len(st.Backends) == n, fmt.Errorf("%d of %d backends healthy", healthy, len(st.Backends))
	})
}

// scrapeBatches sums hits_batch_size's sum and count over the replicas'
// /metrics.
func scrapeBatches(ctx context.Context, urls []string) (batchSample, bool) {
	var b batchSample
	for _, u := range urls {
		body, err := fetch(ctx, u)
		if err != nil {
			return batchSample{}, false
		}
		hits, okH := metricValue(body, "hits_batch_size_sum")
		n, okN := metricValue(body, "hits_batch_size_count")
		if !okH || !okN {
			return batchSample{}, false
		}
		b.hits += hits
		b.batches += n
	}
	return b, len(urls) > 0
}

// metricValue finds an unlabelled sample in Prometheus' text format.
func metricValue(body []byte, name string) (float64, bool) {
	for line := range strings.Lines(string(body)) {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			return f, err == nil
		}
	}
	return 0, false
}

func fetch(ctx context.Context, url string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: %s", url, resp.Status)
	}
	return io.ReadAll(resp.Body)
}

// saveMetrics keeps a replica's /metrics after a run (batch sizes explain a
// run); best effort.
func saveMetrics(url, path string) {
	if b, err := fetch(context.Background(), url); err == nil {
		os.WriteFile(path, b, 0o644)
	}
}
