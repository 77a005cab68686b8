package main

import (
	"crypto/tls"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"hits/lb/internal/testenv"
	"hits/testkit"
)

// acmeState is the first certificate's ACME state from /status.
func (l *lbRun) acmeState(t *testing.T) (state, errMsg string) {
	t.Helper()
	resp, err := http.Get(l.admin + "/status")
	if err != nil {
		t.Fatalf("GET /status: %v", err)
	}
	defer resp.Body.Close()
	var s struct {
		Listeners struct {
			TLS struct {
				Certificates []struct {
					State string `json:"state"`
					Error string `json:"error"`
				} `json:"certificates"`
			} `json:"tls"`
		} `json:"listeners"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&s); err != nil || len(s.Listeners.TLS.Certificates) == 0 {
		t.Fatalf("decode /status: %v %+v", err, s)
	}
	c := s.Listeners.TLS.Certificates[0]
	return c.State, c.Error
}

// startACMELB starts lb on the given loopback ports with a certificate
// for hits.test from pebble.
func startACMELB(t *testing.T, p *testenv.Pebble, be *backend, httpPort, tlsPort int, cacheDir string) *lbRun {
	t.Helper()
	return startLB(t, map[string]string{
		"LB_BACKENDS":       be.addr,
		"LB_ADDR":           "127.0.0.1:" + strconv.Itoa(httpPort),
		"LB_TLS_ADDR":       "127.0.0.1:" + strconv.Itoa(tlsPort),
		"LB_ACME_DOMAINS":   "hits.test",
		"LB_ACME_DIRECTORY": p.Directory,
		"LB_ACME_CA_ROOTS":  p.RootsFile,
		"LB_ACME_CACHE_DIR": cacheDir,
		"LB_REDIRECT_HTTPS": "true",
	})
}

// verifyIssued does one HTTP/2 GET to hits.test on tlsPort, verifying the
// certificate with roots, and returns the issuer's name.
func verifyIssued(t *testing.T, tlsPort int, roots []byte) string {
	t.Helper()
	pool := testkit.NewCA(t).Pool() // an empty-ish pool, then pebble's root
	pool.AppendCertsFromPEM(roots)
	c := newH2Client("127.0.0.1:"+strconv.Itoa(tlsPort), "hits.test", pool)
	resp, err := c.Get("https://hits.test:" + strconv.Itoa(tlsPort) + "/")
	if err != nil {
		t.Fatalf("GET over TLS: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || resp.Proto != "HTTP/2.0" || string(body) != "b1" {
		t.Fatalf("got %d %s %q, want 200 HTTP/2.0 b1", resp.StatusCode, resp.Proto, body)
	}
	return resp.TLS.PeerCertificates[0].Issuer.CommonName
}

func TestACMEWithPebble(t *testing.T) {
	for _, tc := range []struct {
		name string
		// which of pebble's validation ports point at lb: the other
		// points at a closed port, so only this challenge can succeed
		http01, tlsALPN01 bool
	}{
		{"TLS-ALPN-01 on the TLS listener", false, true},
		{"HTTP-01 on the plain listener, redirect on", true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			be := startBackend(t, "b1", 0)
			httpPort, tlsPort, closed := testkit.Port(t), testkit.Port(t), testkit.Port(t)
			opts := testenv.PebbleOptions{HTTPPort: closed, TLSPort: closed}
			if tc.http01 {
				opts.HTTPPort = httpPort
			}
			if tc.tlsALPN01 {
				opts.TLSPort = tlsPort
			}
			p := testenv.StartPebble(t, opts)
			cache := t.TempDir()
			lb := startACMELB(t, p, be, httpPort, tlsPort, cache)
			testkit.Eventually(t, "a certificate from pebble", 60*time.Second, func() bool {
				state, _ := lb.acmeState(t)
				return state == "ready"
			})
			roots := p.IssuerRootsPEM(t)
			if issuer := verifyIssued(t, tlsPort, roots); !strings.Contains(issuer, "Pebble") {
				t.Errorf("issuer %q, want pebble's", issuer)
			}

			// Plain HTTP redirects, except the challenge path.
			noFollow := &http.Client{Timeout: 5 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
			req, _ := http.NewRequest("GET", lb.url+"/?q=1", nil)
			req.Host = "hits.test"
			resp, err := noFollow.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if want := "https://hits.test:" + strconv.Itoa(tlsPort) + "/?q=1"; resp.StatusCode != 308 || resp.Header.Get("Location") != want {
				t.Errorf("plain GET: %d %q, want 308 %q", resp.StatusCode, resp.Header.Get("Location"), want)
			}
			req, _ = http.NewRequest("GET", lb.url+"/.well-known/acme-challenge/unknown-token", nil)
			req.Host = "hits.test"
			if resp, err = noFollow.Do(req); err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != 404 {
				t.Errorf("unknown challenge token: %d, want 404 (answered by the challenge handler, not redirected)", resp.StatusCode)
			}

			if !tc.tlsALPN01 {
				return
			}
			// Restarted with the same cache, with pebble gone: the cached
			// certificate is served without asking the ACME server.
			lb.cancel()
			if err := <-lb.done; err != nil {
				t.Fatalf("lb: %v", err)
			}
			lb.done <- nil // for the cleanup registered by startLB
			p.Stop()
			lb2 := startACMELB(t, p, be, testkit.Port(t), tlsPort, cache)
			testkit.Eventually(t, "the cached certificate", 10*time.Second, func() bool {
				state, _ := lb2.acmeState(t)
				return state == "ready"
			})
			verifyIssued(t, tlsPort, roots)
		})
	}
}

func TestACMEServerDownKeepsPlainHTTPServing(t *testing.T) {
	be := startBackend(t, "b1", 0)
	closed := testkit.Port(t)
	lb := startLB(t, map[string]string{
		"LB_BACKENDS":       be.addr,
		"LB_TLS_ADDR":       "127.0.0.1:0",
		"LB_ACME_DOMAINS":   "hits.test",
		"LB_ACME_DIRECTORY": "https://127.0.0.1:" + strconv.Itoa(closed) + "/dir",
		"LB_ACME_CACHE_DIR": t.TempDir(),
	})
	testkit.Eventually(t, "the failed attempt in /status", 20*time.Second, func() bool {
		state, msg := lb.acmeState(t)
		return state == "retrying" && strings.Contains(msg, "connection refused")
	})
	testkit.Eventually(t, "the backend healthy", 5*time.Second, lb.allHealthy(t, be))
	if status, body := get(t, &http.Client{Timeout: 5 * time.Second}, lb.url+"/"); status != 200 || body != "b1" {
		t.Fatalf("plain GET: %d %q, want 200 b1", status, body)
	}
	if !strings.Contains(lb.out.String(), "ACME: no certificate yet") {
		t.Error("the failed attempt was not logged")
	}
	// A handshake has no certificate to offer yet: it fails, lb stays up.
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 2 * time.Second}, "tcp", lb.tlsAddr, &tls.Config{ServerName: "hits.test", InsecureSkipVerify: true})
	if err == nil {
		c.Close()
		t.Fatal("handshake succeeded with no certificate")
	}
}

func TestShutdownDoesNotWaitForAHangingACMEServer(t *testing.T) {
	// An "ACME server" that accepts connections and never answers.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 16)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	defer func() {
		for len(accepted) > 0 {
			(<-accepted).Close()
		}
	}()
	be := startBackend(t, "b1", 0)
	lb := startLB(t, map[string]string{
		"LB_BACKENDS":       be.addr,
		"LB_TLS_ADDR":       "127.0.0.1:0",
		"LB_ACME_DOMAINS":   "hits.test",
		"LB_ACME_DIRECTORY": "https://" + ln.Addr().String() + "/dir",
		"LB_ACME_CACHE_DIR": t.TempDir(),
	})
	select {
	case c := <-accepted: // lb is now waiting on the hanging server
		accepted <- c
	case <-time.After(10 * time.Second):
		t.Fatal("lb never contacted the ACME server")
	}
	start := time.Now()
	lb.cancel()
	select {
	case err := <-lb.done:
		if err != nil {
			t.Fatalf("run: %v", err)
		}
		lb.done <- nil // for startLB's cleanup
	case <-time.After(10 * time.Second):
		t.Fatal("lb did not stop within 10s while an ACME request hung")
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("shutdown took %v", d)
	}
}
