//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"hits/testkit"
)

// project is one compose project under a unique name, so a run never touches
// the user's own `docker compose up` or another run's containers.
type project struct {
	t         *testing.T
	root      string // repository root: the compose file and Dockerfiles
	name      string
	out       string // directory for logs and artefacts
	env       map[string]string
	httpPort  int
	adminPort int
	log       *os.File
	emptyEnv  string // passed as --env-file
	// extraFiles are compose files layered over docker-compose.yml from
	// the step that adds them on (the HTTPS step's certificate mount).
	extraFiles []string
}

func newProject(t *testing.T, root, out string) *project {
	t.Helper()
	name := fmt.Sprintf("hitse2e%d", time.Now().UnixNano()%1e9)
	httpPort, adminPort := testkit.Port(t), testkit.Port(t)
	logf, err := os.Create(filepath.Join(out, "compose.log"))
	if err != nil {
		t.Fatalf("create compose log: %v", err)
	}
	t.Cleanup(func() { logf.Close() })
	// An empty env file: a developer's own .env must not change what is tested.
	emptyEnv := filepath.Join(out, "empty.env")
	if err := os.WriteFile(emptyEnv, nil, 0o644); err != nil {
		t.Fatalf("write empty env file: %v", err)
	}
	p := &project{
		t: t, root: root, name: name, out: out, log: logf,
		httpPort: httpPort, adminPort: adminPort,
		env: map[string]string{
			"HTTP_BIND":  "127.0.0.1",
			"HTTP_PORT":  strconv.Itoa(httpPort),
			"ADMIN_BIND": "127.0.0.1",
			"ADMIN_PORT": strconv.Itoa(adminPort),
			// Own tags, so the run never replaces images a user built.
			"APP_IMAGE": "hits-e2e/app:latest",
			"LB_IMAGE":  "hits-e2e/lb:latest",
		},
	}
	// Several runs on one engine (people working side by side) each need
	// their own images: E2E_IMAGE_TAG replaces "latest".
	if tag := os.Getenv("E2E_IMAGE_TAG"); tag != "" {
		p.env["APP_IMAGE"] = "hits-e2e/app:" + tag
		p.env["LB_IMAGE"] = "hits-e2e/lb:" + tag
	}
	for _, k := range []string{"POSTGRES_IMAGE", "REDIS_IMAGE", "GO_IMAGE"} {
		if v := os.Getenv(k); v != "" {
			p.env[k] = v
		}
	}
	p.emptyEnv = emptyEnv
	return p
}

// compose runs scripts/compose (Compose v2 when installed, else docker-compose)
// for this project and returns its combined output.
func (p *project) compose(ctx context.Context, args ...string) (string, error) {
	full := []string{"-p", p.name, "-f", filepath.Join(p.root, "docker-compose.yml")}
	for _, f := range p.extraFiles {
		full = append(full, "-f", f)
	}
	full = append(append(full, "--env-file", p.emptyEnv), args...)
	cmd := exec.CommandContext(ctx, filepath.Join(p.root, "scripts", "compose"), full...)
	cmd.Dir = p.root
	cmd.Env = os.Environ()
	for k, v := range p.env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	var buf bytes.Buffer
	cmd.Stdout, cmd.Stderr = &buf, &buf
	start := time.Now()
	fmt.Fprintf(p.log, "\n=== %s compose %s\n", start.Format(time.TimeOnly), strings.Join(args, " "))
	err := cmd.Run()
	p.log.Write(buf.Bytes())
	fmt.Fprintf(p.log, "=== %s (%v) err=%v\n", time.Since(start).Round(time.Millisecond), err, err)
	if err != nil {
		return buf.String(), fmt.Errorf("compose %s: %w\n%s", strings.Join(args, " "), err, tail(buf.String(), 40))
	}
	return buf.String(), nil
}

// mustCompose is compose with a deadline that fails the test on error.
func (p *project) mustCompose(timeout time.Duration, args ...string) string {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	out, err := p.compose(ctx, args...)
	if err != nil {
		p.t.Fatal(err)
	}
	return out
}

// down removes everything the project made; it runs even when a step failed,
// after saving the containers' logs for the post-mortem.
func (p *project) down() {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if logs, err := p.compose(ctx, "logs", "--no-color", "--timestamps"); err == nil {
		os.WriteFile(filepath.Join(p.out, "containers.log"), []byte(logs), 0o644)
	}
	if _, err := p.compose(ctx, "down", "-v", "--remove-orphans", "--timeout", "20"); err != nil {
		p.t.Errorf("cleanup: %v", err)
	}
}

