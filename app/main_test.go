package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"hits/app/internal/testenv"
	"hits/testkit"
)

// pg and rds are shared by the tests of this package; tests that stop a
// server start their own.
var (
	pg  *testenv.Postgres
	rds *testenv.Redis
)

func TestMain(m *testing.M) { os.Exit(testenv.Main(m, &pg, &rds)) }

// app is one running instance of the program, started through run.
type app struct {
	url     string // the public port (PORT), set once serving
	opsURL  string // the operations listener (OPS_ADDR), set once serving
	serving chan Addrs
	logs    *testenv.SyncBuffer
	stop    context.CancelFunc // as SIGTERM does
	done    chan error         // run's result
}

// baseEnv is the environment every test app gets unless overridden.
func baseEnv(t *testing.T, databaseURL string) map[string]string {
	return map[string]string{
		"DATABASE_URL":     databaseURL,
		"REDIS_URL":        rds.URL(),
		"REDIS_KEY_PREFIX": "t" + strconv.FormatInt(time.Now().UnixNano(), 36) + ":",
		"DRAIN_TIMEOUT":    "0s",
		"HIT_TIMEOUT":      "10s",
		"DB_TIMEOUT":       "5s",
		"STARTUP_TIMEOUT":  "20s",
		"PORT":             "0",
		"OPS_ADDR":         "127.0.0.1:0",
	}
}

// startApp runs the program on a free port and waits until /healthz answers.
func startApp(t *testing.T, env map[string]string) *app {
	t.Helper()
	a := launchApp(t, env)
	a.waitHealthy(t)
	return a
}

// launchApp runs the program without waiting for it; the ports are the
// ones env asks for (baseEnv: any free port), learned from run itself.
func launchApp(t *testing.T, env map[string]string) *app {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	a := &app{serving: make(chan Addrs, 1), logs: &testenv.SyncBuffer{}, stop: cancel, done: make(chan error, 1)}
	getenv := func(k string) string { return env[k] }
	go func() { a.done <- run(ctx, []string{"app"}, getenv, a.logs, a.logs, func(b Addrs) { a.serving <- b }) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-a.done:
		case <-time.After(30 * time.Second):
			t.Errorf("app did not stop")
		}
		if t.Failed() {
			t.Logf("app %s logs:\n%s", a.url, a.logs.String())
		}
	})
	return a
}

// waitHealthy waits until run reports its addresses and /healthz answers 200.
func (a *app) waitHealthy(t *testing.T) {
	t.Helper()
	select {
	case b := <-a.serving:
		a.url, a.opsURL = "http://"+loopback(t, b.HTTP), "http://"+loopback(t, b.Ops)
	case err := <-a.done:
		a.done <- err
		t.Fatalf("run returned before serving: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("run did not start serving within 30s")
	}
	if code, _, err := get(a.url+"/healthz", ""); err != nil || code != 200 {
		t.Fatalf("app /healthz = %d, %v; want 200", code, err)
	}
}

// loopback turns a bound address (perhaps [::]:port) into one to dial.
func loopback(t *testing.T, addr string) string {
	t.Helper()
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("bound address %q: %v", addr, err)
	}
	return net.JoinHostPort("127.0.0.1", port)
}

// shutdown stops the app as SIGTERM would and returns run's result.
func (a *app) shutdown(t *testing.T) error {
	t.Helper()
	a.stop()
	select {
	case err := <-a.done:
		a.done <- err // for the cleanup
		return err
	case <-time.After(30 * time.Second):
		t.Fatal("app did not stop within 30s")
		return nil
	}
}

var client = &http.Client{Timeout: 10 * time.Second}

func get(url, accept string) (int, string, error) {
	return do(http.MethodGet, url, accept)
}

func do(method, url, accept string) (int, string, error) {
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		return 0, "", err
	}
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// hitJSON is the JSON answer of GET /.
type hitJSON struct {
	Instance  string `json:"instance"`
	Total     int64  `json:"total"`
	LastDay   int64  `json:"last_day"`
	Instances []struct {
		Instance string `json:"instance"`
		Hits     int64  `json:"hits"`
	} `json:"instances"`
}

