//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"hits/testkit"
)

// TestDroplets runs deploy/README.md's servers from its role files, each
// its own compose project with its own directory and .env as the guide
// writes them. A user-defined Docker network stands for the VPC: each
// server's private IP is an address of the host on that network's bridge,
// so the role files publish on it exactly as on a droplet and the servers
// reach each other only through those addresses.
func TestDroplets(t *testing.T) {
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(root, "out", "e2e", "droplets")
	os.RemoveAll(out)
	if err := os.MkdirAll(out, 0o755); err != nil {
		t.Fatal(err)
	}
	rep := &report{}
	d := &droplets{t: t, root: root, out: out, id: fmt.Sprintf("hitsdrop%d", time.Now().UnixNano()%1e9)}
	logf, err := os.Create(filepath.Join(out, "compose.log"))
	if err != nil {
		t.Fatal(err)
	}
	d.log = logf
	t.Cleanup(func() {
		d.teardown()
		logf.Close()
		text := strings.Join(rep.lines, "\n")
		os.WriteFile(filepath.Join(out, "report.txt"), []byte(text+"\n"), 0o644)
		fmt.Printf("\n==== droplets report (out/e2e/droplets/report.txt) ====\n%s\n", text)
	})

	// Step 1 of the guide: the images, built as `make push` builds them.
	start := time.Now()
	appImage, lbImage := "hits-e2e/droplets-app:latest", "hits-e2e/droplets-lb:latest"
	if os.Getenv("E2E_NO_BUILD") == "" {
		d.run(20*time.Minute, root, []string{"APP_IMAGE=" + appImage, "LB_IMAGE=" + lbImage},
			filepath.Join(root, "scripts", "compose"), "-p", d.id+"-build", "-f", filepath.Join(root, "docker-compose.yml"), "build", "app", "lb")
	}
	rep.add("images built in %v", time.Since(start).Round(time.Second))

	// Step 2: the VPC.
	vpc := d.network()
	rep.add("private network %s: data %s, apps %s…, lb %s", d.id, vpc.ip(2), vpc.ip(3), vpc.ip(10))
	pgPass, redisPass := secret(t), secret(t)

	// Step 3: the data server.
	data := d.server("data", "data.compose.yml", map[string]string{
		"PRIVATE_IP":        vpc.ip(2),
		"POSTGRES_PASSWORD": pgPass,
		"REDIS_PASSWORD":    redisPass,
		// Stand-ins for postgres:17 and redis:7 (no registry here).
		"POSTGRES_IMAGE": os.Getenv("POSTGRES_IMAGE"),
		"REDIS_IMAGE":    os.Getenv("REDIS_IMAGE"),
	})
	data.up()

	// Step 4: three app servers; only INSTANCE_ID and PRIVATE_IP (and,
	// because the three "servers" share one engine here, OPS_BIND: on real
	// droplets each app's metrics stay on its own 127.0.0.1:9090) differ.
	appEnv := func(i int) map[string]string {
		return map[string]string{
			"APP_IMAGE":    appImage,
			"INSTANCE_ID":  fmt.Sprintf("app-%d", i),
			"PRIVATE_IP":   vpc.ip(2 + i),
			"OPS_BIND":     vpc.ip(2 + i),
			"DATABASE_URL": fmt.Sprintf("postgres://hits:%s@%s:5432/hits?sslmode=disable", pgPass, vpc.ip(2)),
			"REDIS_URL":    fmt.Sprintf("redis://:%s@%s:6379/0", redisPass, vpc.ip(2)),
		}
	}
	var apps []*server
	for i := 1; i <= 3; i++ {
		a := d.server(fmt.Sprintf("app%d", i), "app.compose.yml", appEnv(i))
		a.up()
		apps = append(apps, a)
	}
	for i := range apps {
		// "curl -s http://$PRIVATE_IP:8080/readyz answers ready with status 200"
		d.waitReady(vpc.ip(3+i), 3*time.Minute)
	}
	rep.add("data server and 3 app servers ready after %v", time.Since(start).Round(time.Second))
	// The guide's scrape: each app answers /metrics on its operations port.
	for i := range apps {
		url := "http://" + vpc.ip(3+i) + ":9090/metrics"
		if code, body := httpGet(t, url); code != 200 || !strings.Contains(body, `hits_instance_info{instance="app-`) {
			t.Errorf("GET %s = %d, want 200 with hits_instance_info", url, code)
		}
	}

	// Step 5a: the balancer server. The test publishes the page and the
	// dashboard on free loopback ports instead of :80 and :8081.
	httpPort, adminPort := testkit.Port(t), testkit.Port(t)
	backends := []string{vpc.ip(3) + ":8080", vpc.ip(4) + ":8080", vpc.ip(5) + ":8080"}
	lbEnv := map[string]string{
		"LB_IMAGE":    lbImage,
		"LB_BACKENDS": strings.Join(backends, ","),
		"HTTP_BIND":   "127.0.0.1",
		"HTTP_PORT":   strconv.Itoa(httpPort),
		"ADMIN_PORT":  strconv.Itoa(adminPort),
		// The file also publishes the (here unused) HTTPS port on 443 of
		// every address; keep that on loopback too.
		"HTTPS_BIND": "127.0.0.1",
		"HTTPS_PORT": strconv.Itoa(testkit.Port(t)),
	}
	lb := d.server("lb", "lb.compose.yml", lbEnv)
	lb.up()
	p := &project{t: t, httpPort: httpPort, adminPort: adminPort}
	p.waitHealthy(3, 2*time.Minute)
	h := newHitter(p.baseURL(), 16)
	t.Cleanup(h.close)

	dbTotal := func() int64 {
		t.Helper()
		out := data.compose(time.Minute, "exec", "-T", "db", "psql", "-U", "hits", "-d", "hits", "-Atqc", durableTotalSQL)
		n, err := strconv.ParseInt(strings.TrimSpace(out), 10, 64)
		if err != nil {
			t.Fatalf("PostgreSQL total %q: %v", out, err)
		}
		return n
	}

	ok := t.Run("rotation_over_three", func(t *testing.T) {
		shares := sequential(t, h, 30)
		rep.add("30 sequential requests through lb: %s", sortedShares(shares))
		for i := 1; i <= 3; i++ {
			if n := shares[fmt.Sprintf("app-%d", i)]; n != 10 {
				t.Errorf("app-%d served %d of 30, want 10 (shares %v)", i, n, shares)
			}
		}
	})
	ok = ok && t.Run("stop_and_start_an_app_server_under_load", func(t *testing.T) {
		before := dbTotal()
		l := startLoad(h, 4, 5*time.Minute, 1_000_000)
		waitLoad(t, l, 50)
		stopStart := time.Now()
		apps[1].compose(2*time.Minute, "stop")
		stopped := time.Since(stopStart)
		waitFor(t, 30*time.Second, "lb to take app-2 out", func() bool {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			s, err := p.status(ctx)
			return err == nil && len(s.healthy()) == 2
		}, func() string { return "" })
		waitLoad(t, l, l.count()+100)
		apps[1].up()
		p.waitHealthy(3, 2*time.Minute)
		waitLoad(t, l, l.count()+100)
		res := l.stop()
		after := dbTotal()
		f := res.failed()
		rep.add("stop app-2's server (compose stop: %v) and start it again under 4-worker load: %d requests, %d failed, %d×200, PostgreSQL +%d, served by %s",
			stopped.Round(100*time.Millisecond), len(res.outcomes), len(f), res.ok(), after-before, sortedShares(res.byInstance()))
		if len(f) > 0 {
			t.Errorf("%d requests failed while an app server stopped and started, want 0:%s", len(f), describeFailures(f))
		}
		if after-before != int64(res.ok()) {
			t.Errorf("PostgreSQL total rose by %d, want %d (the number of 200s)", after-before, res.ok())
		}
		if shares := sequential(t, h, 30); shares["app-2"] != 10 {
			t.Errorf("after restarting, app-2 served %d of 30, want 10 (shares %v)", shares["app-2"], shares)
		}
	})
	ok = ok && t.Run("add_a_fourth_app_server", func(t *testing.T) {
		a := d.server("app4", "app.compose.yml", appEnv(4))
		a.up()
		d.waitReady(vpc.ip(6), 3*time.Minute)
		// As the guide says: add its address to LB_BACKENDS in lb's .env and
		// `docker compose -f lb.compose.yml up -d`.
		lbEnv["LB_BACKENDS"] += "," + vpc.ip(6) + ":8080"
		lb.writeEnv(lbEnv)
		// What the README says a restart of lb costs, measured: two
		// clients keep loading the page while lb is recreated.
		l := startLoad(h, 2, 5*time.Minute, 1_000_000)
		waitLoad(t, l, 20)
		restart := time.Now()
		lb.up()
		p.waitHealthy(4, 2*time.Minute)
		healthy := time.Since(restart)
		waitLoad(t, l, l.count()+20)
		res := l.stop()
		// Failed requests come back at once, so their number says little:
		// the window they span is the cost.
		f := res.failed()
		var gap time.Duration
		kinds := map[string]int{}
		for _, o := range f {
			if o.status == 0 {
				kinds["no response"]++
			} else {
				kinds[strconv.Itoa(o.status)]++
			}
		}
		if len(f) > 0 {
			gap = f[len(f)-1].at.Sub(f[0].at)
		}
		rep.add("fourth app server: lb recreated (compose up -d), 4 backends healthy %v after; under 2-client load requests failed for %v (%v)",
			healthy.Round(100*time.Millisecond), gap.Round(10*time.Millisecond), kinds)
		shares := sequential(t, h, 40)
		rep.add("40 sequential requests: %s", sortedShares(shares))
		for i := 1; i <= 4; i++ {
			if n := shares[fmt.Sprintf("app-%d", i)]; n != 10 {
				t.Errorf("app-%d served %d of 40, want 10 (shares %v)", i, n, shares)
			}
		}
	})
	if !ok {
		t.Log("a step failed; the later steps need its state and did not run")
	}
}

