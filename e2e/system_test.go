//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

// durableTotalSQL reads the count PostgreSQL holds, independent of the app and
// its cache: what "no acknowledged hit lost" is checked against.
const durableTotalSQL = `SELECT COALESCE(sum(hits), 0) FROM instance_hits`

// report collects the figures printed at the end of the run.
type report struct{ lines []string }

func (r *report) add(format string, args ...any) {
	r.lines = append(r.lines, fmt.Sprintf(format, args...))
}

// TestSystem runs the journey in order on one compose project; each
// step leaves the system in the state the next one starts from.
func TestSystem(t *testing.T) {
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(root, "out", "e2e")
	if err := os.MkdirAll(out, 0o755); err != nil {
		t.Fatal(err)
	}
	rep := &report{}
	p := newProject(t, root, out)
	rep.add("project %s, lb on %s, admin on %s", p.name, p.baseURL(), p.adminURL())
	if v, err := p.compose(context.Background(), "version"); err == nil {
		rep.add("compose: %s", strings.TrimSpace(strings.SplitN(v, "\n", 2)[0]))
	}
	downDone := false
	t.Cleanup(func() {
		if !downDone {
			p.down()
		}
		text := strings.Join(rep.lines, "\n")
		os.WriteFile(filepath.Join(out, "report.txt"), []byte(text+"\n"), 0o644)
		fmt.Printf("\n==== e2e report (out/e2e/report.txt) ====\n%s\n==== logs: out/e2e/compose.log, out/e2e/containers.log\n", text)
	})
	h := newHitter(p.baseURL(), 128)
	t.Cleanup(h.close)

	steps := []struct {
		name string
		run  func(t *testing.T)
	}{
		{"1_up_scale_4", func(t *testing.T) { stepUp(t, p, rep) }},
		{"1b_40_requests_equal_shares", func(t *testing.T) { stepSequential(t, p, h, rep) }},
		{"1c_metrics_off_the_public_path", func(t *testing.T) { stepMetrics(t, p, h, rep) }},
		{"2_browser_reloads", func(t *testing.T) { stepBrowser(t, p, rep) }},
		{"2b_dashboard_under_load", func(t *testing.T) { stepDashboard(t, p, h, rep) }},
		{"3_2000_concurrent_hits", func(t *testing.T) { stepConcurrent(t, p, h, rep) }},
		{"4a_scale_to_6", func(t *testing.T) { stepScaleUp(t, p, h, rep) }},
		{"4b_scale_to_2_under_load", func(t *testing.T) { stepScaleDown(t, p, h, rep) }},
		{"5_kill_replica_under_load", func(t *testing.T) { stepKill(t, p, h, rep) }},
		{"6_db_restart_under_load", func(t *testing.T) { stepDBRestart(t, p, h, rep) }},
		{"7_sticky_sessions", func(t *testing.T) { stepSticky(t, p, h, rep) }},
		{"7b_https_http2", func(t *testing.T) { stepHTTPS(t, p, rep) }},
		{"8_down_leaves_nothing", func(t *testing.T) { downDone = true; stepDown(t, p, rep) }},
		{"9_image_sizes", func(t *testing.T) { stepImageSizes(t, p, rep) }},
	}
	for _, s := range steps {
		start := time.Now()
		ok := t.Run(s.name, s.run)
		rep.add("%-30s %-4s %v", s.name, map[bool]string{true: "ok", false: "FAIL"}[ok], time.Since(start).Round(10*time.Millisecond))
		if !ok {
			t.Fatalf("step %s failed; later steps need its state, so the run stops here", s.name)
		}
	}
}

func stepUp(t *testing.T, p *project, rep *report) {
	start := time.Now()
	args := []string{"up", "-d", "--build", "--scale", "app=4"}
	if os.Getenv("E2E_NO_BUILD") != "" { // iterating on the tests: reuse the last run's images
		args = []string{"up", "-d", "--scale", "app=4"}
	}
	p.mustCompose(20*time.Minute, args...)
	built := time.Since(start)
	ready := p.waitHealthy(4, 2*time.Minute)
	rep.add("%s: command %v, then 4 healthy backends after %v", strings.Join(args, " "), built.Round(time.Second), ready.Round(100*time.Millisecond))
}