func hit(t *testing.T, base string) hitJSON {
	t.Helper()
	h, err := tryHit(base)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func tryHit(base string) (hitJSON, error) {
	code, body, err := get(base+"/", "application/json")
	if err != nil {
		return hitJSON{}, err
	}
	if code != http.StatusOK {
		return hitJSON{}, fmt.Errorf("GET / = %d %q, want 200", code, body)
	}
	var h hitJSON
	if err := json.Unmarshal([]byte(body), &h); err != nil {
		return hitJSON{}, fmt.Errorf("GET / body %q: %w", body, err)
	}
	return h, nil
}

func TestRunRejectsBadConfig(t *testing.T) {
	tests := []struct {
		name string
		env  map[string]string
		want string
	}{
		{"no database", map[string]string{}, "DATABASE_URL is required"},
		{"bad port", map[string]string{"DATABASE_URL": "postgres://h/db", "PORT": "http"}, `PORT="http"`},
		{"unknown command", map[string]string{}, "unknown command"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := []string{"app"}
			if tt.name == "unknown command" {
				args = append(args, "frobnicate")
			}
			var out bytes.Buffer
			err := run(context.Background(), args, func(k string) string { return tt.env[k] }, &out, &out, nil)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("run() = %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

func TestHealthcheckCommand(t *testing.T) {
	a := startApp(t, baseEnv(t, pg.NewDatabase(t)))
	port := strings.TrimPrefix(a.url, "http://127.0.0.1:")
	env := func(k string) string { return map[string]string{"PORT": port}[k] }
	if err := run(context.Background(), []string{"app", "healthcheck"}, env, io.Discard, io.Discard, nil); err != nil {
		t.Fatalf("healthcheck against a running app = %v, want nil", err)
	}
	free, err := testkit.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	env = func(k string) string { return map[string]string{"PORT": strconv.Itoa(free)}[k] }
	if err := run(context.Background(), []string{"app", "healthcheck"}, env, io.Discard, io.Discard, nil); err == nil {
		t.Fatal("healthcheck with nothing listening = nil, want an error")
	}
}

func TestPageAndOnlyPageLoadsCount(t *testing.T) {
	env := baseEnv(t, pg.NewDatabase(t))
	env["INSTANCE_ID"] = "bar-1"
	a := startApp(t, env)

	// None of these count.
	for _, tc := range []struct {
		method, path string
		want         int
	}{
		{"HEAD", "/", 200},
		{"GET", "/favicon.ico", 200},
		{"GET", "/healthz", 200},
		{"GET", "/readyz", 200},
		{"GET", "/metrics", 404}, // on OPS_ADDR only
		{"GET", "/debug/pprof/", 404},
		{"GET", "/static/app.css", 404},
		{"POST", "/", 405},
	} {
		code, _, err := do(tc.method, a.url+tc.path, "")
		if err != nil || code != tc.want {
			t.Errorf("%s %s = %d, %v; want %d", tc.method, tc.path, code, err, tc.want)
		}
	}
	resp, err := client.Get(a.url + "/favicon.ico")
	if err != nil {
		t.Fatal(err)
	}
	icon, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "image/x-icon" || !bytes.HasPrefix(icon, []byte{0, 0, 1, 0}) {
		t.Errorf("favicon: Content-Type %q, starts % x; want image/x-icon and an ICO header", ct, icon[:min(4, len(icon))])
	}

	h := hit(t, a.url)
	if h.Instance != "bar-1" || h.Total != 1 || h.LastDay != 1 {
		t.Fatalf("first JSON hit = %+v, want instance bar-1, total 1, last_day 1", h)
	}
	if len(h.Instances) != 1 || h.Instances[0].Instance != "bar-1" {
		t.Errorf("instances = %+v, want one entry for bar-1", h.Instances)
	}

	code, body, err := get(a.url+"/", "text/html,application/xhtml+xml,application/json;q=0.9")
	if err != nil || code != 200 {
		t.Fatalf("GET / (html) = %d, %v", code, err)
	}
	for _, want := range []string{"APP INSTANCE: bar-1", "Total hits: 2", "Hits in the last day: 2", `<meta name="viewport"`} {
		if !strings.Contains(body, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	if strings.Contains(body, "http://") || strings.Contains(body, "https://") {
		t.Errorf("page refers to an external asset; want it self-contained")
	}

	_, metrics, _ := get(a.opsURL+"/metrics", "")
	for _, want := range []string{"hits_committed_total 2", "hits_batch_size_count", "hits_http_request_duration_seconds_bucket",
		"hits_db_errors_total 0", "hits_page_hits_total 2", `hits_instance_info{instance="bar-1"} 1`, "go_goroutines", "process_cpu_seconds_total",
		`hits_http_requests_total{code="404",route="other"} 3`} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %q", want)
		}
	}

	// Pages carry their length: unframed, the server would chunk them and
	// lb would pay to decode the chunks.
	for _, accept := range []string{"application/json", "text/html"} {
		req, _ := http.NewRequest(http.MethodGet, a.url+"/", nil)
		req.Header.Set("Accept", accept)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || resp.ContentLength != int64(len(body)) || len(resp.TransferEncoding) > 0 {
			t.Errorf("GET / (%s) = %d, Content-Length %d for %d bytes, Transfer-Encoding %v; want 200 with its length",
				accept, resp.StatusCode, resp.ContentLength, len(body), resp.TransferEncoding)
		}
	}
	// So do the other answers of the public port (web.writeBody, or h1/front
	// measuring http.Error's).
	for path, code := range map[string]int{"/healthz": 200, "/readyz": 200, "/favicon.ico": 200, "/nope": 404} {
		resp, err := client.Get(a.url + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != code || resp.ContentLength != int64(len(body)) || len(resp.TransferEncoding) > 0 {
			t.Errorf("GET %s = %d, Content-Length %d for %d bytes, Transfer-Encoding %v; want %d with its length",
				path, resp.StatusCode, resp.ContentLength, len(body), resp.TransferEncoding, code)
		}
	}
}

// TestConcurrentHitsAcrossTwoInstancesAreExact is the core promise: N
// concurrent page loads over two replicas sharing a database see exactly
// the numbers 1..N.
func TestConcurrentHitsAcrossTwoInstancesAreExact(t *testing.T) {
	db := pg.NewDatabase(t)
	envA, envB := baseEnv(t, db), baseEnv(t, db)
	envA["INSTANCE_ID"], envB["INSTANCE_ID"] = "a", "b"
	a, b := startApp(t, envA), startApp(t, envB)

	const n = 400
	totals := make([]int64, n)
	days := make([]int64, n)
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		base := a.url
		if i%2 == 1 {
			base = b.url
		}
		wg.Go(func() {
			h, err := tryHit(base)
			if err != nil {
				errs <- err
				return
			}
			totals[i], days[i] = h.Total, h.LastDay
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for name, got := range map[string][]int64{"total": totals, "last_day": days} {
		seen := make([]bool, n+1)
		for _, v := range got {
			if v < 1 || v > n || seen[v] {
				t.Fatalf("%s %d out of range or seen twice; want each of 1..%d once", name, v, n)
			}
			seen[v] = true
		}
	}
	h := hit(t, b.url)
	if h.Total != n+1 {
		t.Errorf("next hit total = %d, want %d", h.Total, n+1)
	}
}

func TestHitsSurviveRestart(t *testing.T) {
	env := baseEnv(t, pg.NewDatabase(t))
	env["INSTANCE_ID"] = "r"
	a := startApp(t, env)
	for range 5 {
		hit(t, a.url)
	}
	if err := a.shutdown(t); err != nil {
		t.Fatalf("run after shutdown = %v, want nil", err)
	}
	env2 := baseEnv(t, env["DATABASE_URL"])
	env2["INSTANCE_ID"] = "r"
	b := startApp(t, env2)
	if h := hit(t, b.url); h.Total != 6 || h.LastDay != 6 {
		t.Fatalf("hit after restart = %+v, want total 6 and last_day 6", h)
	}
}

// TestDrainOnShutdown: /readyz turns 503 at once while pages are still
// served for DRAIN_TIMEOUT, then run returns nil.
func TestDrainOnShutdown(t *testing.T) {
	env := baseEnv(t, pg.NewDatabase(t))
	env["DRAIN_TIMEOUT"] = "3s"
	a := startApp(t, env)
	hit(t, a.url)
	a.stop()
	testkit.EventuallyNil(t, "readyz 503 after stop", time.Second, func() error {
		if code, _, err := get(a.url+"/readyz", ""); err != nil || code != 503 {
			return fmt.Errorf("readyz = %d, %v", code, err)
		}
		return nil
	})
	if h := hit(t, a.url); h.Total != 2 {
		t.Errorf("hit while draining = %+v, want total 2", h)
	}
	if code, _, _ := get(a.url+"/healthz", ""); code != 200 {
		t.Errorf("healthz while draining = %d, want 200", code)
	}
	select {
	case err := <-a.done:
		a.done <- err
		if err != nil {
			t.Fatalf("run = %v, want nil", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("run did not return after the drain")
	}
	if _, _, err := get(a.url+"/healthz", ""); err == nil {
		t.Error("still accepting after shutdown")
	}
}

// exactHitter hits one app at a steady pace (every 20ms), checking that
// each hit gets exactly the next numbers and answers quickly: what "Redis
// is only a cache" means while it dies, comes back or fails over.
type exactHitter struct {
	t    *testing.T
	a    *app
	want int64 // the number the next hit must get
}

// until hits, at least once, until cond holds; it fails the test after
// timeout, or at the first hit with the wrong numbers.
func (h *exactHitter) until(stage string, timeout time.Duration, cond func() bool) {
	h.t.Helper()
	deadline := time.Now().Add(timeout)
	pace := time.NewTicker(20 * time.Millisecond)
	defer pace.Stop()
	for first := true; first || !cond(); first = false {
		if time.Now().After(deadline) {
			h.t.Fatalf("%s: condition not met after %s", stage, timeout)
		}
		h.want++
		start := time.Now()
		got := hit(h.t, h.a.url)
		if got.Total != h.want || got.LastDay != h.want {
			h.t.Fatalf("%s: hit = total %d, last_day %d; want %d and %d", stage, got.Total, got.LastDay, h.want, h.want)
		}
		// Every cache call is bounded by CACHE_TIMEOUT (50ms); a second
		// leaves room for a loaded machine, not for a wait on Redis.
		if d := time.Since(start); d > time.Second {
			h.t.Errorf("%s: hit took %s, want well under a second", stage, d)
		}
		<-pace.C
	}
}

func TestRedisKilledAndBack(t *testing.T) {
	own := testenv.OwnRedis(t)
	env := baseEnv(t, pg.NewDatabase(t))
	env["REDIS_URL"] = own.URL()
	env["INSTANCE_ID"] = "k"
	a := startApp(t, env)
	// The cache is only asked once a second or so, so it takes a few hits
	// to notice a change.
	h := &exactHitter{t: t, a: a}
	hitUntil := func(stage string, cond func() bool) { h.until(stage, 10*time.Second, cond) }
	cacheErrors := func() bool {
		_, m, _ := get(a.opsURL+"/metrics", "")
		return !strings.Contains(m, "hits_cache_errors_total 0")
	}
	hitUntil("redis up", func() bool { return true })
	if cacheErrors() {
		t.Fatal("cache errors before redis was killed")
	}
	if err := own.Kill(); err != nil {
		t.Fatal(err)
	}
	hitUntil("redis killed", cacheErrors)
	if !strings.Contains(a.logs.String(), "redis unavailable") {
		t.Error("no log of the redis outage")
	}
	if err := own.Start(); err != nil {
		t.Fatal(err)
	}
	hitUntil("redis back", func() bool { return strings.Contains(a.logs.String(), "redis is back") })
	if n := strings.Count(a.logs.String(), "redis unavailable"); n != 1 {
		t.Errorf("outage logged %d times, want once", n)
	}
}

func TestPostgresStoppedAndBack(t *testing.T) {
	own := testenv.OwnPostgres(t)
	env := baseEnv(t, own.NewDatabase(t))
	env["INSTANCE_ID"] = "p"
	a := startApp(t, env)
	hit(t, a.url)
	hit(t, a.url)

	if err := own.Stop(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	code, body, err := get(a.url+"/", "")
	if err != nil || code != 503 {
		t.Fatalf("GET / with postgres down = %d, %v; want 503", code, err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("503 took %s, want a few seconds at most", d)
	}
	if !strings.Contains(body, "try again") || strings.Contains(body, "dial") || strings.Contains(body, "127.0.0.1") {
		t.Errorf("503 body %q: want a short clear page without internals", body)
	}
	for range 4 {
		if code, _, _ := get(a.url+"/", "application/json"); code != 503 {
			t.Errorf("GET / with postgres down = %d, want 503", code)
		}
	}
	if n := strings.Count(a.logs.String(), "batch failed"); n != 1 {
		t.Errorf("outage logged %d times, want once (not per request)", n)
	}
	if code, _, _ := get(a.url+"/readyz", ""); code != 503 {
		t.Errorf("readyz with postgres down = %d, want 503", code)
	}
	if code, _, _ := get(a.url+"/healthz", ""); code != 200 {
		t.Errorf("healthz with postgres down = %d, want 200", code)
	}

	if err := own.Start(); err != nil {
		t.Fatal(err)
	}
	testkit.EventuallyNil(t, "readyz after postgres is back", 15*time.Second, func() error {
		if code, _, err := get(a.url+"/readyz", ""); err != nil || code != 200 {
			return errors.New("not ready")
		}
		return nil
	})
	if h := hit(t, a.url); h.Total != 3 {
		t.Fatalf("first hit after recovery = %+v, want total 3 (no acknowledged hit lost, none invented)", h)
	}
	if !strings.Contains(a.logs.String(), "batches commit again") {
		t.Error("recovery not logged")
	}
}

// TestOpsListener: /metrics is on OPS_ADDR and not on the public port;
// pprof is on OPS_ADDR only with OPS_PPROF=true, never on the public port.
func TestOpsListener(t *testing.T) {
	db := pg.NewDatabase(t)
	a := startApp(t, baseEnv(t, db))
	env := baseEnv(t, db)
	env["OPS_PPROF"] = "true"
	b := startApp(t, env)
	for _, tc := range []struct {
		url  string
		want int
	}{
		{a.opsURL + "/metrics", 200},
		{a.url + "/metrics", 404},
		{a.opsURL + "/debug/pprof/", 404},
		{b.opsURL + "/debug/pprof/", 200},
		{b.opsURL + "/debug/pprof/cmdline", 200},
		{b.url + "/debug/pprof/", 404},
		{a.opsURL + "/", 404},
	} {
		if code, _, err := get(tc.url, ""); code != tc.want {
			t.Errorf("GET %s = %d, %v; want %d", tc.url, code, err, tc.want)
		}
	}
	if err := b.shutdown(t); err != nil {
		t.Errorf("run with pprof after shutdown = %v, want nil", err)
	}
	if _, _, err := get(b.opsURL+"/metrics", ""); err == nil {
		t.Error("operations listener still accepting after shutdown")
	}
}

// TestOpsPortTakenFailsAtOnce: a taken OPS_ADDR stops start-up naming it,
// before any wait for the database.
func TestOpsPortTakenFailsAtOnce(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	env := baseEnv(t, "postgres://postgres@127.0.0.1:1/x?sslmode=disable")
	env["OPS_ADDR"] = taken.Addr().String()
	err = run(context.Background(), []string{"app"}, func(k string) string { return env[k] }, io.Discard, io.Discard, nil)
	if err == nil || !strings.Contains(err.Error(), "OPS_ADDR") {
		t.Fatalf("run with OPS_ADDR taken = %v, want an error naming OPS_ADDR", err)
	}
}

// TestReplicasStartTogether: four replicas started at the same moment on an
// empty database all migrate, serve, and share one exact count.
func TestReplicasStartTogether(t *testing.T) {
	db := pg.NewDatabase(t)
	var apps []*app
	for i := range 4 {
		env := baseEnv(t, db)
		env["INSTANCE_ID"] = "r" + strconv.Itoa(i)
		apps = append(apps, launchApp(t, env))
	}
	for _, a := range apps {
		a.waitHealthy(t)
	}
	for i, a := range apps {
		if h := hit(t, a.url); h.Total != int64(i+1) {
			t.Errorf("hit %d on %s = total %d, want %d", i+1, h.Instance, h.Total, i+1)
		}
	}
	none := 0
	for _, a := range apps {
		none += strings.Count(a.logs.String(), `"applied_migrations":0`)
	}
	if none != len(apps)-1 {
		t.Errorf("%d replicas found the schema already migrated, want %d (exactly one migrates)", none, len(apps)-1)
	}
}

// TestStartupWaitsForPostgres: with PostgreSQL down the app keeps retrying
// at start-up, fails after STARTUP_TIMEOUT naming the cause, and a stop
// request while waiting is a clean exit.
func TestStartupWaitsForPostgres(t *testing.T) {
	port, err := testkit.FreePort() // nothing listens here
	if err != nil {
		t.Fatal(err)
	}
	env := baseEnv(t, "postgres://postgres@127.0.0.1:"+strconv.Itoa(port)+"/x?sslmode=disable")
	env["STARTUP_TIMEOUT"] = "1s"
	a := launchApp(t, env)
	select {
	case err := <-a.done:
		a.done <- err
		if err == nil || !strings.Contains(err.Error(), "postgres not ready after 1s") {
			t.Fatalf("run = %v, want postgres not ready after 1s", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("run did not give up after STARTUP_TIMEOUT")
	}

	env = baseEnv(t, env["DATABASE_URL"])
	b := launchApp(t, env)
	testkit.EventuallyNil(t, "waiting for postgres logged", 10*time.Second, func() error {
		if !strings.Contains(b.logs.String(), "waiting for postgres") {
			return errors.New("not yet")
		}
		return nil
	})
	if err := b.shutdown(t); err != nil {
		t.Fatalf("run stopped while waiting = %v, want nil", err)
	}
}
