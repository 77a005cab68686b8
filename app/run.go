package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os/signal"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"hits/app/internal/config"
	"hits/app/internal/cpulimit"
	"hits/app/internal/hits"
	"hits/app/internal/instance"
	"hits/app/internal/postgres"
	"hits/app/internal/rediscache"
	"hits/app/internal/web"
	"hits/h1/front"
)

// Addrs are the addresses a running app serves on.
type Addrs struct {
	HTTP string // PORT: the page, the JSON, the favicon, /healthz, /readyz
	Ops  string // OPS_ADDR: /metrics, and /debug/pprof with OPS_PPROF
}

// run is the whole program; main only supplies the process's environment.
// It returns nil after a clean shutdown (SIGTERM, SIGINT or ctx cancelled).
// When serving starts it calls serving (if not nil) with the bound
// addresses, so a caller that asked for port 0 learns the real ones.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer, serving func(Addrs)) error {
	if len(args) > 1 {
		switch args[1] {
		case "healthcheck":
			return healthcheck(ctx, getenv)
		default:
			return fmt.Errorf("unknown command %q: want no argument (serve) or \"healthcheck\"", args[1])
		}
	}
	cfg, err := config.Load(getenv)
	if err != nil {
		return err
	}
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.LogLevel)) // validated by config
	log := slog.New(slog.NewJSONHandler(stdout, &slog.HandlerOptions{Level: level}))
	// Go never sets GOMAXPROCS below 2 from a CPU quota; in a quota of a
	// CPU or less a second thread only spends it sooner (measured in
	// docs/app.md). GOMAXPROCS in the environment still wins.
	if cpus, ok := cpulimit.Read(); ok && cpus <= 1 && getenv("GOMAXPROCS") == "" {
		runtime.GOMAXPROCS(1)
		log.Info("CPU quota of at most one CPU: GOMAXPROCS=1", "cpus", cpus)
	}

	ctx, stop := signal.NotifyContext(ctx, syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	// Listen first so a taken port fails at once, before waiting on the database.
	ln, err := net.Listen("tcp", ":"+strconv.Itoa(cfg.Port))
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	defer ln.Close()
	opsLn, err := net.Listen("tcp", cfg.OpsAddr)
	if err != nil {
		return fmt.Errorf("listen on OPS_ADDR: %w", err)
	}
	defer opsLn.Close()

	pool, err := postgres.Open(ctx, cfg.DatabaseURL, cfg.DBMaxConns, cfg.DBTimeout)
	if err != nil {
		return err
	}
	defer pool.Close()
	if err := migrate(ctx, pool, cfg.StartupTimeout, log); err != nil {
		if ctx.Err() != nil { // told to stop while waiting for postgres: not a failure
			log.Info("stopped before postgres was ready")
			return nil
		}
		return err
	}
	store := postgres.NewStore(pool)
	gctx, cancelG := context.WithTimeout(ctx, cfg.DBTimeout)
	generation, err := store.Generation(gctx)
	cancelG()
	if err != nil {
		return err
	}

	name, err := instanceName(ctx, cfg, log)
	if err != nil {
		return err
	}

	reg, err := newRegistry(name)
	if err != nil {
		return err
	}
	cache, closeCache, err := openCache(cfg, generation, reg, log)
	if err != nil {
		return err
	}
	defer closeCache()

	batcher, err := hits.NewBatcher(store, hits.BatcherConfig{
		Instance: name, Max: cfg.BatchMax, Workers: cfg.BatchWorkers, Linger: cfg.BatchLinger, LingerHits: cfg.BatchLingerHits, Timeout: cfg.DBTimeout,
		HitTimeout: cfg.HitTimeout, SettleTimeout: cfg.SettleTimeout, Log: log,
		Metrics: batchMetrics(reg),
	})
	if err != nil {
		return err
	}
	// The batcher outlives the HTTP server: in-flight requests need it until
	// Shutdown returns; then cancelling batchCtx commits what is left.
	batchCtx, stopBatcher := context.WithCancel(context.WithoutCancel(ctx))
	defer stopBatcher()
	var wg sync.WaitGroup
	wg.Go(func() { batcher.Run(batchCtx) })
	defer wg.Wait()
	defer stopBatcher() // runs before wg.Wait on early returns

	var draining atomic.Bool
	handler := web.NewServer(web.Deps{
		Counter:  hits.NewCounter(batcher, store, hits.CounterConfig{Cache: cache, Log: log, DBTimeout: cfg.DBTimeout}),
		Ready:    store.Ping,
		Draining: draining.Load,
		Metrics:  reg,
		Log:      log,
		Version:  version,
		Instance: name,
	})
	// The public port is served by h1/front, lb's lean HTTP/1.1 server: no
	// per-request context, background read or header sorting, which cut a
	// replica's CPU per hit by a fifth or more (docs/app.md). A request's
	// context ends only when Shutdown gives up on it, not when its client
	// leaves. No deadline covers a whole answer: a hit may wait its
	// HIT_TIMEOUT and SETTLE_TIMEOUT, and cutting the answer off then
	// would lose a stored hit's 200.
	srv := &front.Server{
		Handler:           handler,
		ReadHeaderTimeout: 5 * time.Second,
		IdleTimeout:       90 * time.Second,
		BodyTimeout:       10 * time.Second, // no route reads a body; a POST gets 405
		SendTimeout:       10 * time.Second, // each write to a client that stopped reading
		Logger:            log,
	}
	errorLog := slog.NewLogLogger(log.Handler(), slog.LevelWarn)
	ops := newOpsServer(reg, cfg.OpsPprof)
	ops.ErrorLog = errorLog
	defer ops.Close() // before wg.Wait on early returns
	serveErr := make(chan error, 1)
	wg.Go(func() { serveErr <- srv.Serve(ln) })
	wg.Go(func() {
		if err := ops.Serve(opsLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("operations listener stopped", "err", err)
		}
	})
	addrs := Addrs{HTTP: ln.Addr().String(), Ops: opsLn.Addr().String()}
	log.Info("serving", "addr", addrs.HTTP, "ops_addr", addrs.Ops, "pprof", cfg.OpsPprof, "instance", name, "version", version, "cache", cfg.CacheEnabled())
	if serving != nil {
		serving(addrs)
	}

	select {
	case err := <-serveErr:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}

	// Drain: report not-ready at once but keep serving, so a balancer that
	// checks /readyz takes us out before connections are refused.
	draining.Store(true)
	log.Info("shutting down: draining", "drain_timeout", cfg.DrainTimeout.String())
	drain := time.NewTimer(cfg.DrainTimeout)
	select {
	case <-drain.C:
	case err := <-serveErr:
		drain.Stop()
		return fmt.Errorf("serve: %w", err)
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.ShutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		log.Warn("shutdown: in-flight requests cut off", "err", err) // front closed them
	}
	if err := <-serveErr; err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Warn("serve", "err", err)
	}
	// Metrics stayed up through the drain; a scrape in flight gets a moment.
	if err := ops.Shutdown(sctx); err != nil {
		ops.Close()
	}
	stopBatcher()
	wg.Wait()
	log.Info("stopped")
	return nil
}

