// Command benchlb measures lb beside nginx and HAProxy: all three balance
// round robin over the same four loopback backends with keep-alive, wrk
// drives each in interleaved rounds, and a Markdown table of medians is
// printed. Every process it starts is stopped by PID when it ends.
//
//	benchlb -lb bin/lb -backend bin/benchbackend -rounds 3 -duration 10s
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"hits/testkit"
	"hits/testkit/procstat"
	"io"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchlb:", err)
		os.Exit(1)
	}
}

type options struct {
	lb, backend, work string
	rounds            int
	duration          time.Duration
	conns             []int
	threads           int
	profile           string
	only              string
	lbEnv             []string
	variants          []string // extra lb runs, each with one more NAME=value, or bin=path for another binary
	dashboards        int      // if > 0, an extra lb row with this many dashboards polling it
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("benchlb", flag.ContinueOnError)
	var o options
	var conns string
	fs.StringVar(&o.lb, "lb", "bin/lb", "lb binary")
	fs.StringVar(&o.backend, "backend", "bin/benchbackend", "backend binary")
	fs.StringVar(&o.work, "work", "out/bench-lb", "directory for configs and logs")
	fs.IntVar(&o.rounds, "rounds", 3, "interleaved rounds")
	fs.DurationVar(&o.duration, "duration", 10*time.Second, "length of one wrk run")
	fs.StringVar(&conns, "conns", "64,256", "wrk connection counts")
	fs.IntVar(&o.threads, "threads", 2, "wrk threads")
	fs.StringVar(&o.profile, "profile", "", "if set, write a CPU profile of lb taken during an extra c=64 run to this file")
	fs.StringVar(&o.only, "only", "", "comma-separated subset of proxies (lb,nginx,haproxy)")
	lbEnv := fs.String("lb-env", "", "extra environment for lb only, space-separated NAME=value (e.g. GOMAXPROCS=1)")
	variants := fs.String("variants", "", "comma-separated NAME=value: also run lb with each, as its own row (e.g. GOMAXPROCS=1); bin=path runs another lb binary instead")
	fs.IntVar(&o.dashboards, "dashboards", 0, "if > 0, also run lb with this many live dashboards open (each polls /stats every second, as the page does), as its own row")
	if err := fs.Parse(args); err != nil {
		return err
	}
	o.lbEnv = strings.Fields(*lbEnv)
	if *variants != "" {
		o.variants = strings.Split(*variants, ",")
	}
	for _, c := range strings.Split(conns, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(c))
		if err != nil || n <= 0 {
			return fmt.Errorf("-conns %q: want positive integers", conns)
		}
		o.conns = append(o.conns, n)
	}
	if o.rounds < 1 || o.duration <= 0 {
		return errors.New("-rounds and -duration must be positive")
	}
	if err := os.MkdirAll(o.work, 0o755); err != nil {
		return err
	}
	procs := &procSet{}
	defer procs.stopAll()

	var backends []string
	for i := range 4 {
		addr, err := procs.startBackend(ctx, o, i)
		if err != nil {
			return err
		}
		backends = append(backends, addr)
	}
	fmt.Fprintf(stderr, "backends: %s\n", strings.Join(backends, " "))

	var proxies []*proxy
	for _, name := range []string{"nginx", "haproxy", "lb"} {
		if o.only != "" && !slices.Contains(strings.Split(o.only, ","), name) {
			continue
		}
		p, err := procs.startProxy(ctx, o, name, backends, nil)
		if err != nil {
			return fmt.Errorf("start %s: %w", name, err)
		}
		proxies = append(proxies, p)
	}
	for _, v := range o.variants {
		vo, env := o, []string{v}
		if bin, ok := strings.CutPrefix(v, "bin="); ok {
			// Another lb build, e.g. the one before a change, so old and
			// new are measured interleaved in one run.
			vo.lb, env = bin, []string{"LB_VARIANT=" + filepath.Base(bin)}
		}
		p, err := procs.startProxy(ctx, vo, "lb", backends, env)
		if err != nil {
			return fmt.Errorf("start lb %s: %w", v, err)
		}
		p.name = "lb " + v
		proxies = append(proxies, p)
	}
	if o.dashboards > 0 {
		// Its own lb process, configured like the plain one (lb ignores
		// the variable; it only names the logs).
		p, err := procs.startProxy(ctx, o, "lb", backends, []string{"DASHBOARDS=" + strconv.Itoa(o.dashboards)})
		if err != nil {
			return fmt.Errorf("start lb for dashboards: %w", err)
		}
		p.name = fmt.Sprintf("lb + %d dashboards", o.dashboards)
		p.dashboards = o.dashboards
		proxies = append(proxies, p)
	}
	for _, p := range proxies {
		if err := waitServing(ctx, p.url); err != nil {
			return fmt.Errorf("%s not serving: %w (see %s)", p.name, err, o.work)
		}
	}

	results := map[string][]result{} // name/conns -> rounds
	for round := 1; round <= o.rounds; round++ {
		for _, c := range o.conns {
			for _, p := range rotate(proxies, round) {
				if err := ctx.Err(); err != nil {
					return err
				}
				r, err := measure(ctx, o, p, c)
				if err != nil {
					return fmt.Errorf("round %d %s c=%d: %w", round, p.name, c, err)
				}
				fmt.Fprintf(stderr, "round %d %-8s c=%-4d %8.0f req/s  p50 %-8v p99 %-8v cpu %5.1f us/req (user %.1f sys %.1f, %.2f reads %.2f writes)  errors %d\n",
					round, p.name, c, r.rps, roundDur(r.p50), roundDur(r.p99), r.cpuPerReq, r.userPerReq, r.sysPerReq, r.readsPerReq, r.writesPerReq, r.errors)
				key := p.name + "/" + strconv.Itoa(c)
				results[key] = append(results[key], r)
			}
		}
	}
	printTable(stdout, o, proxies, results)

	if o.profile != "" {
		for _, p := range proxies {
			if p.name == "lb" { // the default build, not a variant
				if err := profile(ctx, o, p); err != nil {
					return fmt.Errorf("profile: %w", err)
				}
				fmt.Fprintf(stderr, "wrote %s\n", o.profile)
			}
		}
	}
	return nil
}

