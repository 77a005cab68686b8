package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"hits/app/internal/loadgen"
	"hits/app/internal/testenv"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"hits/testkit"
)

// serveOriginal serves the original Flask app's storage pattern, per
// request: INSERT a row into hit, then COUNT the rows of the last day. Its
// Redis-cached total (refreshed once a minute) is left out: it is not on the
// per-request path.
func serveOriginal(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("serve-original", flag.ContinueOnError)
	db := fs.String("db", "", "PostgreSQL URL")
	port := fs.Int("port", 0, "listen port on 127.0.0.1")
	size := fs.Int("pool", 8, "pool size")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	cfg, err := pgxpool.ParseConfig(*db)
	if err != nil {
		return err
	}
	cfg.MaxConns = int32(*size)
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return err
	}
	defer pool.Close()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {})
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		if _, err := pool.Exec(r.Context(), `INSERT INTO hit (ts) VALUES (now())`); err != nil {
			http.Error(w, "unavailable", http.StatusServiceUnavailable)
			return
		}
		var n int64
		if err := pool.QueryRow(r.Context(), `SELECT count(*) FROM hit WHERE ts > now() - interval '1 day'`).Scan(&n); err != nil {
			http.Error(w, "unavailable", http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"last_day":%d}`, n)
	})
	ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(*port))
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	srv.Shutdown(sctx)
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
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
	port, err := testkit.FreePort()
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
	fmt.Fprintf(stderr, "   %.1f req/s, p50 %s, p99 %s, errors %d; other work took %s of the CPUs\n", res.measured.PerSecond(),
		ms(res.measured.P50), ms(res.measured.P99), res.measured.Errors, othersShare(res.cpu, res.measured.Elapsed))
	return res.measured, res.cpu, nil
}