// migrate applies the schema, waiting for PostgreSQL up to timeout: in a
// compose file the database may still be starting.
func migrate(ctx context.Context, pool *pgxpool.Pool, timeout time.Duration, log *slog.Logger) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	wait := 200 * time.Millisecond
	for {
		n, err := postgres.Migrate(ctx, pool)
		if err == nil {
			log.Info("schema ready", "applied_migrations", n)
			return nil
		}
		log.Warn("waiting for postgres", "err", err, "retry_in", wait.String())
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("postgres not ready after %s: %w", timeout, err)
		case <-t.C:
		}
		wait = min(2*wait, 2*time.Second)
	}
}

func instanceName(ctx context.Context, cfg config.Config, log *slog.Logger) (string, error) {
	if cfg.InstanceID != "" {
		return cfg.InstanceID, nil
	}
	name, source, err := instance.Detector{}.Name(ctx)
	if err != nil {
		return "", err
	}
	log.Info("INSTANCE_ID is not set: name detected", "instance", name, "source", source)
	return name, nil
}

// openCache connects the cache the configuration names, if any. Its close
// function is never nil.
func openCache(cfg config.Config, generation string, reg prometheus.Registerer, log *slog.Logger) (hits.Cache, func(), error) {
	if !cfg.CacheEnabled() {
		log.Info("neither REDIS_URL nor REDIS_SENTINEL_ADDRS is set: running without a cache, every read goes to postgres")
		return nil, func() {}, nil
	}
	rc, err := rediscache.New(rediscache.Config{
		URL:              cfg.RedisURL,
		SentinelAddrs:    cfg.RedisSentinelAddrs,
		MasterName:       cfg.RedisSentinelMaster,
		SentinelPassword: cfg.RedisSentinelPassword,
		Password:         cfg.RedisMasterPassword,
		// Keys carry the database's generation: a Redis that outlives a
		// database reset never serves its stale sums.
		Prefix:  cfg.RedisPrefix + generation + ":",
		Timeout: cfg.CacheTimeout,
		Log:     log,
		Errors: promauto.With(reg).NewCounter(prometheus.CounterOpts{Name: "hits_cache_errors_total",
			Help: "Failed Redis calls (Redis is then skipped for a short back-off)."}),
	})
	if err != nil {
		return nil, nil, err
	}
	if len(cfg.RedisSentinelAddrs) > 0 {
		log.Info("cache through redis sentinel", "sentinels", cfg.RedisSentinelAddrs, "master", cfg.RedisSentinelMaster)
	}
	return rc, func() { rc.Close() }, nil
}

