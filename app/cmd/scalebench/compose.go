package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"hits/testkit"
	"hits/testkit/procstat"
)

// composed runs the system with docker compose from the repository's own
// docker-compose.yml, as a user does, in a project of its own with its own
// image tags. It loads lb at its container address, the way traffic from
// other machines reaches a published port (the kernel's DNAT), or with
// -compose-target published through 127.0.0.1, where Docker's userland
// proxy copies every byte.
type composed struct {
	o        options
	name     string // mode
	project  string
	env      []string
	envFile  string
	log      *os.File
	httpPort int
	admin    int
	pool     *pgxpool.Pool
	runs     int
	paused   bool // frozen between its runs (compose pause)

	// this run's containers' main processes
	appPIDs                 []int
	appIPs                  []string // each replica's address on the project's network
	lbPID, dbPID, cachePID  int
	shims, proxies, daemons []int
}

// imagesBuilt: every compose mode uses the same tags; build once.
// composeRuns names each mode's project.
var (
	imagesBuilt bool
	composeRuns int
)

func newCompose(ctx context.Context, o options, name string, budget bool, stderr io.Writer) (*composed, error) {
	s := &composed{o: o, name: name}
	composeRuns++
	s.project = fmt.Sprintf("hitsscale%d%c", os.Getpid(), 'a'+composeRuns)
	var err error
	var ports testkit.Ports
	if s.httpPort, err = ports.Free(); err != nil {
		return nil, err
	}
	if s.admin, err = ports.Free(); err != nil {
		return nil, err
	}
	if s.log, err = os.Create(filepath.Join(o.work, s.project+"-compose.log")); err != nil {
		return nil, err
	}
	// An empty env file: a developer's own .env must not change what is measured.
	s.envFile = filepath.Join(o.work, s.project+"-empty.env")
	if err := os.WriteFile(s.envFile, nil, 0o644); err != nil {
		return nil, err
	}
	s.env = append(os.Environ(),
		"HTTP_BIND=127.0.0.1", "HTTP_PORT="+strconv.Itoa(s.httpPort),
		"ADMIN_BIND=127.0.0.1", "ADMIN_PORT="+strconv.Itoa(s.admin),
		// Own tags, so the run never replaces images a user built.
		"APP_IMAGE=hits-scale/app:latest", "LB_IMAGE=hits-scale/lb:latest",
		"DRAIN_TIMEOUT=0s", "APP_CPUS=0")
	if budget {
		s.env = append(s.env, "APP_CPUS="+strconv.FormatFloat(o.budget, 'f', -1, 64))
	}
	for _, kv := range o.appEnv {
		kv = strings.TrimPrefix(kv, "lb.") // the compose file passes lb's settings by name too
		if k, _, _ := strings.Cut(kv, "="); !strings.Contains(mustRead(filepath.Join(o.root, "docker-compose.yml")), "${"+k+":") {
			return nil, fmt.Errorf("-app-env %s: docker-compose.yml does not pass %s to the app or lb", kv, k)
		}
		s.env = append(s.env, kv)
	}
	if !imagesBuilt && o.build {
		fmt.Fprintln(stderr, "   building the app and lb images")
		if err := s.compose(ctx, 20*time.Minute, "build"); err != nil {
			return nil, err
		}
		imagesBuilt = true
	}
	return s, nil
}

func mustRead(p string) string {
	b, _ := os.ReadFile(p)
	return string(b)
}

func (s *composed) compose(ctx context.Context, timeout time.Duration, args ...string) error {
	_, err := s.composeOut(ctx, timeout, args...)
	return err
}

func (s *composed) composeOut(ctx context.Context, timeout time.Duration, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	full := append([]string{"-p", s.project, "-f", filepath.Join(s.o.root, "docker-compose.yml"), "--env-file", s.envFile}, args...)
	cmd := exec.CommandContext(ctx, filepath.Join(s.o.root, "scripts", "compose"), full...)
	cmd.Env = s.env
	// On cancellation (Ctrl-C, SIGTERM, the timeout) end compose and its
	// children as a group: scripts/compose is a shell whose docker-compose
	// child would otherwise keep our pipes open, and Wait would never
	// return. WaitDelay bounds the wait for them anyway.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM) }
	cmd.WaitDelay = 20 * time.Second
	var out strings.Builder
	cmd.Stdout = io.MultiWriter(&out, s.log)
	cmd.Stderr = s.log
	fmt.Fprintf(s.log, "$ compose %s\n", strings.Join(full, " "))
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("compose %s: %w (log %s)", strings.Join(args, " "), err, s.log.Name())
	}
	return out.String(), nil
}

