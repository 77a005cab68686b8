package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"hits/app/internal/loadgen"
	"hits/app/internal/postgres"
	"hits/app/internal/testenv"
	"hits/testkit"
)

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
	if err := pool.QueryRow(ctx, "SELECT COALESCE(sum(hits), 0)::bigint FROM instance_hits").Scan(&before); err != nil {
		return loadgen.Result{}, cpuSample{}, "", err
	}
	var ports testkit.Ports
	port, err := ports.Free()
	if err != nil {
		return loadgen.Result{}, cpuSample{}, "", err
	}
	opsPort, err := ports.Free()
	if err != nil {
		return loadgen.Result{}, cpuSample{}, "", err
	}
	env := []string{
		"DATABASE_URL=" + url, "REDIS_URL=" + rds.URL(), "REDIS_KEY_PREFIX=bench" + strconv.FormatInt(n, 10) + ":",
		"INSTANCE_ID=bench", "PORT=" + strconv.Itoa(port), "OPS_ADDR=127.0.0.1:" + strconv.Itoa(opsPort), "DRAIN_TIMEOUT=0s", "LOG_LEVEL=warn",
		"DB_MAX_CONNS=" + strconv.Itoa(o.poolSize),
	}
	env = append(env, o.appEnv...)
	stopApp, pid, err := startServer(ctx, o, o.app, nil, env, port, fmt.Sprintf("app-%d-%d.log", n, round))
	if err != nil {
		return loadgen.Result{}, cpuSample{}, "", err
	}
	res, err := load(ctx, o, port, func() cpuSample { return sampleCPU(pid, o.pgPID) })
	saveMetrics(ctx, opsPort, filepath.Join(o.logDir, fmt.Sprintf("hitbench-app-%d-%d.metrics", n, round)))
	if stopErr := stopApp(); err == nil && stopErr != nil {
		err = stopErr
	}
	if err != nil {
		return loadgen.Result{}, cpuSample{}, "", err
	}
	var total int64
	if err := pool.QueryRow(ctx, "SELECT COALESCE(sum(hits), 0)::bigint FROM instance_hits").Scan(&total); err != nil {
		return loadgen.Result{}, cpuSample{}, "", err
	}
	// Hits whose requests were cut off at the end of the warm-up or the run
	// may be stored without having been acknowledged; never the reverse.
	extra := total - before - int64(res.ok)
	verified := "yes"
	if extra < 0 {
		verified = fmt.Sprintf("NO: %d acknowledged hits missing", -extra)
	}
	fmt.Fprintf(stderr, "   %.0f hits/s, p50 %s, p99 %s, errors %d; stored +%d = acknowledged %d + %d cut off at the end; other work took %s of the CPUs\n",
		res.measured.PerSecond(), ms(res.measured.P50), ms(res.measured.P99), res.measured.Errors, total-before, res.ok, extra,
		othersShare(res.cpu, res.measured.Elapsed))
	return res.measured, res.cpu, verified, nil
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
	if _, err := pool.Exec(ctx, `SELECT setval('hit_numbers', $1)`, n); err != nil {
		return fmt.Errorf("seed total: %w", err)
	}
	if _, err := pool.Exec(ctx, `VACUUM ANALYZE`); err != nil {
		return fmt.Errorf("vacuum: %w", err)
	}
	fmt.Fprintf(stderr, "   seeded %d hits into the counter tables in %s\n", n, time.Since(start).Round(time.Millisecond))
	return nil
}

// saveMetrics keeps the app's /metrics (served on OPS_ADDR) after a run
// (batch sizes and durations explain a slow run); best effort.
func saveMetrics(ctx context.Context, port int, path string) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://127.0.0.1:"+strconv.Itoa(port)+"/metrics", nil)
	if err != nil {
		return
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err == nil {
		os.WriteFile(path, b, 0o644)
	}
}
