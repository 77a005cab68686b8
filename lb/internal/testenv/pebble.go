package testenv

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"hits/testkit"
)

// PebbleVersion is the Let's Encrypt test server the ACME tests run: the
// newest release that builds with this repository's Go.
const PebbleVersion = "v2.10.3"

// PebbleBin returns the directory holding pebble and pebble-challtestsrv,
// building them from the Go module proxy into out/tools/pebble-<version>
// under the repository root the first time (about 10 s with a warm module
// cache). `make pebble` does the same ahead of the tests.
func PebbleBin(t testing.TB) string {
	t.Helper()
	root, err := repoRoot()
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(root, "out", "tools", "pebble-"+PebbleVersion)
	if have(dir, "pebble") && have(dir, "pebble-challtestsrv") {
		return dir
	}
	buildMu.Lock()
	defer buildMu.Unlock()
	if have(dir, "pebble") && have(dir, "pebble-challtestsrv") {
		return dir
	}
	cmd := exec.Command("go", "install",
		"github.com/letsencrypt/pebble/v2/cmd/pebble@"+PebbleVersion,
		"github.com/letsencrypt/pebble/v2/cmd/pebble-challtestsrv@"+PebbleVersion)
	cmd.Env = append(os.Environ(), "GOBIN="+dir, "CGO_ENABLED=0", "GOFLAGS=-buildvcs=false")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build pebble %s: %v\n%s", PebbleVersion, err, out)
	}
	return dir
}

var buildMu sync.Mutex // one build per test binary; go install is safe across binaries

func have(dir, name string) bool {
	fi, err := os.Stat(filepath.Join(dir, name))
	return err == nil && fi.Mode().IsRegular()
}

// repoRoot is the nearest parent directory with both app/ and lb/.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if have(dir, "Makefile") && isDir(filepath.Join(dir, "lb")) && isDir(filepath.Join(dir, "app")) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no repository root above %s", dir)
		}
		dir = parent
	}
}

func isDir(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.IsDir()
}

// Pebble is a running pebble (the ACME server) with pebble-challtestsrv
// as its DNS server, which answers every A query with 127.0.0.1: pebble
// validates challenges against listeners on loopback.
type Pebble struct {
	// Directory is the ACME directory URL; RootsPEM verifies its API
	// (LB_ACME_CA_ROOTS).
	Directory string
	RootsPEM  []byte
	// RootsFile holds RootsPEM.
	RootsFile string

	mgmt   string // management API base URL
	client *http.Client
	cmds   []*exec.Cmd
	stop   sync.Once
}

// PebbleOptions are the ports pebble validates challenges on: HTTPPort
// (HTTP-01) and TLSPort (TLS-ALPN-01). A port where nothing listens makes
// that challenge fail, so a test can force the other one.
type PebbleOptions struct {
	HTTPPort, TLSPort int
	// Validity is how long issued certificates are valid; if zero,
	// pebble's default (90 days). A short one makes clients renew soon.
	Validity time.Duration
}