// stepImageSizes: the images must stay small enough to ship to droplets:
// the app at most 20 MB (go-redis and client_golang linked), lb 12 MB.
func stepImageSizes(t *testing.T, p *project, rep *report) {
	// lb was 8.0 MB before HTTPS (TLS, HTTP/2, ACME: +1.2 MB) and
	// client_golang (+2.3 MB, protobuf with it) came in; it measures 11.6 MB.
	// 12 MB holds it there, so the next megabyte is a decision, not a drift.
	limits := map[string]int64{p.env["APP_IMAGE"]: 20e6, p.env["LB_IMAGE"]: 12e6}
	for _, image := range []string{p.env["APP_IMAGE"], p.env["LB_IMAGE"]} {
		out, err := exec.Command("docker", "image", "inspect", "-f", "{{.Size}}", image).CombinedOutput()
		if err != nil {
			t.Fatalf("inspect %s: %v: %s", image, err, out)
		}
		size, err := strconv.ParseInt(strings.TrimSpace(string(out)), 10, 64)
		if err != nil {
			t.Fatalf("size of %s: %q", image, out)
		}
		rep.add("image %s: %.1f MB", image, float64(size)/1e6)
		if limit := limits[image]; size > limit {
			t.Errorf("image %s is %d bytes, want at most %.0f MB", image, size, float64(limit)/1e6)
		}
	}
}

// stepSequential: one client, 40 requests; with every replica idle, least
// connections takes them in turn (as round robin does), so each of 4 gets
// exactly 10, and nothing else counts, so each total is the last plus one.
func stepSequential(t *testing.T, p *project, h *hitter, rep *report) {
	ctx := context.Background()
	shares := map[string]int{}
	var last int64
	for i := range 40 {
		v, _, err := h.hit(ctx)
		if err != nil {
			t.Fatalf("request %d: %v", i+1, err)
		}
		if i > 0 && v.Total != last+1 {
			t.Errorf("request %d: total %d, want %d (previous plus one)", i+1, v.Total, last+1)
		}
		last = v.Total
		shares[v.Instance]++
	}
	if len(shares) != 4 {
		t.Fatalf("got %d instance names %v, want 4", len(shares), shares)
	}
	for name, n := range shares {
		if n != 10 {
			t.Errorf("instance %s served %d of 40, want 10 (shares %v)", name, n, shares)
		}
	}
	rep.add("40 sequential requests: shares %v, totals strictly +1", sortedShares(shares))
}

