package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"hits/app/internal/loadgen"
	"hits/app/internal/postgres"
	"hits/app/internal/testenv"
)

type options struct {
	app         string
	sizes       []int64
	concurrency int
	duration    time.Duration
	warmup      time.Duration
	timeout     time.Duration
	poolSize    int
	rounds      int
	logDir      string
	appEnv      []string
	pgPID       int // postmaster, for CPU accounting
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) > 1 && args[1] == "serve-original" {
		return serveOriginal(ctx, args[2:])
	}
	fs := flag.NewFlagSet("hitbench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o options
	var sizes string
	fs.StringVar(&o.app, "app", "bin/app", "app binary to benchmark")
	fs.StringVar(&sizes, "sizes", "0,1000000,10000000", "stored hits to seed before each run, comma-separated")
	fs.IntVar(&o.concurrency, "c", 64, "concurrent keep-alive clients")
	fs.DurationVar(&o.duration, "d", 10*time.Second, "measured duration of each run")
	fs.DurationVar(&o.warmup, "warmup", time.Second, "unmeasured load before each run")
	fs.DurationVar(&o.timeout, "timeout", 10*time.Second, "deadline of each request")
	fs.IntVar(&o.poolSize, "pool", 8, "PostgreSQL pool size of both servers")
	fs.IntVar(&o.rounds, "rounds", 3, "runs of each server per size, interleaved; the median is reported (other load on the machine skews single runs)")
	fs.StringVar(&o.logDir, "logs", os.TempDir(), "directory for the servers' logs")
	fs.Func("app-env", "extra KEY=VALUE for the app, repeatable (e.g. PPROF_ADDR=127.0.0.1:6060)", func(v string) error {
		if k, _, ok := strings.Cut(v, "="); !ok || k == "" {
			return fmt.Errorf("want KEY=VALUE, got %q", v)
		}
		o.appEnv = append(o.appEnv, v)
		return nil
	})
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if o.rounds < 1 || o.rounds > 20 {
		return fmt.Errorf("-rounds: %d is not 1..20", o.rounds)
	}
	for _, s := range strings.Split(sizes, ",") {
		n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
		if err != nil || n < 0 || n > 100_000_000 {
			return fmt.Errorf("-sizes: %q is not a count 0..100000000", s)
		}
		o.sizes = append(o.sizes, n)
	}
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	fmt.Fprintln(stderr, "starting PostgreSQL (fsync on) and Redis on loopback")
	pg, err := testenv.StartOwnPostgres(testenv.PostgresOptions{Durable: true, Settings: []string{"shared_buffers=256MB"}})
	if err != nil {
		return err
	}
	defer pg.Close()
	o.pgPID = pg.PID()
	rds, err := testenv.StartOwnRedis()
	if err != nil {
		return err
	}
	defer rds.Close()

	type row struct {
		size            int64
		app, orig       []loadgen.Result
		appCPU, origCPU []cpuSample // CPU used during each measured run
		appLoad         []string    // load average when each app run began
		verified        string
	}
	var rows []row
	for _, n := range o.sizes {
		r := row{size: n, verified: "yes"}
		appDB, err := prepareApp(ctx, pg, n, stderr)
		if err != nil {
			return err
		}
		origDB, err := prepareOriginal(ctx, pg, n, stderr)
		if err != nil {
			return err
		}
		for round := 1; round <= o.rounds; round++ {
			if err := quiesce(ctx, pg.AdminURL(), stderr); err != nil {
				return err
			}
			la := loadavg()
			r.appLoad = append(r.appLoad, la)
			fmt.Fprintf(stderr, "== %s stored hits, round %d: hits app (load average %s)\n", human(n), round, la)
			res, cpu, verified, err := benchApp(ctx, o, appDB, rds, n, round, stderr)
			if err != nil {
				return err
			}
			r.appCPU = append(r.appCPU, cpu)
			if verified != "yes" {
				r.verified = verified
			}
			r.app = append(r.app, res)
			if err := quiesce(ctx, pg.AdminURL(), stderr); err != nil {
				return err
			}
			fmt.Fprintf(stderr, "== %s stored hits, round %d: original SQL (load average %s)\n", human(n), round, loadavg())
			if res, cpu, err = benchOriginal(ctx, o, origDB, n, round, stderr); err != nil {
				return err
			}
			r.orig = append(r.orig, res)
			r.origCPU = append(r.origCPU, cpu)
		}
		if err := dropOriginal(ctx, origDB); err != nil {
			return err
		}
		rows = append(rows, r)
	}

	fmt.Fprintf(stdout, "\nc=%d, %s per run after %s warm-up, JSON GET /, median of %d interleaved rounds (range of hits/s in brackets),\n"+
		"everything on this machine (%d CPUs), PostgreSQL fsync on, load generator in the same machine.\n\n",
		o.concurrency, o.duration, o.warmup, o.rounds, runtime.NumCPU())
	fmt.Fprintln(stdout, "| stored hits | hits app: hits/s | p50 | p99 | errors | acknowledged hits all stored | load avg at start | original SQL: hits/s | p50 | p99 | errors |")
	fmt.Fprintln(stdout, "|---:|---:|---:|---:|---:|:---|---:|---:|---:|---:|---:|")
	var medians []float64
	for _, r := range rows {
		ai, o := median(r.app), median(r.orig)
		a := r.app[ai]
		medians = append(medians, a.PerSecond())
		fmt.Fprintf(stdout, "| %s | %.0f %s | %s | %s | %d | %s | %s | %s %s | %s | %s | %d |\n", human(r.size),
			a.PerSecond(), spread(r.app, "%.0f"), ms(a.P50), ms(a.P99), errorsOf(r.app), r.verified, r.appLoad[ai],
			rate(r.orig[o].PerSecond()), spread(r.orig, "%.1f"), ms(r.orig[o].P50), ms(r.orig[o].P99), errorsOf(r.orig))
	}
	if len(medians) > 1 {
		lo, hi := slices.Min(medians), slices.Max(medians)
		fmt.Fprintf(stdout, "\nhits app median throughput, slowest size vs fastest: %.1f%% lower\n", 100*(hi-lo)/hi)
	}
	fmt.Fprintln(stdout, "\nWhere the CPU goes, per successful hit in the median runs (user+system time from /proc; 2 CPUs are 2 s of CPU per second):")
	fmt.Fprintln(stdout, "\n| stored hits | hits app: app | PostgreSQL | load generator | total | original SQL: server | PostgreSQL | load generator | total |")
	fmt.Fprintln(stdout, "|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
	for _, r := range rows {
		ai, oi := median(r.app), median(r.orig)
		fmt.Fprintf(stdout, "| %s | %s | %s |\n", human(r.size), perHit(r.appCPU[ai], r.app[ai].OK), perHit(r.origCPU[oi], r.orig[oi].OK))
	}
	return nil
}

// perHit formats a run's CPU per successful request as table cells.
func perHit(c cpuSample, ok int) string {
	if ok == 0 {
		return "- | - | - | -"
	}
	f := func(d time.Duration) string {
		us := float64(d.Microseconds()) / float64(ok)
		if us >= 10000 {
			return fmt.Sprintf("%.0f ms", us/1000)
		}
		return fmt.Sprintf("%.0f µs", us)
	}
	return f(c.server) + " | " + f(c.postgres) + " | " + f(c.self) + " | " + f(c.server+c.postgres+c.self)
}

// prepareApp creates and seeds the database the app runs on at size n.
func prepareApp(ctx context.Context, pg *testenv.Postgres, n int64, stderr io.Writer) (string, error) {
	url, err := pg.CreateDatabase(ctx)
	if err != nil {
		return "", err
	}
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		return "", err
	}
	defer pool.Close()
	if _, err := postgres.Migrate(ctx, pool); err != nil {
		return "", err
	}
	return url, seedCounters(ctx, pool, n, stderr)
}