// sequential sends n hits one after another; each total must be the last
// plus one. It returns the hits per instance.
func sequential(t *testing.T, h *hitter, n int) map[string]int {
	t.Helper()
	shares := map[string]int{}
	var last int64
	for i := range n {
		v, _, err := h.hit(context.Background())
		if err != nil {
			t.Fatalf("request %d: %v", i+1, err)
		}
		if i > 0 && v.Total != last+1 {
			t.Errorf("request %d: total %d, want %d", i+1, v.Total, last+1)
		}
		last = v.Total
		shares[v.Instance]++
	}
	return shares
}

func secret(t *testing.T) string {
	t.Helper()
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// droplets is the set of "servers" of one run.
type droplets struct {
	t       *testing.T
	root    string
	out     string
	id      string
	log     *os.File
	netName string // set once created
	servers []*server
}

// teardown removes every server (saving its containers' logs), then the
// network, whose bridge takes the private IPs with it.
func (d *droplets) teardown() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	for i := len(d.servers) - 1; i >= 0; i-- {
		s := d.servers[i]
		if logs, err := s.composeErr(ctx, "logs", "--no-color", "--timestamps"); err == nil {
			os.WriteFile(filepath.Join(s.dir, "containers.log"), []byte(logs), 0o644)
		}
		if _, err := s.composeErr(ctx, "down", "-v", "--timeout", "30"); err != nil {
			d.t.Errorf("cleanup %s: %v", s.name, err)
		}
	}
	if d.netName == "" {
		return
	}
	if out, err := exec.CommandContext(ctx, "docker", "network", "rm", d.netName).CombinedOutput(); err != nil {
		d.t.Errorf("cleanup: docker network rm %s: %v: %s", d.netName, err, out)
	}
}

