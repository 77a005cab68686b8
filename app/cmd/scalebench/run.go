package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"hits/app/internal/loadgen"
	"hits/testkit/procstat"
)

// Modes: how the replicas run.
const (
	modeNative        = "native"         // processes sharing the machine's CPUs
	modeBudget        = "budget"         // processes, each in its own CPU quota
	modeCompose       = "compose"        // docker compose --scale app=N, sharing the CPUs
	modeComposeBudget = "compose-budget" // the same with the compose file's cpus: budget
)

var allModes = []string{modeNative, modeBudget, modeCompose, modeComposeBudget}

type options struct {
	app, lb     string
	root        string // repository root, for docker-compose.yml
	work        string // logs and per-run /metrics
	chart       string
	modes       []string
	ns          []int
	concurrency int
	duration    time.Duration
	warmup      time.Duration
	timeout     time.Duration
	rounds      int
	budget      float64 // CPUs per replica in the budget modes
	build       bool    // compose modes build the images first
	// composeTarget is where compose modes send the load: "container"
	// (lb's address on the project network) or "published" (127.0.0.1).
	composeTarget string
	appEnv        []string
}

// system is the whole system in one mode: started for each run with N
// replicas, sampled for CPU, asked what PostgreSQL holds, stopped.
type system interface {
	// start brings up lb and n replicas, all ready, and returns lb's URL.
	start(ctx context.Context, n int) (string, error)
	cpu() cpuSample
	// batches sums the replicas' hits_batch_size histograms: hits and
	// committed batches so far (ok false if a replica did not answer).
	batches(ctx context.Context) (b batchSample, ok bool)
	stored(ctx context.Context) (int64, error)
	stopRun() error // ends this run's replicas and lb (compose keeps the project for the next run)
	close() error   // ends everything the mode started
}

// cpuSample is CPU time used so far by each part of the system.
type cpuSample struct {
	replicas, lb, postgres, redis, engine, load time.Duration
	machine                                     time.Duration
	// engine's parts (compose): shims and what they reap (healthchecks),
	// the userland proxy of the published ports, dockerd and containerd.
	shims, proxy, daemons time.Duration
}

func (s cpuSample) sub(t cpuSample) cpuSample {
	return cpuSample{
		replicas: s.replicas - t.replicas, lb: s.lb - t.lb, postgres: s.postgres - t.postgres,
		redis: s.redis - t.redis, engine: s.engine - t.engine, load: s.load - t.load, machine: s.machine - t.machine,
		shims: s.shims - t.shims, proxy: s.proxy - t.proxy, daemons: s.daemons - t.daemons,
	}
}

// batchSample is what the replicas' batchers committed so far.
type batchSample struct{ hits, batches float64 }

// result is one measured run.
type result struct {
	mode     string
	n, round int
	res      loadgen.Result
	cpu      cpuSample
	// hitsPerBatch is the replicas' mean batch over the measured run; 0 if
	// it could not be read.
	hitsPerBatch float64
	answered     int64 // 200s of warm-up and run, including the late ones
	stored       int64 // hits PostgreSQL gained
	errors       int
}