// benchApp runs the app binary on the prepared database and loads it; then
// checks the stored total grew by at least the number of hits the clients
// saw succeed (no acknowledged hit lost).
func benchApp(ctx context.Context, o options, url string, rds *testenv.Redis, n int64, round int, stderr io.Writer) (loadgen.Result, cpuSample, string, error) {
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		return loadgen.Result{}, cpuSample{}, "", err
	}
	defer pool.Close()
	var before int64
	if err := pool.QueryRow(ctx, "SELECT total FROM hit_totals").Scan(&before); err != nil {
		return loadgen.Result{}, cpuSample{}, "", err
	}
	port, err := testenv.FreePort()
	if err != nil {
		return loadgen.Result{}, cpuSample{}, "", err
	}
	env := []string{
		"DATABASE_URL=" + url, "REDIS_URL=" + rds.URL(), "REDIS_KEY_PREFIX=bench" + strconv.FormatInt(n, 10) + ":",
		"INSTANCE_ID=bench", "PORT=" + strconv.Itoa(port), "DRAIN_TIMEOUT=0s", "LOG_LEVEL=warn",
		"DB_MAX_CONNS=" + strconv.Itoa(o.poolSize),
	}
	env = append(env, o.appEnv...)
	stopApp, pid, err := startServer(ctx, o, o.app, nil, env, port, fmt.Sprintf("app-%d-%d.log", n, round))
	if err != nil {
		return loadgen.Result{}, cpuSample{}, "", err
	}
	res, err := load(ctx, o, port, func() cpuSample { return sampleCPU(pid, o.pgPID) })
	if stopErr := stopApp(); err == nil && stopErr != nil {
		err = stopErr
	}
	if err != nil {
		return loadgen.Result{}, cpuSample{}, "", err
	}
	var total int64
	if err := pool.QueryRow(ctx, "SELECT total FROM hit_totals").Scan(&total); err != nil {
		return loadgen.Result{}, cpuSample{}, "", err
	}
	// Hits whose requests were cut off at the end of the warm-up or the run
	// may be stored without having been acknowledged; never the reverse.
	extra := total - before - int64(res.ok)
	verified := "yes"
	if extra < 0 {
		verified = fmt.Sprintf("NO: %d acknowledged hits missing", -extra)
	}
	fmt.Fprintf(stderr, "   %.0f hits/s, p50 %s, p99 %s, errors %d; stored +%d = acknowledged %d + %d cut off at the end\n",
		res.measured.PerSecond(), ms(res.measured.P50), ms(res.measured.P99), res.measured.Errors, total-before, res.ok, extra)
	return res.measured, res.cpu, verified, nil
}