// vpc is the private network's /24 prefix, e.g. "10.1.2.".
type vpc string

func (v vpc) ip(host int) string { return fmt.Sprintf("%s%d", v, host) }

// network creates the user-defined network standing for the VPC and gives
// the host addresses .2 to .10 on its bridge: the servers' private IPs.
// Docker hands containers addresses from the bottom of the subnet, and no
// container joins this network, so they never collide.
func (d *droplets) network() vpc {
	d.t.Helper()
	// Let Docker pick a free subnet, then read it back.
	name := d.id + "-vpc"
	d.run(time.Minute, d.root, nil, "docker", "network", "create", "--label", "org.hits.e2e="+d.id, name)
	d.netName = name
	out := d.run(time.Minute, d.root, nil, "docker", "network", "inspect", "-f", "{{.Id}} {{range .IPAM.Config}}{{.Subnet}}{{end}}", d.netName)
	var id, subnet string
	fmt.Sscan(out, &id, &subnet)
	_, ipnet, err := net.ParseCIDR(subnet)
	if err != nil || ipnet.IP.To4() == nil {
		d.t.Fatalf("network %s has subnet %q, want an IPv4 one", d.netName, subnet)
	}
	ones, _ := ipnet.Mask.Size()
	if ones > 24 {
		d.t.Fatalf("network %s has subnet %s, want at least a /24", d.netName, subnet)
	}
	ip4 := ipnet.IP.To4()
	prefix := vpc(fmt.Sprintf("%d.%d.%d.", ip4[0], ip4[1], ip4[2]))
	bridge := "br-" + id[:12]
	for host := 2; host <= 10; host++ {
		d.run(time.Minute, d.root, nil, "ip", "addr", "add", fmt.Sprintf("%s/%d", prefix.ip(host), ones), "dev", bridge)
	}
	return prefix
}

// server is one "droplet": its own directory holding its role file and
// .env, and its own compose project.
type server struct {
	d    *droplets
	name string // compose project
	dir  string
	file string
}

