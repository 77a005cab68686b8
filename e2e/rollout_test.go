//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestRollout is issue 11's "done when": three v1 replicas under continuous
// load; a rollout whose new replicas cannot reach PostgreSQL fails and
// changes nothing users see; `make rollout` (scripts/rollout) to v2 then
// replaces all three with no failed request, and afterwards exactly three
// v2 replicas answer and lb lists only them.
func TestRollout(t *testing.T) {
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(root, "out", "e2e", "rollout")
	if err := os.MkdirAll(out, 0o755); err != nil {
		t.Fatal(err)
	}
	p := newProject(t, root, out)
	// Own tags, so this run and TestSystem never replace each other's images.
	p.env["APP_IMAGE"] = "hits-e2e/rollout-app:latest"
	p.env["APP_VERSION"] = "v1"
	rep := &report{}
	t.Cleanup(func() {
		p.down()
		text := strings.Join(rep.lines, "\n")
		os.WriteFile(filepath.Join(out, "report.txt"), []byte(text+"\n"), 0o644)
		fmt.Printf("\n==== rollout report (out/e2e/rollout/report.txt) ====\n%s\n", text)
	})
	start := time.Now()
	args := []string{"up", "-d", "--build", "--scale", "app=3"}
	if os.Getenv("E2E_NO_BUILD") != "" {
		args = []string{"up", "-d", "--scale", "app=3"}
	}
	p.mustCompose(20*time.Minute, args...)
	p.waitHealthy(3, 2*time.Minute)
	rep.add("up --scale app=3 (APP_VERSION=v1): %v", time.Since(start).Round(time.Second))
	h := newHitter(p.baseURL(), 16)
	t.Cleanup(h.close)
	v1 := p.containerIDs("app")
	others := map[string]string{}
	for _, svc := range []string{"db", "cache", "lb"} {
		others[svc] = strings.Join(p.containerIDs(svc), ",")
	}
	checkVersions(t, h, 3, "v1")

	t.Run("bad_password_fails_and_changes_nothing", func(t *testing.T) {
		before := durableTotal(t, p)
		l := startLoad(h, 4, 10*time.Minute, 1_000_000)
		waitLoad(t, l, 50)
		start := time.Now()
		outText, err := p.rollout(15*time.Minute, "APP_VERSION=v2", "POSTGRES_PASSWORD=not-the-password", "ROLLOUT_TIMEOUT=30")
		took := time.Since(start)
		waitLoad(t, l, l.count()+50)
		res := l.stop()
		after := durableTotal(t, p)
		rep.add("rollout with a bad POSTGRES_PASSWORD: %v, exit %v; under 4-worker load %d requests, %d failed, PostgreSQL +%d for %d×200",
			took.Round(time.Second), err, len(res.outcomes), len(res.failed()), after-before, res.ok())
		if err == nil {
			t.Fatalf("rollout with a bad password exited 0; want non-zero\n%s", tail(outText, 20))
		}
		if !strings.Contains(outText, "did not become ready") || !strings.Contains(outText, "password authentication failed") {
			t.Errorf("rollout's output does not say why it failed:\n%s", tail(outText, 30))
		}
		if f := res.failed(); len(f) > 0 {
			t.Errorf("%d requests failed during the failed rollout, want 0:%s", len(f), describeFailures(f))
		}
		if after-before != int64(res.ok()) {
			t.Errorf("PostgreSQL total rose by %d, want %d (the number of 200s)", after-before, res.ok())
		}
		if got := p.containerIDs("app"); !sameSet(got, v1) {
			t.Errorf("app containers after the failed rollout %v, want the v1 ones %v", got, v1)
		}
		p.waitHealthy(3, time.Minute)
		checkVersions(t, h, 3, "v1")
	})

	t.Run("rollout_to_v2_fails_no_request", func(t *testing.T) {
		before := durableTotal(t, p)
		l := startLoad(h, 4, 10*time.Minute, 1_000_000)
		waitLoad(t, l, 50)
		start := time.Now()
		outText, err := p.rollout(15*time.Minute, "APP_VERSION=v2")
		took := time.Since(start)
		if err != nil {
			l.stop()
			t.Fatalf("rollout: %v\n%s", err, tail(outText, 30))
		}
		waitLoad(t, l, l.count()+50)
		res := l.stop()
		after := durableTotal(t, p)
		versions := map[string]int{}
		for _, o := range res.outcomes {
			if o.err == nil {
				versions[o.hit.Version]++
			}
		}
		rep.add("rollout v1→v2: %v; under 4-worker load %d requests, %d failed, %d×200 (by version %v), PostgreSQL +%d",
			took.Round(time.Second), len(res.outcomes), len(res.failed()), res.ok(), versions, after-before)
		if f := res.failed(); len(f) > 0 {
			t.Errorf("%d requests failed during the rollout, want 0:%s", len(f), describeFailures(f))
		}
		if after-before != int64(res.ok()) {
			t.Errorf("PostgreSQL total rose by %d, want %d (the number of 200s)", after-before, res.ok())
		}
		now := p.containerIDs("app")
		if len(now) != 3 || slices.ContainsFunc(now, func(id string) bool { return slices.Contains(v1, id) }) {
			t.Errorf("app containers after the rollout %v, want 3 new ones (v1 was %v)", now, v1)
		}
		for svc, ids := range others {
			if got := strings.Join(p.containerIDs(svc), ","); got != ids {
				t.Errorf("%s containers %s after the rollouts, want %s untouched", svc, got, ids)
			}
		}
		p.waitHealthy(3, time.Minute) // exactly 3 backends in lb's /status, all healthy
		names := checkVersions(t, h, 3, "v2")
		// lb learns each replica's name and version from its headers.
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		st, err := p.status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var listed []string
		for _, b := range st.Backends {
			listed = append(listed, b.Name+"="+b.Version)
			if names[b.Name] != "v2" || b.Version != "v2" {
				t.Errorf("lb /status lists %s (%s) with version %q; want one of the replicas that answered %v, at v2", b.Name, b.Address, b.Version, names)
			}
		}
		slices.Sort(listed)
		rep.add("afterwards: 3 replicas answer, all v2; lb /status lists exactly %v", listed)
	})
}