// stepMetrics: through lb, /metrics is a 404 that counts no hit; each
// replica answers it on its operations port (9090, never published), which
// the host reaches at the container's address on the compose network.
func stepMetrics(t *testing.T, p *project, h *hitter, rep *report) {
	ctx := context.Background()
	before, _, err := h.hit(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if code, body := httpGet(t, p.baseURL()+"/metrics"); code != 404 || strings.Contains(body, "hits_") {
			t.Fatalf("GET /metrics through lb = %d %.80q, want 404 without metrics", code, body)
		}
	}
	after, _, err := h.hit(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if after.Total != before.Total+1 {
		t.Errorf("total %d after three /metrics through lb, want %d (they count nothing)", after.Total, before.Total+1)
	}
	ids := p.containerIDs("app")
	for _, id := range ids {
		out, err := exec.Command("docker", "inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}", id).CombinedOutput()
		if err != nil {
			t.Fatalf("inspect %s: %v: %s", id, err, out)
		}
		ip := strings.Fields(string(out))
		if len(ip) == 0 {
			t.Fatalf("container %s has no address", id)
		}
		code, body := httpGet(t, "http://"+ip[0]+":9090/metrics")
		if code != 200 || !strings.Contains(body, "hits_instance_info{") || !strings.Contains(body, "go_goroutines") {
			t.Errorf("GET http://%s:9090/metrics = %d, want 200 with hits_instance_info and go_goroutines", ip[0], code)
		}
	}
	rep.add("/metrics through lb: 404, not counted; on :9090 of each of %d replicas: 200", len(ids))
}

// httpGet GETs url with a short deadline and returns the status and body.
func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// stepBrowser: what a person sees, in Chromium: 4 names over 9 loads and the
// total rising by one per load.
func stepBrowser(t *testing.T, p *project, rep *report) {
	b := newBrowser(t)
	s := b.session(t)
	pages, err := s.loads(p.baseURL()+"/", 8)
	if err != nil {
		t.Fatal(err)
	}
	shot := filepath.Join(p.out, "browser.png")
	if err := s.screenshot(shot); err != nil {
		t.Errorf("screenshot: %v", err)
	}
	names := map[string]int{}
	for i, pg := range pages {
		names[pg.Instance]++
		if i > 0 && pg.Total != pages[i-1].Total+1 {
			t.Errorf("load %d: total %d, want %d (one more than the previous load)", i+1, pg.Total, pages[i-1].Total+1)
		}
		if pg.LastDay < 1 || pg.LastDay > pg.Total {
			t.Errorf("load %d: last day %d, want 1..total(%d)", i+1, pg.LastDay, pg.Total)
		}
	}
	if len(names) != 4 {
		t.Errorf("browser saw %d distinct names %v over %d loads, want 4", len(names), names, len(pages))
	}
	rep.add("browser: %d loads, names %v, totals %d..%d, screenshot %s", len(pages), sortedShares(names), pages[0].Total, pages[len(pages)-1].Total, shot)
}

// stepConcurrent: 2,000 hits, 100 at a time; every total handed out once.
func stepConcurrent(t *testing.T, p *project, h *hitter, rep *report) {
	const n, workers = 2000, 100
	before := durableTotal(t, p)
	res := startLoad(h, workers, 3*time.Minute, n).finish()
	if f := res.failed(); len(f) > 0 {
		t.Fatalf("%d of %d requests failed:%s", len(f), n, describeFailures(f))
	}
	totals := res.totals()
	if len(totals) != n {
		t.Fatalf("got %d answers, want %d", len(totals), n)
	}
	for i, v := range totals {
		if want := before + 1 + int64(i); v != want {
			t.Fatalf("sorted totals are not the contiguous range %d..%d: position %d holds %d", before+1, before+n, i, v)
		}
	}
	shares := res.byInstance()
	checkSpread(t, shares, n, 4)
	if after := durableTotal(t, p); after != before+n {
		t.Errorf("PostgreSQL total %d, want %d", after, before+n)
	}
	rep.add("2000 hits by %d workers in %v (%.0f/s): totals %d..%d contiguous, shares %v",
		workers, res.elapsed.Round(time.Millisecond), float64(n)/res.elapsed.Seconds(), totals[0], totals[n-1], sortedShares(shares))
}

// stepScaleUp: the balancer follows new replicas within seconds.
func stepScaleUp(t *testing.T, p *project, h *hitter, rep *report) {
	start := time.Now()
	p.mustCompose(5*time.Minute, "up", "-d", "--scale", "app=6")
	upDone := time.Now()
	names := map[string]int{}
	ctx := context.Background()
	waitFor(t, 30*time.Second, "6 distinct instance names", func() bool {
		v, _, err := h.hit(ctx)
		if err == nil {
			names[v.Instance]++
		}
		return len(names) == 6
	}, func() string { return fmt.Sprintf("names %v", names) })
	seen := time.Since(upDone)
	rep.add("scale 4→6: command %v, all 6 names %v after it returned", upDone.Sub(start).Round(10*time.Millisecond), seen.Round(10*time.Millisecond))
	if seen > 5*time.Second {
		t.Errorf("6 names appeared %v after scaling, want within 5s", seen)
	}
	p.waitHealthy(6, 30*time.Second)
}

// stepScaleDown: scale 6→2 under steady load; draining replicas leave
// rotation before they stop, so no request fails and none is lost.
func stepScaleDown(t *testing.T, p *project, h *hitter, rep *report) {
	before := durableTotal(t, p)
	l := startLoad(h, 8, 3*time.Minute, 1_000_000)
	waitLoad(t, l, 100)
	start := time.Now()
	p.mustCompose(5*time.Minute, "up", "-d", "--scale", "app=2")
	took := time.Since(start)
	p.waitHealthy(2, 30*time.Second)
	waitLoad(t, l, l.count()+200)
	res := l.stop()
	after := durableTotal(t, p)
	f := res.failed()
	rep.add("scale 6→2 under 8-worker load: command %v, %d requests, %d failed, %d×200, PostgreSQL +%d",
		took.Round(10*time.Millisecond), len(res.outcomes), len(f), res.ok(), after-before)
	if len(f) > 0 {
		t.Errorf("%d requests failed while scaling down, want 0:%s", len(f), describeFailures(f))
	}
	if after-before != int64(res.ok()) {
		t.Errorf("PostgreSQL total rose by %d, want %d (the number of 200s)", after-before, res.ok())
	}
}

// stepKill: SIGKILL one replica under load: only requests in flight on it may
// fail, and every 200 it gave was already durable.
func stepKill(t *testing.T, p *project, h *hitter, rep *report) {
	const workers = 8
	ids := p.containerIDs("app")
	if len(ids) < 2 {
		t.Fatalf("want at least 2 app containers, have %v", ids)
	}
	before := durableTotal(t, p)
	l := startLoad(h, workers, 3*time.Minute, 1_000_000)
	waitLoad(t, l, 100)
	victim := ids[0]
	if out, err := exec.Command("docker", "kill", victim).CombinedOutput(); err != nil {
		t.Fatalf("docker kill %s: %v: %s", victim, err, out)
	}
	killed := time.Now()
	// Whatever the restart policy does, the balancer must settle on the
	// replicas that answer, then keep serving.
	waitFor(t, 30*time.Second, "lb to drop the killed replica", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		s, err := p.status(ctx)
		return err == nil && len(s.healthy()) == len(ids)-1
	}, func() string { return "" })
	dropped := time.Since(killed)
	waitLoad(t, l, l.count()+200)
	res := l.stop()
	after := durableTotal(t, p)
	f := res.failed()
	rep.add("kill 1 of %d replicas under %d-worker load: %d requests, %d failed, lb dropped it after %v, PostgreSQL +%d for %d×200 (%d hits counted without a 200 of their own)",
		len(ids), workers, len(res.outcomes), len(f), dropped.Round(10*time.Millisecond), after-before, res.ok(), after-before-int64(res.ok()))
	// At most every worker's one request can be in flight anywhere at once.
	if len(f) > workers {
		t.Errorf("%d requests failed, want at most %d (those in flight):%s", len(f), workers, describeFailures(f))
	}
	if after-before < int64(res.ok()) {
		t.Errorf("PostgreSQL total rose by %d but %d requests got 200: acknowledged hits lost", after-before, res.ok())
	}
	// A request in flight on the victim may have committed its hit before the
	// kill and still failed; compose sets LB_RETRY_IDEMPOTENT=false so lb
	// never replays it elsewhere, which would count one 200 twice.
	if extra := after - before - int64(res.ok()); extra > int64(len(f)) {
		t.Errorf("PostgreSQL total rose by %d for %d×200 and %d failures: %d hits counted twice", after-before, res.ok(), len(f), extra-int64(len(f)))
	}
	// Leave the next step a known shape: the killed replica back or replaced.
	p.mustCompose(5*time.Minute, "up", "-d", "--scale", "app=2")
	p.waitHealthy(2, time.Minute)
}