// rotate changes who goes first each round so no proxy always runs on a
// machine warmed (or tired) by the one before.
func rotate(ps []*proxy, round int) []*proxy {
	out := make([]*proxy, 0, len(ps))
	for i := range ps {
		out = append(out, ps[(i+round)%len(ps)])
	}
	return out
}

type result struct {
	rps, cpuPerReq float64
	// Where the CPU went, per request: user and system time, and the
	// read and write system calls the kernel counted (/proc/<pid>/io).
	userPerReq, sysPerReq, readsPerReq, writesPerReq float64
	p50, p99                                         time.Duration
	requests                                         int64
	errors                                           int64
}

var (
	reqRe     = regexp.MustCompile(`(\d+) requests in`)
	rpsRe     = regexp.MustCompile(`Requests/sec:\s+([\d.]+)`)
	pctRe     = regexp.MustCompile(`(?m)^\s+(50|99)(?:\.000)?%\s+([\d.]+)(us|ms|s)`)
	non2xxRe  = regexp.MustCompile(`Non-2xx or 3xx responses: (\d+)`)
	socketRe  = regexp.MustCompile(`Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)`)
	clockTick = 100.0 // USER_HZ on Linux
)

func measure(ctx context.Context, o options, p *proxy, conns int) (result, error) {
	before, err := p.usage()
	if err != nil {
		return result{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, o.duration+30*time.Second)
	defer cancel()
	var polls atomic.Int64
	if p.dashboards > 0 {
		dctx, stop := context.WithCancel(ctx)
		var wg sync.WaitGroup
		for range p.dashboards {
			wg.Go(func() { watchDashboard(dctx, p.admin, &polls) })
		}
		defer func() {
			stop()
			wg.Wait()
			fmt.Fprintf(os.Stderr, "%s: %d dashboard polls\n", p.name, polls.Load())
		}()
	}
	cmd := exec.CommandContext(ctx, "wrk", "-t"+strconv.Itoa(o.threads), "-c"+strconv.Itoa(conns), "-d"+o.duration.String(), "--latency", p.url)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return result{}, fmt.Errorf("wrk: %w: %s", err, out)
	}
	after, err := p.usage()
	if err != nil {
		return result{}, err
	}
	r, err := parseWrk(string(out), after.user+after.sys-before.user-before.sys)
	if err == nil && r.requests > 0 {
		n := float64(r.requests)
		r.userPerReq = (after.user - before.user) / clockTick * 1e6 / n
		r.sysPerReq = (after.sys - before.sys) / clockTick * 1e6 / n
		r.readsPerReq = (after.reads - before.reads) / n
		r.writesPerReq = (after.writes - before.writes) / n
	}
	return r, err
}