// loadResult is one warm-up plus one measured run.
type loadResult struct {
	measured loadgen.Result
	ok       int       // successful requests of both
	cpu      cpuSample // used during the measured run
}

func load(ctx context.Context, o options, port int, sample func() cpuSample) (loadResult, error) {
	cfg := loadgen.Config{
		URL:         "http://127.0.0.1:" + strconv.Itoa(port) + "/",
		Header:      http.Header{"Accept": {"application/json"}},
		Concurrency: o.concurrency, Duration: o.warmup, Timeout: o.timeout,
	}
	warm, err := loadgen.Run(ctx, cfg)
	if err != nil {
		return loadResult{}, err
	}
	cfg.Duration = o.duration
	before := sample()
	m, err := loadgen.Run(ctx, cfg)
	if err != nil {
		return loadResult{}, err
	}
	return loadResult{measured: m, ok: warm.OK + m.OK, cpu: sample().sub(before)}, ctx.Err()
}

// startServer starts a server process, waits for its /healthz and returns
// a function that stops it with SIGTERM and waits, and its process ID.
func startServer(ctx context.Context, o options, bin string, args, env []string, port int, logName string) (func() error, int, error) {
	logPath := filepath.Join(o.logDir, "hitbench-"+logName)
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, 0, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, 0, fmt.Errorf("start %s: %w", bin, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait(); logf.Close() }()
	stop := func() error {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-exited:
			if err != nil {
				return fmt.Errorf("%s exited: %w (log %s)", bin, err, logPath)
			}
			return nil
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
			<-exited
			return fmt.Errorf("%s did not stop within 30s", bin)
		}
	}
	deadline := time.Now().Add(60 * time.Second)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	url := "http://127.0.0.1:" + strconv.Itoa(port) + "/healthz"
	for {
		rctx, cancel := context.WithTimeout(ctx, time.Second)
		req, _ := http.NewRequestWithContext(rctx, http.MethodGet, url, nil)
		resp, err := http.DefaultClient.Do(req)
		cancel()
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return stop, cmd.Process.Pid, nil
			}
		}
		select {
		case err := <-exited:
			return nil, 0, fmt.Errorf("%s exited while starting: %v (log %s)", bin, err, logPath)
		case <-tick.C:
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			stop()
			return nil, 0, errors.Join(errors.New(bin+" not healthy after 60s"), ctx.Err())
		}
	}
}