func (s *composed) start(ctx context.Context, n int) (string, error) {
	s.runs++
	if err := s.unpause(ctx); err != nil {
		return "", err
	}
	if err := s.compose(ctx, 5*time.Minute, "up", "-d", "--scale", "app="+strconv.Itoa(n)); err != nil {
		return "", err
	}
	if err := waitBackends(ctx, "http://127.0.0.1:"+strconv.Itoa(s.admin)+"/status", n, nil, 2*time.Minute); err != nil {
		return "", err
	}
	if err := s.findProcesses(ctx, n); err != nil {
		return "", err
	}
	if s.pool == nil {
		ip, err := s.containerIP(ctx, "db")
		if err != nil {
			return "", err
		}
		if s.pool, err = pgxpool.New(ctx, "postgres://hits:hits@"+ip+":5432/hits?sslmode=disable"); err != nil {
			return "", err
		}
	}
	if s.o.composeTarget == "published" {
		return "http://127.0.0.1:" + strconv.Itoa(s.httpPort) + "/", nil
	}
	ip, err := s.containerIP(ctx, "lb")
	if err != nil {
		return "", err
	}
	return "http://" + ip + ":8080/", nil
}

func (s *composed) containers(ctx context.Context, service string) ([]string, error) {
	out, err := s.composeOut(ctx, time.Minute, "ps", "-q", service)
	if err != nil {
		return nil, err
	}
	return strings.Fields(out), nil
}

func (s *composed) containerIP(ctx context.Context, service string) (string, error) {
	ids, err := s.containers(ctx, service)
	if err != nil || len(ids) == 0 {
		return "", fmt.Errorf("no %s container: %v", service, err)
	}
	ip, err := containerAddr(ctx, ids[0])
	if err != nil {
		return "", fmt.Errorf("%s: %w", service, err)
	}
	return ip, nil
}

// containerAddr is a container's address on its first network.
func containerAddr(ctx context.Context, id string) (string, error) {
	out, err := exec.CommandContext(ctx, "docker", "inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}", id).Output()
	if err != nil {
		return "", fmt.Errorf("inspect %s: %w", id, err)
	}
	f := strings.Fields(string(out))
	if len(f) == 0 {
		return "", fmt.Errorf("container %s has no address", id)
	}
	return f[0], nil
}

// batches scrapes each replica's operations port (:9090 in the container,
// never published) on the project's network.
func (s *composed) batches(ctx context.Context) (batchSample, bool) {
	var urls []string
	for _, ip := range s.appIPs {
		urls = append(urls, "http://"+ip+":9090/metrics")
	}
	return scrapeBatches(ctx, urls)
}

// findProcesses records the host PIDs of this run's containers, their
// containerd shims, the docker-proxy processes of the project's published
// ports, and the daemons.
func (s *composed) findProcesses(ctx context.Context, n int) error {
	pids := map[string][]int{}
	s.appIPs = nil
	for _, svc := range []string{"app", "lb", "db", "cache"} {
		ids, err := s.containers(ctx, svc)
		if err != nil {
			return err
		}
		for _, id := range ids {
			out, err := exec.CommandContext(ctx, "docker", "inspect", "-f", "{{.State.Pid}}", id).Output()
			if err != nil {
				return fmt.Errorf("inspect %s: %w", id, err)
			}
			pid, err := strconv.Atoi(strings.TrimSpace(string(out)))
			if err != nil || pid <= 0 {
				return fmt.Errorf("container %s has no process (%q)", id, out)
			}
			pids[svc] = append(pids[svc], pid)
			if svc == "app" {
				ip, err := containerAddr(ctx, id)
				if err != nil {
					return err
				}
				s.appIPs = append(s.appIPs, ip)
			}
		}
	}
	if len(pids["app"]) != n || len(pids["lb"]) != 1 || len(pids["db"]) != 1 || len(pids["cache"]) != 1 {
		return fmt.Errorf("want %d app, 1 lb, 1 db, 1 cache containers, have %v", n, pids)
	}
	s.appPIDs, s.lbPID, s.dbPID, s.cachePID = pids["app"], pids["lb"][0], pids["db"][0], pids["cache"][0]
	s.shims, s.proxies, s.daemons = nil, nil, nil
	for _, list := range pids {
		for _, p := range list {
			if pp := parentOf(p); pp > 0 {
				s.shims = append(s.shims, pp)
			}
		}
	}
	ports := []string{strconv.Itoa(s.httpPort), strconv.Itoa(s.admin)}
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	for _, d := range dirs {
		pid, _ := strconv.Atoi(filepath.Base(d))
		comm, _ := os.ReadFile(filepath.Join(d, "comm"))
		switch strings.TrimSpace(string(comm)) {
		case "dockerd", "containerd":
			s.daemons = append(s.daemons, pid)
		case "docker-proxy":
			cmdline, _ := os.ReadFile(filepath.Join(d, "cmdline"))
			args := strings.Split(string(cmdline), "\x00")
			for i := 0; i+1 < len(args); i++ {
				if args[i] == "-host-port" && (args[i+1] == ports[0] || args[i+1] == ports[1]) {
					s.proxies = append(s.proxies, pid)
				}
			}
		}
	}
	return nil
}