func parseWrk(out string, ticks float64) (result, error) {
	var r result
	m := reqRe.FindStringSubmatch(out)
	if m == nil {
		return r, fmt.Errorf("no request count in wrk output: %s", out)
	}
	r.requests, _ = strconv.ParseInt(m[1], 10, 64)
	if m = rpsRe.FindStringSubmatch(out); m != nil {
		r.rps, _ = strconv.ParseFloat(m[1], 64)
	}
	for _, pm := range pctRe.FindAllStringSubmatch(out, -1) {
		v, _ := strconv.ParseFloat(pm[2], 64)
		unit := map[string]time.Duration{"us": time.Microsecond, "ms": time.Millisecond, "s": time.Second}[pm[3]]
		d := time.Duration(v * float64(unit))
		if pm[1] == "50" {
			r.p50 = d
		} else {
			r.p99 = d
		}
	}
	if m = non2xxRe.FindStringSubmatch(out); m != nil {
		n, _ := strconv.ParseInt(m[1], 10, 64)
		r.errors += n
	}
	if m = socketRe.FindStringSubmatch(out); m != nil {
		for _, s := range m[1:] {
			n, _ := strconv.ParseInt(s, 10, 64)
			r.errors += n
		}
	}
	if r.requests > 0 {
		r.cpuPerReq = ticks / clockTick * 1e6 / float64(r.requests)
	}
	return r, nil
}

func printTable(w io.Writer, o options, proxies []*proxy, results map[string][]result) {
	fmt.Fprintf(w, "\n| proxy | conns | req/s (median) | × nginx | p50 | p99 | p99 × nginx | CPU µs/request | user µs | sys µs | reads/req | writes/req | errors |\n")
	fmt.Fprintf(w, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, c := range o.conns {
		base := results["nginx/"+strconv.Itoa(c)]
		for _, p := range proxies {
			rs := results[p.name+"/"+strconv.Itoa(c)]
			var rps, cpu, user, sys, reads, writes []float64
			var p50, p99 []time.Duration
			var errs int64
			for _, r := range rs {
				rps = append(rps, r.rps)
				cpu = append(cpu, r.cpuPerReq)
				user, sys = append(user, r.userPerReq), append(sys, r.sysPerReq)
				reads, writes = append(reads, r.readsPerReq), append(writes, r.writesPerReq)
				p50 = append(p50, r.p50)
				p99 = append(p99, r.p99)
				errs += r.errors
			}
			ratio, p99ratio := "-", "-"
			if len(base) > 0 {
				var brps []float64
				var bp99 []time.Duration
				for _, r := range base {
					brps = append(brps, r.rps)
					bp99 = append(bp99, r.p99)
				}
				ratio = fmt.Sprintf("%.2f", testkit.Median(rps)/testkit.Median(brps))
				p99ratio = fmt.Sprintf("%.2f", float64(testkit.Median(p99))/float64(testkit.Median(bp99)))
			}
			fmt.Fprintf(w, "| %s | %d | %.0f | %s | %v | %v | %s | %.1f | %.1f | %.1f | %.2f | %.2f | %d |\n",
				p.name, c, testkit.Median(rps), ratio, roundDur(testkit.Median(p50)), roundDur(testkit.Median(p99)), p99ratio, testkit.Median(cpu),
				testkit.Median(user), testkit.Median(sys), testkit.Median(reads), testkit.Median(writes), errs)
		}
	}
	fmt.Fprintf(w, "\n%d interleaved rounds of `wrk -t%d -c<conns> -d%v --latency`; medians over rounds; errors are non-2xx plus socket errors summed over rounds.\n",
		o.rounds, o.threads, o.duration)
}

func roundDur(d time.Duration) time.Duration {
	if d < time.Millisecond {
		return d.Round(time.Microsecond)
	}
	return d.Round(10 * time.Microsecond)
}

// profile takes a 10s CPU profile of lb through its admin pprof endpoint
// while wrk runs at the first -conns value.
func profile(ctx context.Context, o options, p *proxy) error {
	errc := make(chan error, 1)
	go func() {
		_, err := measure(ctx, o, p, o.conns[0])
		errc <- err
	}()
	pctx, cancel := context.WithTimeout(ctx, o.duration+20*time.Second)
	defer cancel()
	secs := int(o.duration.Seconds()) - 1
	req, err := http.NewRequestWithContext(pctx, http.MethodGet, p.admin+"/debug/pprof/profile?seconds="+strconv.Itoa(max(secs, 1)), nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	f, err := os.Create(o.profile)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return <-errc
}

func waitServing(ctx context.Context, url string) error {
	deadline := time.Now().Add(15 * time.Second)
	client := &http.Client{Timeout: time.Second}
	var last error
	for time.Now().Before(deadline) {
		if err := ctx.Err(); err != nil {
			return err
		}
		resp, err := client.Get(url)
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return nil
			}
			err = fmt.Errorf("status %d", resp.StatusCode)
		}
		last = err
		time.Sleep(100 * time.Millisecond)
	}
	return last
}