// leftovers lists containers, networks and volumes still labelled with the project.
func (p *project) leftovers(ctx context.Context) ([]string, error) {
	var all []string
	for _, kind := range []string{"container", "network", "volume"} {
		args := []string{kind, "ls", "-q", "--filter", "label=com.docker.compose.project=" + p.name}
		if kind == "container" {
			args = []string{"ps", "-aq", "--filter", "label=com.docker.compose.project=" + p.name}
		}
		out, err := exec.CommandContext(ctx, "docker", args...).CombinedOutput()
		if err != nil {
			return nil, fmt.Errorf("docker %s: %w: %s", strings.Join(args, " "), err, out)
		}
		for _, id := range strings.Fields(string(out)) {
			all = append(all, kind+" "+id)
		}
	}
	return all, nil
}

// containerIDs returns the IDs of the running containers of one service.
func (p *project) containerIDs(service string) []string {
	p.t.Helper()
	return strings.Fields(p.mustCompose(time.Minute, "ps", "-q", service))
}

// psql runs one query in the db container and returns its unaligned output.
func (p *project) psql(ctx context.Context, query string) (string, error) {
	out, err := p.compose(ctx, "exec", "-T", "db", "psql", "-U", "hits", "-d", "hits", "-Atqc", query)
	return strings.TrimSpace(out), err
}

func (p *project) baseURL() string  { return fmt.Sprintf("http://127.0.0.1:%d", p.httpPort) }
func (p *project) adminURL() string { return fmt.Sprintf("http://127.0.0.1:%d", p.adminPort) }

// backendStatus is the part of the balancer's admin /status the tests read.
type backendStatus struct {
	Address  string `json:"address"`
	Name     string `json:"name"`    // from the replica's X-App-Instance
	Version  string `json:"version"` // from its X-App-Version
	Healthy  bool   `json:"healthy"`
	InFlight int64  `json:"in_flight"`
	Requests int64  `json:"requests"`
	Failures int64  `json:"failures"`
	// SlowStart is set while the backend ramps up after joining (LB_SLOW_START).
	SlowStart *float64 `json:"slow_start"`
}

type lbStatus struct {
	Algorithm string          `json:"algorithm"`
	Backends  []backendStatus `json:"backends"`
}

func (s lbStatus) healthy() []string {
	var addrs []string
	for _, b := range s.Backends {
		if b.Healthy {
			addrs = append(addrs, b.Address)
		}
	}
	sort.Strings(addrs)
	return addrs
}

func (s lbStatus) ramping() bool {
	for _, b := range s.Backends {
		if b.SlowStart != nil {
			return true
		}
	}
	return false
}

func (p *project) status(ctx context.Context) (lbStatus, error) {
	var s lbStatus
	return s, p.getStatus(ctx, &s)
}

// getStatus decodes lb's /status into v, whatever fields a test needs of it.
func (p *project) getStatus(ctx context.Context, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.adminURL()+"/status", nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET /status: %s", resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

// waitHealthy waits until the balancer reports exactly n healthy backends,
// none of them still in slow start (so shares are exact again).
func (p *project) waitHealthy(n int, timeout time.Duration) time.Duration {
	p.t.Helper()
	start := time.Now()
	var last lbStatus
	var lastErr error
	waitFor(p.t, timeout, fmt.Sprintf("%d healthy backends in lb /status", n), func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		last, lastErr = p.status(ctx)
		return lastErr == nil && len(last.healthy()) == n && len(last.Backends) == n && !last.ramping()
	}, func() string { return fmt.Sprintf("last status %+v, error %v", last, lastErr) })
	return time.Since(start)
}

// waitFor polls cond every 100ms (each check may run docker) until it
// holds or the deadline passes, then fails the test with what and the state
// describe returns.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool, describe func() string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	err := testkit.Poll(ctx, 100*time.Millisecond, func(context.Context) error {
		if cond() {
			return nil
		}
		return errNotYet
	})
	if err != nil {
		t.Fatalf("waited %v for %s; %s", timeout, what, describe())
	}
}

var errNotYet = errors.New("not yet")

func tail(s string, lines int) string {
	parts := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(parts) > lines {
		parts = parts[len(parts)-lines:]
	}
	return strings.Join(parts, "\n")
}

// appLog returns the replicas' log lines since since that contain substr
// (the last 40 of them), to show with a failing assertion.
func (p *project) appLog(since time.Time, substr string) string {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := p.compose(ctx, "logs", "--no-color", "app")
	if err != nil {
		return fmt.Sprintf("(compose logs app: %v)", err)
	}
	var lines []string
	for l := range strings.Lines(out) {
		if !strings.Contains(l, substr) {
			continue
		}
		// Each line is "<container> | {json}"; keep those from since on.
		var rec struct {
			Time time.Time `json:"time"`
		}
		if i := strings.IndexByte(l, '{'); i >= 0 && json.Unmarshal([]byte(l[i:]), &rec) == nil && rec.Time.Before(since) {
			continue
		}
		lines = append(lines, strings.TrimRight(l, "\n"))
	}
	if len(lines) > 40 {
		lines = lines[len(lines)-40:]
	}
	if len(lines) == 0 {
		return "(none)"
	}
	return strings.Join(lines, "\n")
}