// stepDBRestart: PostgreSQL stops under load and starts again. While it is
// down a request gets 503, or waits and gets a late 200 when its batch may
// have committed (the replica asks PostgreSQL once it is back); once it is
// back, hits succeed again within seconds; and PostgreSQL holds exactly the
// hits answered 200.
//
// The outage ends as soon as the system sees it (/readyz through lb, which
// counts no hit), not at the load's first 503: a batch that may have
// committed holds every request in it until PostgreSQL answers, up to
// HIT_TIMEOUT + SETTLE_TIMEOUT (15 s). When each replica's batch holds all
// of its clients, as lingering batches do, no 503 comes before that bound,
// and an outage kept up until one came would outlast the settle it waits
// for: those hits are stored and answered 503, as docs/app.md says.
func stepDBRestart(t *testing.T, p *project, h *hitter, rep *report) {
	before := durableTotal(t, p)
	l := startLoad(h, 4, 4*time.Minute, 1_000_000)
	waitLoad(t, l, 50)
	stopAt := time.Now()
	p.mustCompose(2*time.Minute, "stop", "db")
	stopped := time.Now()
	waitFor(t, 30*time.Second, "GET /readyz through lb to answer 503 while PostgreSQL is down", func() bool {
		code, _ := httpGet(t, p.baseURL()+"/readyz")
		return code == http.StatusServiceUnavailable
	}, func() string { return "" })
	p.mustCompose(2*time.Minute, "start", "db")
	started := time.Now()
	var recovered time.Time
	waitFor(t, 60*time.Second, "a 200 after PostgreSQL is back", func() bool {
		for _, o := range l.snapshot() {
			if o.at.After(started) && o.status == 200 && o.err == nil {
				recovered = o.at
				return true
			}
		}
		return false
	}, func() string { return "" })
	waitLoad(t, l, l.count()+100)
	res := l.stop()
	after := durableTotal(t, p)
	var s503, other []outcome
	for _, o := range res.failed() {
		if o.status == 503 {
			s503 = append(s503, o)
		} else {
			other = append(other, o)
		}
	}
	var slowest200, slowest503 time.Duration
	for _, o := range res.outcomes {
		if o.err == nil && o.status == 200 {
			slowest200 = max(slowest200, o.took)
		}
	}
	for _, o := range s503 {
		slowest503 = max(slowest503, o.took)
	}
	down := started.Sub(stopAt)
	rep.add("db stop (%v) + start under 4-worker load, down %v: %d requests, %d×503, %d other failures, first 200 %v after start, slowest 200 %v, slowest 503 %v, PostgreSQL +%d for %d×200",
		stopped.Sub(stopAt).Round(10*time.Millisecond), down.Round(10*time.Millisecond), len(res.outcomes), len(s503), len(other),
		recovered.Sub(started).Round(10*time.Millisecond), slowest200.Round(time.Millisecond), slowest503.Round(time.Millisecond), after-before, res.ok())
	if len(other) > 0 {
		t.Errorf("%d failures other than 503 while PostgreSQL was down:%s", len(other), describeFailures(other))
	}
	if d := recovered.Sub(started); d > 15*time.Second {
		t.Errorf("first 200 came %v after PostgreSQL started, want within 15s", d)
	}
	// No replica dies here, so every stored hit is one answered 200: a batch
	// whose COMMIT may have run keeps its requests waiting until PostgreSQL
	// says what became of it, HIT_TIMEOUT + SETTLE_TIMEOUT (15 s) at most.
	if down >= 12*time.Second {
		t.Errorf("PostgreSQL was down %v: too close to the 15 s a settling batch waits for it for the count to be exact; the engine was slow to stop or start it", down)
	}
	if after-before != int64(res.ok()) {
		t.Errorf("PostgreSQL total rose by %d for %d requests answered 200, want equal (fewer: acknowledged hits lost; more: stored hits answered 503); what the replicas logged about their batches:\n%s",
			after-before, res.ok(), p.appLog(stopAt, `"msg":"batch`))
	}
}