// seedCounters makes the counter tables look like n hits spread evenly over
// the last 30 days by 4 instances: 172,800 minute rows whatever n is.
func seedCounters(ctx context.Context, pool *pgxpool.Pool, n int64, stderr io.Writer) error {
	if n == 0 {
		return nil
	}
	start := time.Now()
	const rows = 30 * 1440 * 4
	_, err := pool.Exec(ctx, `
WITH s AS (
    SELECT g, date_trunc('minute', now()) - make_interval(mins => 1 + g / 4) AS minute, 'seed-' || (g % 4 + 1) AS instance
    FROM generate_series(0, $2::int - 1) g
)
INSERT INTO hits_by_minute (minute, instance, hits)
SELECT minute, instance, $1::bigint / $2 + CASE WHEN g < $1::bigint % $2 THEN 1 ELSE 0 END FROM s
WHERE $1::bigint / $2 + CASE WHEN g < $1::bigint % $2 THEN 1 ELSE 0 END > 0`, n, rows)
	if err != nil {
		return fmt.Errorf("seed hits_by_minute: %w", err)
	}
	if _, err := pool.Exec(ctx, `
INSERT INTO instance_hits (instance, hits, first_seen, last_seen)
SELECT instance, sum(hits), min(minute), max(minute) FROM hits_by_minute GROUP BY instance`); err != nil {
		return fmt.Errorf("seed instance_hits: %w", err)
	}
	if _, err := pool.Exec(ctx, `UPDATE hit_totals SET total = $1`, n); err != nil {
		return fmt.Errorf("seed total: %w", err)
	}
	if _, err := pool.Exec(ctx, `VACUUM ANALYZE`); err != nil {
		return fmt.Errorf("vacuum: %w", err)
	}
	fmt.Fprintf(stderr, "   seeded %d hits into the counter tables in %s\n", n, time.Since(start).Round(time.Millisecond))
	return nil
}

// prepareOriginal creates the original's table with n rows spread over
// the last 30 days, in a database of its own.
func prepareOriginal(ctx context.Context, pg *testenv.Postgres, n int64, stderr io.Writer) (string, error) {
	url, err := pg.CreateDatabase(ctx)
	if err != nil {
		return "", err
	}
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return "", err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	start := time.Now()
	// The original's table: no index beyond the primary key.
	if _, err := conn.Exec(ctx, `CREATE TABLE hit (id serial PRIMARY KEY, ts timestamptz NOT NULL DEFAULT now())`); err != nil {
		return "", err
	}
	if n > 0 {
		if _, err := conn.Exec(ctx, `INSERT INTO hit (ts) SELECT now() - random() * interval '30 days' FROM generate_series(1, $1::bigint)`, n); err != nil {
			return "", fmt.Errorf("seed hit: %w", err)
		}
	}
	if _, err := conn.Exec(ctx, `VACUUM ANALYZE hit`); err != nil {
		return "", err
	}
	fmt.Fprintf(stderr, "   seeded %d rows into the original's hit table in %s\n", n, time.Since(start).Round(time.Millisecond))
	return url, nil
}

// dropOriginal drops the big table so it does not slow the next sizes' checkpoints.
func dropOriginal(ctx context.Context, url string) error {
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	_, err = conn.Exec(ctx, `DROP TABLE hit`)
	return err
}

