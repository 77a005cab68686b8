package main

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"hits/h1/front"
	"hits/lb/internal/admin"
	"hits/lb/internal/balancer"
	"hits/lb/internal/config"
	"hits/lb/internal/discovery"
	"hits/lb/internal/health"
	"hits/lb/internal/logbuf"
	"hits/lb/internal/stats"
)

// Addrs are the addresses a running lb serves on.
type Addrs struct {
	HTTP  string // LB_ADDR: the proxy
	Admin string // LB_ADMIN_ADDR: dashboard, /status, /metrics
	TLS   string // LB_TLS_ADDR; "" without HTTPS
}

// run is the whole program: it returns when ctx is cancelled (SIGTERM) and
// everything has shut down, or with the error that stopped start-up. When
// serving starts it calls serving (if not nil) with the bound addresses, so
// a caller that asked for port 0 learns the real ones.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer, serving func(Addrs)) error {
	if len(args) > 1 {
		switch args[1] {
		case "healthcheck":
			return healthcheck(ctx, getenv)
		default:
			return fmt.Errorf("unknown command %q: usage: lb [healthcheck]", args[1])
		}
	}
	cfg, err := config.Load(getenv)
	if err != nil {
		return err
	}
	log := slog.New(slog.NewJSONHandler(stdout, &slog.HandlerOptions{Level: cfg.LogLevel}))

	var sticky *balancer.Sticky
	stickyID := func(string) string { return "" }
	if cfg.Sticky == config.StickyCookies {
		secret := cfg.StickySecret
		if secret == nil {
			secret = make([]byte, 32)
			rand.Read(secret)
			log.Warn("LB_STICKY_SECRET is not set: using a random secret, so pins do not survive a restart and several lb instances cannot share them")
		}
		sticky = balancer.NewSticky(cfg.StickyCookie, cfg.StickyTTL, secret, nil)
		stickyID = sticky.ID
	}
	pool := balancer.NewPool(balancer.PoolOptions{
		Logger:             log,
		StickyID:           stickyID,
		PassiveFailures:    cfg.PassiveFailures,
		HealthyThreshold:   cfg.HealthyThreshold,
		UnhealthyThreshold: cfg.UnhealthyThreshold,
		SlowStart:          cfg.SlowStart,
		DialTimeout:        cfg.DialTimeout,
		IdleTimeout:        cfg.BackendIdleTimeout,
		MaxIdle:            cfg.MaxIdlePerBackend,
	})
	defer pool.Close()
	var sel balancer.Selector = &balancer.RoundRobin{}
	if cfg.Algorithm == config.LeastConnections {
		sel = &balancer.LeastConnections{}
	}
	var accessLog *slog.Logger
	if cfg.AccessLog {
		// One line per request, written in batches (at most 32 KiB or
		// 200 ms held back) rather than one write call per request; other
		// log lines go straight out. Flushed on the way out.
		lines := logbuf.New(stdout, 32<<10, 200*time.Millisecond)
		defer lines.Close()
		accessLog = slog.New(slog.NewJSONHandler(lines, &slog.HandlerOptions{Level: cfg.LogLevel}))
	}
	proxy, err := balancer.NewProxy(pool, balancer.ProxyOptions{
		Selector:          sel,
		Sticky:            sticky,
		MaxAttempts:       cfg.MaxAttempts,
		NoRetryAfterSend:  !cfg.RetryIdempotent,
		TrustedProxies:    cfg.TrustedProxies,
		ResponseTimeout:   cfg.BackendResponseTimeout,
		TunnelIdleTimeout: cfg.TunnelIdleTimeout,
		AccessLog:         accessLog,
		DebugHeaders:      cfg.DebugHeaders,
	})
	if err != nil {
		return err
	}
	checker, err := health.New(pool.Addresses, pool, health.Options{
		Path:     cfg.HealthPath,
		Interval: cfg.HealthInterval,
		Timeout:  cfg.HealthTimeout,
		Logger:   log,
		Observe:  pool.ObserveAnswer, // names and draining from X-App-* headers
	})
	if err != nil {
		return err
	}
	recorder := stats.NewRecorder(proxy.Snapshot, stats.Options{})
	disc, err := discovery.New(cfg.Backends, pool, discovery.Options{
		Interval: cfg.ResolveInterval,
		Timeout:  cfg.ResolveTimeout,
		Logger:   log,
		OnChange: checker.Kick,
	})
	if err != nil {
		return err
	}

	// Listen before serving so a taken port fails start-up at once.
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("listen LB_ADDR %s: %w", cfg.Addr, err)
	}
	defer ln.Close()
	adminLn, err := net.Listen("tcp", cfg.AdminAddr)
	if err != nil {
		return fmt.Errorf("listen LB_ADMIN_ADDR %s: %w", cfg.AdminAddr, err)
	}
	defer adminLn.Close()

	errLog := slog.NewLogLogger(log.Handler(), slog.LevelWarn)
	https, err := listenHTTPS(cfg, proxy, log, errLog)
	if err != nil {
		return err
	}
	if https.ln != nil {
		defer https.ln.Close()
	}
	if ln, err = withProxyProtocol(ln, cfg, log); err != nil {
		return err
	}
	if https.ln, err = withProxyProtocol(https.ln, cfg, log); err != nil {
		return err
	}
	// The proxy listener uses our lean HTTP/1.1 server (package front):
	// net/http's per-request machinery cost about a fifth of lb's CPU.
	srv := &front.Server{
		Handler:           https.plain,
		ReadHeaderTimeout: cfg.ReadHeaderTimeout,
		IdleTimeout:       cfg.ClientIdleTimeout,
		BodyTimeout:       cfg.ClientBodyTimeout,
		SendTimeout:       cfg.ClientSendTimeout,
		MaxHeaderBytes:    cfg.MaxHeaderBytes,
		MaxBodyBytes:      cfg.MaxBodyBytes,
		Logger:            log,
	}
	adminSrv := &http.Server{
		Handler: admin.AllowHosts(admin.NewServer(pool, admin.Options{
			Algorithm: cfg.Algorithm, Sticky: cfg.Sticky, Pprof: cfg.Pprof, DebugHeaders: cfg.DebugHeaders,
			Stats: recorder, Counters: proxy.Snapshot, Decisions: proxy.Decisions,
			Extra: map[string]func() any{"listeners": https.status(cfg, ln)},
		}), cfg.AdminHosts),
		ReadHeaderTimeout: 5 * time.Second,
		IdleTimeout:       time.Minute,
		ErrorLog:          errLog,
	}

	bg, stopBG := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer wg.Wait()
	defer stopBG()
	// Resolve once before serving so the first health round has targets.
	disc.ResolveNow(ctx)
	wg.Add(3)
	go func() { defer wg.Done(); disc.Run(bg) }()
	go func() { defer wg.Done(); checker.Run(bg) }()
	go func() { defer wg.Done(); recorder.Run(bg) }()
	if https.certs != nil {
		wg.Add(1)
		go func() { defer wg.Done(); https.certs.Run(bg) }()
	}

	serveErr := make(chan error, 3)
	pending := 2 // Serve calls still running
	go func() { serveErr <- srv.Serve(ln) }()
	go func() { serveErr <- adminSrv.Serve(adminLn) }()
	if https.srv != nil {
		pending++
		go func() { serveErr <- https.srv.ServeTLS(https.ln, "", "") }()
	}
	addrs := Addrs{HTTP: ln.Addr().String(), Admin: adminLn.Addr().String(), TLS: https.tlsAddr()}
	log.Info("lb listening", "addr", addrs.HTTP, "admin_addr", addrs.Admin, "tls_addr", addrs.TLS,
		"algorithm", cfg.Algorithm, "backends", cfg.Backends, "sticky", cfg.Sticky)
	if serving != nil {
		serving(addrs)
	}

	var runErr error
	select {
	case <-ctx.Done():
	case err := <-serveErr:
		pending--
		runErr = fmt.Errorf("serve: %w", err)
	}
	log.Info("lb shutting down", "timeout", cfg.ShutdownTimeout.String())
	sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	// Stop accepting and finish in-flight requests, then end WebSocket
	// sessions, then the admin listener (it stays up while draining).
	if err := srv.Shutdown(sctx); err != nil && runErr == nil {
		runErr = fmt.Errorf("shutdown: %w", err)
	}
	if https.srv != nil {
		if err := https.srv.Shutdown(sctx); err != nil && runErr == nil {
			runErr = fmt.Errorf("shutdown tls: %w", err)
		}
	}
	proxy.CloseUpgrades()
	if err := adminSrv.Shutdown(sctx); err != nil && runErr == nil {
		runErr = fmt.Errorf("shutdown admin: %w", err)
	}
	stopBG()
	wg.Wait()
	for range pending {
		if err := <-serveErr; err != nil && !errors.Is(err, http.ErrServerClosed) && runErr == nil {
			runErr = fmt.Errorf("serve: %w", err)
		}
	}
	if runErr == nil {
		log.Info("lb stopped")
	}
	return runErr
}

// healthcheck is the Docker HEALTHCHECK for a FROM scratch image: it asks
// the admin listener's /healthz and fails unless it answers 200.
func healthcheck(ctx context.Context, getenv func(string) string) error {
	addr := getenv("LB_ADMIN_ADDR")
	if addr == "" {
		addr = config.DefaultAdminAddr
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("healthcheck: LB_ADMIN_ADDR=%q: %w", addr, err)
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+net.JoinHostPort(host, port)+"/healthz", nil)
	if err != nil {
		return fmt.Errorf("healthcheck: %w", err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("healthcheck: %w", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("healthcheck: status %d", resp.StatusCode)
	}
	return nil
}