// proxy is one balancer under test.
type proxy struct {
	name, url, admin string
	cmd              *exec.Cmd
	dashboards       int // dashboards polling it while it is measured
}

// watchDashboard does what one open lb dashboard does: it loads the page,
// then asks /stats for what is new once a second, until ctx ends.
func watchDashboard(ctx context.Context, admin string, polls *atomic.Int64) {
	client := &http.Client{Timeout: 2 * time.Second}
	get := func(url string) []byte {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return nil
		}
		resp, err := client.Do(req)
		if err != nil {
			return nil
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return b
	}
	get(admin + "/")
	var since int64
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		var live struct {
			History struct {
				To int64 `json:"to"`
			} `json:"history"`
		}
		if b := get(admin + "/stats?since=" + strconv.FormatInt(since, 10)); b != nil && json.Unmarshal(b, &live) == nil {
			polls.Add(1)
			if live.History.To > 0 {
				since = live.History.To
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// usage is what a proxy's processes used so far: user and system time
// in clock ticks, and read and write system calls.
type usage struct{ user, sys, reads, writes float64 }

// usage sums the proxy's process and its children (nginx's workers).
func (p *proxy) usage() (usage, error) {
	pids := []int{p.cmd.Process.Pid}
	pids = append(pids, procstat.Children(p.cmd.Process.Pid)...)
	var total usage
	for _, pid := range pids {
		u, err := procUsage(pid)
		if err != nil {
			return usage{}, err
		}
		total.user += u.user
		total.sys += u.sys
		total.reads += u.reads
		total.writes += u.writes
	}
	return total, nil
}

func procUsage(pid int) (usage, error) {
	u, err := procstat.Of(pid)
	if err != nil {
		return usage{}, err
	}
	return usage{user: u.User.Seconds() * clockTick, sys: u.System.Seconds() * clockTick, reads: float64(u.Reads), writes: float64(u.Writes)}, nil
}

// procSet owns every process the benchmark starts.
type procSet struct {
	procs []*testkit.Process
}

func (ps *procSet) start(ctx context.Context, logPath string, name string, args []string, env []string) (*exec.Cmd, io.ReadCloser, error) {
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), env...)
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, nil, err
	}
	cmd.Stderr = logf
	out, err := cmd.StdoutPipe()
	if err != nil {
		logf.Close()
		return nil, nil, err
	}
	run, err := testkit.Start(cmd, "")
	if err != nil {
		logf.Close()
		return nil, nil, err
	}
	go func() { <-run.Exited(); logf.Close() }()
	ps.procs = append(ps.procs, run)
	return cmd, out, nil
}

// stopAll sends SIGTERM to each process it started, by PID, newest first,
// and waits; SIGKILL after 5 seconds.
func (ps *procSet) stopAll() {
	for i := len(ps.procs) - 1; i >= 0; i-- {
		ps.procs[i].Stop(syscall.SIGTERM, 5*time.Second)
	}
}