func (d *droplets) server(role, file string, env map[string]string) *server {
	d.t.Helper()
	s := &server{d: d, name: d.id + "-" + role, dir: filepath.Join(d.out, role), file: file}
	if err := os.MkdirAll(s.dir, 0o755); err != nil {
		d.t.Fatal(err)
	}
	// "copy <role>.compose.yml and write its .env"
	body, err := os.ReadFile(filepath.Join(d.root, "deploy", file))
	if err != nil {
		d.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(s.dir, file), body, 0o644); err != nil {
		d.t.Fatal(err)
	}
	s.writeEnv(env)
	d.servers = append(d.servers, s)
	return s
}

func (s *server) writeEnv(env map[string]string) {
	var b strings.Builder
	for k, v := range env {
		fmt.Fprintf(&b, "%s=%s\n", k, v)
	}
	if err := os.WriteFile(filepath.Join(s.dir, ".env"), []byte(b.String()), 0o600); err != nil {
		s.d.t.Fatal(err)
	}
}

// up is the guide's `docker compose -f <role>.compose.yml up -d`.
func (s *server) up() { s.compose(5*time.Minute, "up", "-d") }

func (s *server) compose(timeout time.Duration, args ...string) string {
	s.d.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	out, err := s.composeErr(ctx, args...)
	if err != nil {
		s.d.t.Fatal(err)
	}
	return out
}

// composeErr runs compose in the server's directory, so it reads the .env
// there as on a droplet; nothing from the test's own environment that the
// role file reads leaks in.
func (s *server) composeErr(ctx context.Context, args ...string) (string, error) {
	// scripts/compose runs from the repository root, so the file is named
	// by its full path and the server's directory is the project
	// directory: where compose reads .env, as in the guide's
	// `cd <dir> && docker compose -f <role>.compose.yml ...`.
	full := append([]string{"-p", s.name, "-f", filepath.Join(s.dir, s.file), "--project-directory", s.dir}, args...)
	cmd := exec.CommandContext(ctx, filepath.Join(s.d.root, "scripts", "compose"), full...)
	cmd.Dir = s.dir
	cmd.Env = cleanEnv()
	var buf bytes.Buffer
	cmd.Stdout, cmd.Stderr = &buf, &buf
	start := time.Now()
	fmt.Fprintf(s.d.log, "\n=== %s %s: compose %s\n", start.Format(time.TimeOnly), s.name, strings.Join(args, " "))
	err := cmd.Run()
	s.d.log.Write(buf.Bytes())
	fmt.Fprintf(s.d.log, "=== %s (%v) err=%v\n", time.Since(start).Round(time.Millisecond), err, err)
	if err != nil {
		return buf.String(), fmt.Errorf("%s: compose %s: %w\n%s", s.name, strings.Join(args, " "), err, tail(buf.String(), 30))
	}
	return buf.String(), nil
}

// cleanEnv is the process environment without the variables the role files
// read (the e2e itself gets POSTGRES_IMAGE and friends), so each server
// sees only its .env.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch {
		case strings.HasPrefix(k, "LB_"), strings.HasPrefix(k, "POSTGRES_"), strings.HasPrefix(k, "REDIS_"),
			strings.HasPrefix(k, "APP_"), strings.HasPrefix(k, "COMPOSE_"), strings.HasPrefix(k, "OPS_"),
			k == "DATABASE_URL", k == "INSTANCE_ID", k == "PRIVATE_IP", k == "HTTP_BIND", k == "HTTP_PORT", k == "HTTPS_BIND", k == "HTTPS_PORT", k == "ADMIN_PORT":
			continue
		}
		env = append(env, kv)
	}
	return env
}

// run runs a command with a deadline and fails the test on error.
func (d *droplets) run(timeout time.Duration, dir string, env []string, name string, args ...string) string {
	d.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	fmt.Fprintf(d.log, "\n=== %s %s %s\n%s", time.Now().Format(time.TimeOnly), name, strings.Join(args, " "), out)
	if err != nil {
		d.t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, tail(string(out), 30))
	}
	return string(out)
}

// waitReady polls http://ip:8080/readyz from the host until it answers 200.
func (d *droplets) waitReady(ip string, timeout time.Duration) {
	d.t.Helper()
	client := &http.Client{Timeout: 2 * time.Second}
	var last string
	waitFor(d.t, timeout, "http://"+ip+":8080/readyz to answer 200", func() bool {
		resp, err := client.Get("http://" + ip + ":8080/readyz")
		if err != nil {
			last = err.Error()
			return false
		}
		resp.Body.Close()
		last = resp.Status
		return resp.StatusCode == http.StatusOK
	}, func() string { return "last: " + last })
}