func benchOriginal(ctx context.Context, o options, url string, n int64, round int, stderr io.Writer) (loadgen.Result, cpuSample, error) {
	port, err := testenv.FreePort()
	if err != nil {
		return loadgen.Result{}, cpuSample{}, err
	}
	self, err := os.Executable()
	if err != nil {
		return loadgen.Result{}, cpuSample{}, err
	}
	stopSrv, pid, err := startServer(ctx, o, self,
		[]string{"serve-original", "-db", url, "-port", strconv.Itoa(port), "-pool", strconv.Itoa(o.poolSize)},
		nil, port, fmt.Sprintf("original-%d-%d.log", n, round))
	if err != nil {
		return loadgen.Result{}, cpuSample{}, err
	}
	res, err := load(ctx, o, port, func() cpuSample { return sampleCPU(pid, o.pgPID) })
	if stopErr := stopSrv(); err == nil && stopErr != nil {
		err = stopErr
	}
	if err != nil {
		return loadgen.Result{}, cpuSample{}, err
	}
	fmt.Fprintf(stderr, "   %.1f req/s, p50 %s, p99 %s, errors %d\n", res.measured.PerSecond(), ms(res.measured.P50), ms(res.measured.P99), res.measured.Errors)
	return res.measured, res.cpu, nil
}

// median returns the index of the run with the median throughput.
func median(rs []loadgen.Result) int {
	idx := make([]int, len(rs))
	for i := range idx {
		idx[i] = i
	}
	slices.SortFunc(idx, func(a, b int) int { return cmp.Compare(rs[a].PerSecond(), rs[b].PerSecond()) })
	return idx[len(idx)/2]
}

func spread(rs []loadgen.Result, format string) string {
	if len(rs) < 2 {
		return ""
	}
	lo, hi := rs[0].PerSecond(), rs[0].PerSecond()
	for _, r := range rs {
		lo, hi = min(lo, r.PerSecond()), max(hi, r.PerSecond())
	}
	return "(" + fmt.Sprintf(format, lo) + "–" + fmt.Sprintf(format, hi) + ")"
}

func errorsOf(rs []loadgen.Result) int {
	n := 0
	for _, r := range rs {
		n += r.Errors
	}
	return n
}

func rate(v float64) string {
	if v < 100 {
		return fmt.Sprintf("%.1f", v)
	}
	return fmt.Sprintf("%.0f", v)
}

// quiesce waits (up to a minute) until no other query runs on the server,
// then checkpoints, so each run starts from the same state: the original's
// cancelled full-table counts and the seeding's dirty pages must not be
// billed to the next run.
func quiesce(ctx context.Context, adminURL string, stderr io.Writer) error {
	conn, err := pgx.Connect(ctx, adminURL)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	start := time.Now()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	first := -1
	for {
		var n int
		if err := conn.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
			WHERE state = 'active' AND pid <> pg_backend_pid()
			  AND backend_type IN ('client backend', 'parallel worker', 'autovacuum worker')`).Scan(&n); err != nil {
			return fmt.Errorf("quiesce: %w", err)
		}
		if first < 0 {
			first = n
		}
		if n == 0 {
			break
		}
		if time.Since(start) > time.Minute {
			fmt.Fprintf(stderr, "   still %d busy backends after a minute; going on\n", n)
			break
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
	if _, err := conn.Exec(ctx, "CHECKPOINT"); err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	if first > 0 {
		fmt.Fprintf(stderr, "   waited %s for %d busy backends to finish\n", time.Since(start).Round(time.Millisecond), first)
	}
	return nil
}

// loadavg is the 1-minute load average: other work on the machine shows here.
func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return "?"
	}
	return f[0]
}

func ms(d time.Duration) string {
	switch {
	case d == 0:
		return "-"
	case d < 10*time.Millisecond:
		return fmt.Sprintf("%.2f ms", float64(d)/1e6)
	default:
		return fmt.Sprintf("%.0f ms", float64(d)/1e6)
	}
}

func human(n int64) string {
	switch {
	case n >= 1_000_000 && n%1_000_000 == 0:
		return strconv.FormatInt(n/1_000_000, 10) + "M"
	case n >= 1000 && n%1000 == 0:
		return strconv.FormatInt(n/1000, 10) + "k"
	default:
		return strconv.FormatInt(n, 10)
	}
}