func parentOf(pid int) int {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	st := string(b)
	i := strings.LastIndexByte(st, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(st[i+1:])
	if len(f) < 2 {
		return 0
	}
	pp, _ := strconv.Atoi(f[1])
	return pp
}

func (s *composed) cpu() cpuSample {
	var c cpuSample
	for _, p := range s.appPIDs {
		c.replicas += procstat.CPU(p)
	}
	c.lb = procstat.CPU(s.lbPID)
	c.postgres = procstat.WithChildren(s.dbPID)
	c.redis = procstat.CPU(s.cachePID)
	// The engine: the shims (and the healthcheck processes they reaped),
	// the userland proxy behind the published port, and the daemons, which
	// other users of the engine share.
	for _, p := range s.shims {
		c.shims += procstat.SelfAndReaped(p)
	}
	for _, p := range s.proxies {
		c.proxy += procstat.SelfAndReaped(p)
	}
	for _, p := range s.daemons {
		c.daemons += procstat.SelfAndReaped(p)
	}
	c.engine = c.shims + c.proxy + c.daemons
	return c
}

func (s *composed) stored(ctx context.Context) (int64, error) {
	if s.pool == nil {
		return 0, errors.New("not started")
	}
	return storedHits(ctx, s.pool)
}

// stopRun keeps the project for the next run, which scales it to its own
// N, but freezes it (the cgroup freezer, `compose pause`) so that its idle
// containers, lb's health checks of up to 8 replicas and the engine's
// healthchecks take no CPU from the other modes' runs in between.
func (s *composed) stopRun() error {
	if err := s.compose(context.Background(), time.Minute, "pause"); err != nil {
		return err
	}
	s.paused = true
	return nil
}

func (s *composed) unpause(ctx context.Context) error {
	if !s.paused {
		return nil
	}
	if err := s.compose(ctx, time.Minute, "unpause"); err != nil {
		return err
	}
	s.paused = false
	// The engine kept running the databases' healthchecks while they were
	// frozen, so they may be marked unhealthy, and `up` refuses to start a
	// replica whose dependencies are. Their next check (every 2 s) passes.
	return s.waitHealthy(ctx, time.Minute, "db", "cache")
}

// waitHealthy waits until the services' containers report healthy.
func (s *composed) waitHealthy(ctx context.Context, timeout time.Duration, services ...string) error {
	for _, svc := range services {
		ids, err := s.containers(ctx, svc)
		if err != nil || len(ids) == 0 {
			return fmt.Errorf("no %s container: %v", svc, err)
		}
		err = poll(ctx, svc+" healthy after unpausing", nil, timeout, func(ctx context.Context) (bool, error) {
			out, err := exec.CommandContext(ctx, "docker", "inspect", "-f", "{{.State.Health.Status}}", ids[0]).Output()
			status := strings.TrimSpace(string(out))
			return err == nil && status == "healthy", fmt.Errorf("status %q, %v", status, err)
		})
		if err != nil {
			return err
		}
	}
	return nil
}

func (s *composed) close() error {
	if s.pool != nil {
		s.pool.Close()
	}
	err := s.unpause(context.Background())
	err = errors.Join(err, s.compose(context.Background(), 5*time.Minute, "down", "-v", "--remove-orphans"))
	s.log.Close()
	return err
}
