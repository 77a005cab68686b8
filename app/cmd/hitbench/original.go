package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
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