// batchMetrics registers the batcher's instruments; the hits package sees
// them only through its own small interfaces.
func batchMetrics(reg prometheus.Registerer) hits.BatchMetrics {
	f := promauto.With(reg)
	counter := func(name, help string) prometheus.Counter {
		return f.NewCounter(prometheus.CounterOpts{Name: name, Help: help})
	}
	return hits.BatchMetrics{
		Size: f.NewHistogram(prometheus.HistogramOpts{Name: "hits_batch_size", Help: "Hits per committed transaction.",
			Buckets: []float64{1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024}}),
		Seconds: f.NewHistogram(prometheus.HistogramOpts{Name: "hits_batch_duration_seconds", Help: "Duration of each batch transaction.",
			Buckets: []float64{0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5}}),
		Errors:   counter("hits_db_errors_total", "Batch transactions that failed (their requests got 503 unless the batch was found committed and numbered in time)."),
		Hits:     counter("hits_committed_total", "Hits committed by this instance."),
		Gaveup:   counter("hits_abandoned_total", "Hits not counted because the request ended before its batch began."),
		Batches:  counter("hits_batches_total", "Committed batch transactions."),
		Lingered: counter("hits_batches_lingered_total", "Batches that waited for more hits (BATCH_LINGER; only while hits arrive less than BATCH_LINGER apart and lingering gathers some, and only for as many as the replica lately held at once, at most BATCH_LINGER_HITS)."),
		Skipped:  counter("hits_numbers_skipped_total", "Hit numbers taken but shown on no page (request gone or SETTLE_TIMEOUT passed mid-batch, batch committed but not numbered while its requests waited, or window base unreadable)."),
	}
}

// healthcheck is for a Docker HEALTHCHECK in an image with no curl: it
// exits 0 when this process's /healthz answers 200.
func healthcheck(ctx context.Context, getenv func(string) string) error {
	port, err := config.Port(getenv)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	url := "http://127.0.0.1:" + strconv.Itoa(port) + "/healthz"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("healthcheck: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("healthcheck: %s answered %s", url, resp.Status)
	}
	return nil
}