// stepSticky: with LB_STICKY_SESSIONS=cookies the browser stays on one replica.
func stepSticky(t *testing.T, p *project, h *hitter, rep *report) {
	p.env["LB_STICKY_SESSIONS"] = "cookies"
	p.env["LB_STICKY_SECRET"] = "e2e-sticky-secret-0123456789abcdef"
	p.mustCompose(5*time.Minute, "up", "-d", "--scale", "app=4")
	p.waitHealthy(4, time.Minute)
	b := newBrowser(t)
	s := b.session(t)
	pages, err := s.loads(p.baseURL()+"/", 8)
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]int{}
	for _, pg := range pages {
		names[pg.Instance]++
	}
	if len(names) != 1 {
		t.Errorf("with sticky cookies the browser saw %v over %d loads, want one replica", names, len(pages))
	}
	// Without a cookie jar every request is a new session: still spread out.
	plain := map[string]int{}
	for range 8 {
		if v, _, err := h.hit(context.Background()); err == nil {
			plain[v.Instance]++
		}
	}
	if len(plain) < 2 {
		t.Errorf("cookie-less client saw only %v over 8 requests, want several replicas", plain)
	}
	rep.add("sticky: browser %v over %d loads; cookie-less client %v", sortedShares(names), len(pages), sortedShares(plain))
}

func stepDown(t *testing.T, p *project, rep *report) {
	p.down()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	left, err := p.leftovers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(left) > 0 {
		t.Errorf("after down -v these remain: %v", left)
	}
	rep.add("down -v: %d containers/networks/volumes left", len(left))
}

// durableTotal is the count PostgreSQL holds right now.
func durableTotal(t *testing.T, p *project) int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := p.psql(ctx, durableTotalSQL)
	if err != nil {
		t.Fatalf("read the total from PostgreSQL: %v", err)
	}
	n, err := strconv.ParseInt(strings.TrimSpace(out), 10, 64)
	if err != nil {
		t.Fatalf("PostgreSQL total %q: %v", out, err)
	}
	return n
}

// waitLoad waits until a load run has completed at least n requests.
func waitLoad(t *testing.T, l *load, n int) {
	t.Helper()
	waitFor(t, 60*time.Second, fmt.Sprintf("%d requests of load", n), func() bool { return l.count() >= n },
		func() string { return fmt.Sprintf("%d done", l.count()) })
}

// checkSpread asserts that n concurrent requests reached all `replicas`
// and that each carried at least half of its fair share. Least connections
// (lb's default) sends more to whichever replica answers sooner, so shares
// under concurrency are not exact; sequential requests, where every replica
// is idle, are (stepSequential).
func checkSpread(t *testing.T, shares map[string]int, n, replicas int) {
	t.Helper()
	if len(shares) != replicas {
		t.Errorf("%d requests reached %d replicas %v, want %d", n, len(shares), sortedShares(shares), replicas)
	}
	for name, c := range shares {
		if c < n/replicas/2 {
			t.Errorf("replica %s served %d of %d, want at least half of a fair share (%d) %v", name, c, n, n/replicas/2, sortedShares(shares))
		}
	}
}

func sortedShares(m map[string]int) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s=%d", k, m[k])
	}
	return "[" + strings.Join(parts, " ") + "]"
}