func (ps *procSet) startBackend(ctx context.Context, o options, i int) (string, error) {
	_, out, err := ps.start(ctx, filepath.Join(o.work, fmt.Sprintf("backend%d.log", i)), o.backend,
		[]string{"-addr", "127.0.0.1:0", "-name", strconv.Itoa(i)}, nil)
	if err != nil {
		return "", err
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		return "", fmt.Errorf("backend %d did not report its address: %w", i, err)
	}
	go io.Copy(io.Discard, out)
	return strings.TrimSpace(line), nil
}

func (ps *procSet) startProxy(ctx context.Context, o options, name string, backends []string, extraEnv []string) (*proxy, error) {
	var ports testkit.Ports // the proxy's port and lb's admin port differ
	port, err := ports.Free()
	if err != nil {
		return nil, err
	}
	p := &proxy{name: name, url: fmt.Sprintf("http://127.0.0.1:%d/", port)}
	work, _ := filepath.Abs(o.work)
	var cmd *exec.Cmd
	var out io.ReadCloser
	switch name {
	case "nginx":
		var ups strings.Builder
		for _, b := range backends {
			fmt.Fprintf(&ups, "    server %s;\n", b)
		}
		conf := fmt.Sprintf(`daemon off;
worker_processes auto;
pid %[1]s/nginx.pid;
error_log %[1]s/nginx-error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path %[1]s/nginx-body;
  proxy_temp_path %[1]s/nginx-proxy;
  fastcgi_temp_path %[1]s/nginx-fastcgi;
  uwsgi_temp_path %[1]s/nginx-uwsgi;
  scgi_temp_path %[1]s/nginx-scgi;
  upstream backends {
%[2]s    keepalive 256;
  }
  server {
    listen 127.0.0.1:%[3]d;
    location / {
      proxy_pass http://backends;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
}
`, work, ups.String(), port)
		path := filepath.Join(work, "nginx.conf")
		if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
			return nil, err
		}
		cmd, out, err = ps.start(ctx, filepath.Join(work, "nginx.log"), "nginx", []string{"-c", path, "-p", work}, nil)
	case "haproxy":
		var srv strings.Builder
		for i, b := range backends {
			fmt.Fprintf(&srv, "  server s%d %s\n", i, b)
		}
		conf := fmt.Sprintf(`global
  nbthread 2
  maxconn 4000
defaults
  mode http
  timeout connect 5s
  timeout client 30s
  timeout server 30s
  option http-keep-alive
  http-reuse always
frontend f
  bind 127.0.0.1:%d
  default_backend b
backend b
  balance roundrobin
%s`, port, srv.String())
		path := filepath.Join(work, "haproxy.cfg")
		if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
			return nil, err
		}
		cmd, out, err = ps.start(ctx, filepath.Join(work, "haproxy.log"), "haproxy", []string{"-f", path, "-db"}, nil)
	case "lb":
		aport, perr := ports.Free()
		if perr != nil {
			return nil, perr
		}
		p.admin = fmt.Sprintf("http://127.0.0.1:%d", aport)
		logName := "lb" + strings.ReplaceAll(strings.Join(extraEnv, "_"), "=", "-")
		cmd, out, err = ps.start(ctx, filepath.Join(work, logName+".log"), o.lb, nil, append([]string{
			"LB_BACKENDS=" + strings.Join(backends, ","),
			fmt.Sprintf("LB_ADDR=127.0.0.1:%d", port),
			fmt.Sprintf("LB_ADMIN_ADDR=127.0.0.1:%d", aport),
			"LB_ALGORITHM=round_robin",
			"LB_ACCESS_LOG=false",
			"LB_PPROF=" + strconv.FormatBool(o.profile != ""),
		}, append(o.lbEnv, extraEnv...)...))
	}
	if err != nil {
		return nil, err
	}
	logf, err := os.Create(filepath.Join(work, name+strings.ReplaceAll(strings.Join(extraEnv, "_"), "=", "-")+".out"))
	if err != nil {
		return nil, err
	}
	go func() { io.Copy(logf, out); logf.Close() }()
	p.cmd = cmd
	return p, nil
}
