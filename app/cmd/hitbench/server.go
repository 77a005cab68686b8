package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"

	"hits/app/internal/loadgen"
)

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