// rollout runs scripts/rollout (what `make rollout` runs) on this project
// with extra environment, returning its output.
func (p *project) rollout(timeout time.Duration, env ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(p.root, "scripts", "rollout"),
		"-p", p.name, "-f", filepath.Join(p.root, "docker-compose.yml"), "--env-file", p.emptyEnv)
	cmd.Dir = p.root
	cmd.Env = os.Environ()
	for k, v := range p.env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	cmd.Env = append(cmd.Env, env...)
	var buf bytes.Buffer
	cmd.Stdout, cmd.Stderr = &buf, &buf
	start := time.Now()
	fmt.Fprintf(p.log, "\n=== %s rollout %s\n", start.Format(time.TimeOnly), strings.Join(env, " "))
	err := cmd.Run()
	p.log.Write(buf.Bytes())
	fmt.Fprintf(p.log, "=== %s (%v) err=%v\n", time.Since(start).Round(time.Millisecond), err, err)
	return buf.String(), err
}

// checkVersions sends 10*n sequential hits: exactly n instances must
// answer, every one with version want. It returns instance → version.
func checkVersions(t *testing.T, h *hitter, n int, want string) map[string]string {
	t.Helper()
	names := map[string]string{}
	for i := range 10 * n {
		v, _, err := h.hit(context.Background())
		if err != nil {
			t.Fatalf("hit %d: %v", i, err)
		}
		names[v.Instance] = v.Version
	}
	if len(names) != n {
		t.Errorf("%d instances answered %v, want %d", len(names), names, n)
	}
	for name, v := range names {
		if v != want {
			t.Errorf("instance %s has version %q, want %q", name, v, want)
		}
	}
	return names
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}