func (r result) exact() bool { return r.stored == r.answered && r.errors == 0 }

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("scalebench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o options
	var modes, ns string
	fs.StringVar(&o.app, "app", "bin/app", "app binary (native modes)")
	fs.StringVar(&o.lb, "lb", "bin/lb", "lb binary (native modes)")
	fs.StringVar(&o.root, "root", ".", "repository root (docker-compose.yml for the compose modes)")
	fs.StringVar(&o.work, "work", "out/bench-scale", "directory for logs and each run's app metrics")
	fs.StringVar(&o.chart, "chart", "docs/bench-scale.svg", "SVG chart to write; empty: none")
	fs.StringVar(&modes, "modes", "native,budget,compose", "comma-separated modes: "+strings.Join(allModes, ", ")+
		"; a mode may carry +KEY=VALUE settings for its replicas (+pg.NAME=VALUE: for PostgreSQL, native modes; +lb.KEY=VALUE: for lb; +bin=PATH: another app build, native modes), to measure variants side by side (e.g. budget,budget+GOMAXPROCS=2)")
	fs.StringVar(&ns, "n", "1,2,4,8", "replica counts, comma-separated")
	fs.IntVar(&o.concurrency, "c", 64, "keep-alive connections to lb")
	fs.DurationVar(&o.duration, "d", 8*time.Second, "measured duration of each run")
	fs.DurationVar(&o.warmup, "warmup", 2*time.Second, "load before each measured run (its 200s are checked too)")
	fs.DurationVar(&o.timeout, "timeout", 10*time.Second, "deadline of each request")
	fs.IntVar(&o.rounds, "rounds", 3, "interleaved rounds; medians are reported")
	fs.Float64Var(&o.budget, "budget", 0.1, "CPUs per replica in the budget modes (a CFS quota of budget × 100 ms per 100 ms)")
	fs.StringVar(&o.composeTarget, "compose-target", "container", "compose modes: load lb at its container address (container; what clients of other machines reach through the published port's DNAT) or at 127.0.0.1:published port (published; through Docker's userland proxy)")
	fs.BoolVar(&o.build, "build", true, "compose modes: build the app and lb images first (false: use hits-scale/app and hits-scale/lb as they are)")
	fs.Func("app-env", "extra KEY=VALUE for every replica, repeatable (e.g. GOGC=200)", func(v string) error {
		if k, _, ok := strings.Cut(v, "="); !ok || k == "" {
			return fmt.Errorf("want KEY=VALUE, got %q", v)
		}
		o.appEnv = append(o.appEnv, v)
		return nil
	})
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	for _, m := range strings.Split(modes, ",") {
		m = strings.TrimSpace(m)
		base, env := splitMode(m)
		if !slices.Contains(allModes, base) {
			return fmt.Errorf("-modes: %q is not one of %s (each optionally +KEY=VALUE for the replicas)", m, strings.Join(allModes, ", "))
		}
		for _, kv := range env {
			if k, _, ok := strings.Cut(kv, "="); !ok || k == "" {
				return fmt.Errorf("-modes: %q: want +KEY=VALUE, got +%s", m, kv)
			}
		}
		o.modes = append(o.modes, m)
	}
	for _, s := range strings.Split(ns, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 || n > 64 {
			return fmt.Errorf("-n: %q is not a replica count 1..64", s)
		}
		o.ns = append(o.ns, n)
	}
	switch {
	case o.rounds < 1 || o.rounds > 20:
		return fmt.Errorf("-rounds: %d is not 1..20", o.rounds)
	case o.budget <= 0 || o.budget > 64:
		return fmt.Errorf("-budget: %g is not a CPU count in (0, 64]", o.budget)
	case o.composeTarget != "container" && o.composeTarget != "published":
		return fmt.Errorf("-compose-target: %q is not container or published", o.composeTarget)
	case o.concurrency < 1 || o.duration <= 0 || o.warmup < 0 || o.timeout <= 0:
		return errors.New("-c, -d and -timeout must be positive, -warmup not negative")
	}
	if err := os.MkdirAll(o.work, 0o755); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	systems := map[string]system{}
	defer func() {
		for m, s := range systems {
			if err := s.close(); err != nil {
				fmt.Fprintf(stderr, "%s: close: %v\n", m, err)
			}
		}
	}()
	for _, m := range o.modes {
		fmt.Fprintf(stderr, "== preparing %s\n", m)
		var s system
		var err error
		base, env := splitMode(m)
		mo := o
		mo.appEnv = append(slices.Clone(o.appEnv), env...)
		switch base {
		case modeNative, modeBudget:
			s, err = newNative(ctx, mo, m, base == modeBudget, stderr)
		case modeCompose, modeComposeBudget:
			s, err = newCompose(ctx, mo, m, base == modeComposeBudget, stderr)
		}
		if err != nil {
			return fmt.Errorf("%s: %w", m, err)
		}
		systems[m] = s
	}

	// Interleaved: each round runs every mode at every N, so a burst of
	// other work on the machine lands on all of them alike.
	var results []result
	for round := 1; round <= o.rounds; round++ {
		for _, m := range o.modes {
			for _, n := range o.ns {
				fmt.Fprintf(stderr, "== round %d, %s, N=%d\n", round, m, n)
				r, err := measure(ctx, o, systems[m], m, n, round, stderr)
				if err != nil {
					return fmt.Errorf("%s N=%d: %w", m, n, err)
				}
				results = append(results, r)
			}
		}
	}
	rep := summarize(o, results)
	rep.print(stdout, o)
	if o.chart != "" {
		if err := os.MkdirAll(filepath.Dir(o.chart), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(o.chart, rep.svg(o), 0o644); err != nil {
			return err
		}
		fmt.Fprintf(stderr, "chart written to %s\n", o.chart)
	}
	for _, r := range results {
		if !r.exact() {
			return errors.New("a run's stored hits differ from its 200s (see the table)")
		}
	}
	return nil
}

// splitMode splits "budget+GOMAXPROCS=1+GOGC=200" into the mode and the
// replicas' extra environment: variants of one mode measured side by side.
func splitMode(m string) (string, []string) {
	parts := strings.Split(m, "+")
	return parts[0], parts[1:]
}

// measure runs one warm-up and one measured run of mode at n replicas.
func measure(ctx context.Context, o options, s system, mode string, n, round int, stderr io.Writer) (result, error) {
	url, err := s.start(ctx, n)
	if err != nil {
		return result{}, errors.Join(err, s.stopRun())
	}
	r, err := drive(ctx, o, s, url)
	r.mode, r.n, r.round = mode, n, round
	if stopErr := s.stopRun(); err == nil {
		err = stopErr
	}
	if err != nil {
		return r, err
	}
	verdict := "exact"
	if !r.exact() {
		verdict = "NOT EXACT"
	}
	fmt.Fprintf(stderr, "   %.0f hits/s, p50 %s, p99 %s, errors %d; PostgreSQL +%d for %d×200: %s; %s hits per batch; CPU per hit: replicas %s, lb %s, PostgreSQL %s; other work %s of the CPUs\n",
		r.res.PerSecond(), ms(r.res.P50), ms(r.res.P99), r.errors, r.stored, r.answered, verdict, perBatch(r.hitsPerBatch),
		perHit(r.cpu.replicas, r.res.OK), perHit(r.cpu.lb, r.res.OK), perHit(r.cpu.postgres, r.res.OK), othersShare(r.cpu, r.res.Elapsed))
	if r.cpu.engine > 0 {
		fmt.Fprintf(stderr, "   engine per hit %s: shims (and healthchecks they reaped) %s, userland proxy %s, dockerd+containerd %s\n",
			perHit(r.cpu.engine, r.res.OK), perHit(r.cpu.shims, r.res.OK), perHit(r.cpu.proxy, r.res.OK), perHit(r.cpu.daemons, r.res.OK))
	}
	return r, nil
}

func drive(ctx context.Context, o options, s system, url string) (result, error) {
	before, err := s.stored(ctx)
	if err != nil {
		return result{}, err
	}
	cfg := loadgen.Config{
		URL: url, Header: http.Header{"Accept": {"application/json"}},
		Concurrency: o.concurrency, Duration: o.warmup, Timeout: o.timeout, Drain: true,
	}
	var warm loadgen.Result
	if o.warmup > 0 {
		if warm, err = loadgen.Run(ctx, cfg); err != nil {
			return result{}, err
		}
	}
	cfg.Duration = o.duration
	// The scrapes stay outside the CPU window: rendering /metrics is work
	// the hits did not cause.
	b0, ok0 := s.batches(ctx)
	c0 := sample(s)
	m, err := loadgen.Run(ctx, cfg)
	if err != nil {
		return result{}, err
	}
	c1 := sample(s)
	b1, ok1 := s.batches(ctx)
	var meanBatch float64
	if ok0 && ok1 && b1.batches > b0.batches {
		meanBatch = (b1.hits - b0.hits) / (b1.batches - b0.batches)
	}
	if err := ctx.Err(); err != nil {
		return result{}, err
	}
	after, err := s.stored(ctx)
	if err != nil {
		return result{}, err
	}
	return result{
		res: m, cpu: c1.sub(c0), stored: after - before, hitsPerBatch: meanBatch,
		answered: int64(warm.OK + warm.LateOK + m.OK + m.LateOK),
		errors:   warm.Errors + warm.LateErrors + m.Errors + m.LateErrors,
	}, nil
}

func sample(s system) cpuSample {
	c := s.cpu()
	c.load = procstat.CPU(os.Getpid())
	c.machine = procstat.MachineBusy()
	return c
}
