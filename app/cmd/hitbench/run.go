package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"hits/app/internal/loadgen"
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
	fs.Func("app-env", "extra KEY=VALUE for the app, repeatable (e.g. OPS_PPROF=true)", func(v string) error {
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
		verified        string
	}
	// Every database is prepared first; then each round runs every size
	// back to back, so other work on the machine hits all sizes alike and
	// the sizes are compared within a round.
	rows := make([]row, len(o.sizes))
	appDBs, origDBs := make([]string, len(o.sizes)), make([]string, len(o.sizes))
	for i, n := range o.sizes {
		rows[i] = row{size: n, verified: "yes"}
		if appDBs[i], err = prepareApp(ctx, pg, n, stderr); err != nil {
			return err
		}
		if origDBs[i], err = prepareOriginal(ctx, pg, n, stderr); err != nil {
			return err
		}
	}
	for round := 1; round <= o.rounds; round++ {
		for i, n := range o.sizes {
			r := &rows[i]
			if err := quiesce(ctx, pg.AdminURL(), stderr); err != nil {
				return err
			}
			fmt.Fprintf(stderr, "== round %d, %s stored hits: hits app\n", round, human(n))
			res, cpu, verified, err := benchApp(ctx, o, appDBs[i], rds, n, round, stderr)
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
			fmt.Fprintf(stderr, "== round %d, %s stored hits: original SQL\n", round, human(n))
			if res, cpu, err = benchOriginal(ctx, o, origDBs[i], n, round, stderr); err != nil {
				return err
			}
			r.orig = append(r.orig, res)
			r.origCPU = append(r.origCPU, cpu)
		}
	}
	for _, db := range origDBs {
		if err := dropOriginal(ctx, db); err != nil {
			return err
		}
	}

	fmt.Fprintf(stdout, "\nc=%d, %s per run after %s warm-up, JSON GET /, median of %d rounds, each running every size in turn (range of hits/s in brackets),\n"+
		"everything on this machine (%d CPUs), PostgreSQL fsync on, load generator in the same machine.\n\n",
		o.concurrency, o.duration, o.warmup, o.rounds, runtime.NumCPU())
	fmt.Fprintln(stdout, "| stored hits | hits app: hits/s | p50 | p99 | errors | acknowledged hits all stored | CPU used outside the run | original SQL: hits/s | p50 | p99 | errors |")
	fmt.Fprintln(stdout, "|---:|---:|---:|---:|---:|:---|---:|---:|---:|---:|---:|")
	var medians []float64
	for _, r := range rows {
		ai, o := median(r.app), median(r.orig)
		a := r.app[ai]
		medians = append(medians, a.PerSecond())
		fmt.Fprintf(stdout, "| %s | %.0f %s | %s | %s | %d | %s | %s | %s %s | %s | %s | %d |\n", human(r.size),
			a.PerSecond(), spread(r.app, "%.0f"), ms(a.P50), ms(a.P99), errorsOf(r.app), r.verified, othersShare(r.appCPU[ai], a.Elapsed),
			rate(r.orig[o].PerSecond()), spread(r.orig, "%.1f"), ms(r.orig[o].P50), ms(r.orig[o].P99), errorsOf(r.orig))
	}
	if len(medians) > 1 {
		lo, hi := slices.Min(medians), slices.Max(medians)
		fmt.Fprintf(stdout, "\nhits app, slowest size vs fastest: medians %.1f%% apart; within each round", 100*(hi-lo)/hi)
		for round := range o.rounds {
			var v []float64
			for _, r := range rows {
				v = append(v, r.app[round].PerSecond())
			}
			fmt.Fprintf(stdout, " %.1f%%", 100*(slices.Max(v)-slices.Min(v))/slices.Max(v))
		}
		fmt.Fprintln(stdout)
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

// othersShare is the part of the machine's CPUs used during the run but not
// by its processes: other work on a shared machine, plus kernel time not
// charged to any process (some of it the run's own loopback networking).
func othersShare(c cpuSample, elapsed time.Duration) string {
	if elapsed <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.0f%%", 100*c.others().Seconds()/(elapsed.Seconds()*float64(runtime.NumCPU())))
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