// StartPebble starts challtestsrv and pebble on free loopback ports and
// stops them when the test ends. Their output goes to the test log on
// failure.
func StartPebble(t testing.TB, opts PebbleOptions) *Pebble {
	t.Helper()
	bin := PebbleBin(t)
	dir := t.TempDir()
	ca := testkit.NewCA(t)
	certPEM, keyPEM := ca.Issue(t, time.Now().Add(24*time.Hour), "localhost", "127.0.0.1")
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	apiPort, mgmtPort, dnsPort, dnsMgmtPort := testkit.Port(t), testkit.Port(t), testkit.Port(t), testkit.Port(t)
	cfg := map[string]any{"pebble": map[string]any{
		"listenAddress":                  "127.0.0.1:" + strconv.Itoa(apiPort),
		"managementListenAddress":        "127.0.0.1:" + strconv.Itoa(mgmtPort),
		"certificate":                    write("api-cert.pem", certPEM),
		"privateKey":                     write("api-key.pem", keyPEM),
		"httpPort":                       opts.HTTPPort,
		"tlsPort":                        opts.TLSPort,
		"ocspResponderURL":               "",
		"externalAccountBindingRequired": false,
		"retryAfter":                     map[string]int{"authz": 1, "order": 1},
		"keyAlgorithm":                   "ecdsa",
	}}
	if opts.Validity > 0 {
		cfg["pebble"].(map[string]any)["profiles"] = map[string]any{
			"default": map[string]any{"description": "short-lived, for renewal tests", "validityPeriod": int(opts.Validity / time.Second)},
		}
	}
	js, _ := json.Marshal(cfg)
	p := &Pebble{
		Directory: fmt.Sprintf("https://127.0.0.1:%d/dir", apiPort),
		RootsPEM:  ca.PEM,
		RootsFile: write("pebble-api-root.pem", ca.PEM),
		mgmt:      fmt.Sprintf("https://127.0.0.1:%d", mgmtPort),
		client:    &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool()}}},
	}
	log := &lockedLog{}
	start := func(name string, args []string, env ...string) {
		cmd := exec.Command(filepath.Join(bin, name), args...)
		cmd.Env = append(os.Environ(), env...)
		cmd.Stdout, cmd.Stderr = log, log
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		if err := cmd.Start(); err != nil {
			t.Fatalf("start %s: %v", name, err)
		}
		p.cmds = append(p.cmds, cmd)
	}
	start("pebble-challtestsrv", []string{
		"-dnsserver", "127.0.0.1:" + strconv.Itoa(dnsPort),
		"-management", "127.0.0.1:" + strconv.Itoa(dnsMgmtPort),
		"-defaultIPv4", "127.0.0.1", "-defaultIPv6", "",
		"-http01", "", "-https01", "", "-tlsalpn01", "", "-doh", "",
	})
	start("pebble", []string{"-config", write("pebble.json", js), "-dnsserver", "127.0.0.1:" + strconv.Itoa(dnsPort)},
		// No random sleeps before validation, no random nonce rejections:
		// the tests are about lb, not about surviving pebble's chaos.
		"PEBBLE_VA_NOSLEEP=1", "PEBBLE_WFE_NONCEREJECT=0")
	t.Cleanup(func() {
		p.Stop()
		if t.Failed() {
			t.Logf("pebble and challtestsrv output:\n%s", log.String())
		}
	})
	testkit.Eventually(t, "pebble's directory to answer", 20*time.Second, func() bool {
		resp, err := p.client.Get(p.Directory)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	return p
}

// IssuerRoots is a pool with pebble's current issuing root: what a client
// needs to verify a certificate pebble issued.
func (p *Pebble) IssuerRoots(t testing.TB) *x509.CertPool {
	t.Helper()
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(p.IssuerRootsPEM(t)) {
		t.Fatal("pebble's /roots/0 holds no certificate")
	}
	return pool
}

// IssuerRootsPEM is pebble's issuing root as PEM (for curl --cacert).
func (p *Pebble) IssuerRootsPEM(t testing.TB) []byte {
	t.Helper()
	resp, err := p.client.Get(p.mgmt + "/roots/0")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("pebble /roots/0: %d %v", resp.StatusCode, err)
	}
	return b
}

// Stop ends pebble and challtestsrv (a test may stop them early to show
// lb no longer needs them) and waits for them.
func (p *Pebble) Stop() {
	p.stop.Do(func() {
		for _, c := range p.cmds {
			c.Process.Signal(syscall.SIGTERM)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		for _, c := range p.cmds {
			done := make(chan struct{})
			go func() { c.Wait(); close(done) }()
			select {
			case <-done:
			case <-ctx.Done():
				c.Process.Kill()
				<-done
			}
		}
	})
}

// lockedLog collects a child process's output.
type lockedLog struct {
	mu sync.Mutex // guards b
	b  []byte
}

func (l *lockedLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.b = append(l.b, p...)
	return len(p), nil
}

func (l *lockedLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return string(l.b)
}
