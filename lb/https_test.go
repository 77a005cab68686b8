package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pires/go-proxyproto"

	"hits/testkit"
)

// writeCert issues a certificate for hits.test and 127.0.0.1 and writes
// it and its key to dir, returning their paths.
func writeCert(t *testing.T, ca *testkit.CA, dir string) (certFile, keyFile string) {
	t.Helper()
	c, k := ca.Issue(t, time.Now().Add(24*time.Hour), "hits.test", "127.0.0.1")
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, c, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, k, 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

// h2Client speaks HTTP/2 (or HTTP/1.1 if lb offered only that) to addr
// whatever the URL's host, verifying the certificate for serverName with
// roots, and counts the TLS connections it opens.
type h2Client struct {
	*http.Client
	dials atomic.Int64
}

func newH2Client(addr, serverName string, roots *x509.CertPool) *h2Client {
	c := &h2Client{}
	tr := &http.Transport{
		ForceAttemptHTTP2: true,
		TLSClientConfig:   &tls.Config{RootCAs: roots, ServerName: serverName},
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			c.dials.Add(1)
			var d net.Dialer
			return d.DialContext(ctx, network, addr)
		},
	}
	c.Client = &http.Client{Transport: tr, Timeout: 10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	return c
}

func TestHTTPSWithCertificateFiles(t *testing.T) {
	bs := []*backend{startBackend(t, "b1", 0), startBackend(t, "b2", 0), startBackend(t, "b3", 0), startBackend(t, "b4", 0)}
	ca := testkit.NewCA(t)
	certFile, keyFile := writeCert(t, ca, t.TempDir())
	lb := startLB(t, map[string]string{
		"LB_BACKENDS":       addrs(bs...),
		"LB_ALGORITHM":      "round_robin", // the exact shares below are round robin's
		"LB_TLS_ADDR":       "127.0.0.1:0",
		"LB_TLS_CERT_FILE":  certFile,
		"LB_TLS_KEY_FILE":   keyFile,
		"LB_REDIRECT_HTTPS": "true",
		"LB_HSTS_MAX_AGE":   "31536000",
	})
	testkit.Eventually(t, "all four backends healthy", 5*time.Second, lb.allHealthy(t, bs...))
	_, tlsPort, _ := net.SplitHostPort(lb.tlsAddr)
	base := "https://hits.test:" + tlsPort

	t.Run("200 concurrent HTTP/2 requests on one connection are balanced exactly", func(t *testing.T) {
		c := newH2Client(lb.tlsAddr, "hits.test", ca.Pool())
		// One request first, so the 200 find the HTTP/2 connection open
		// (net/http's client dials once per request until it knows the
		// server speaks HTTP/2).
		if resp, err := c.Get(base + "/"); err != nil {
			t.Fatal(err)
		} else {
			resp.Body.Close()
		}
		var mu sync.Mutex // guards counts and protos
		counts, protos := map[string]int{}, map[string]int{}
		var wg sync.WaitGroup
		errs := make(chan error, 200)
		for range 200 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				resp, err := c.Get(base + "/")
				if err != nil {
					errs <- err
					return
				}
				body, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err != nil || resp.StatusCode != 200 {
					errs <- err
					return
				}
				mu.Lock()
				counts[string(body)]++
				protos[resp.Proto]++
				mu.Unlock()
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatalf("request failed: %v", err)
		}
		if protos["HTTP/2.0"] != 200 {
			t.Errorf("protocols %v, want 200 HTTP/2.0", protos)
		}
		if n := c.dials.Load(); n != 1 {
			t.Errorf("client opened %d connections, want 1", n)
		}
		for _, b := range bs {
			if counts[b.name] != 50 {
				t.Errorf("%s answered %d, want 50 (%v)", b.name, counts[b.name], counts)
			}
		}
	})

	t.Run("backends see X-Forwarded-Proto https; responses carry HSTS", func(t *testing.T) {
		c := newH2Client(lb.tlsAddr, "hits.test", ca.Pool())
		resp, err := c.Get(base + "/")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if got := resp.Header.Get("Strict-Transport-Security"); got != "max-age=31536000" {
			t.Errorf("Strict-Transport-Security %q, want max-age=31536000", got)
		}
		for _, b := range bs {
			if b.name == string(body) {
				if got := b.proto.Load().(string); got != "https" {
					t.Errorf("X-Forwarded-Proto %q, want https", got)
				}
				if got := b.xff.Load().(string); got != "127.0.0.1" {
					t.Errorf("X-Forwarded-For %q, want 127.0.0.1", got)
				}
			}
		}
	})

	t.Run("HTTP/1.1 over TLS too", func(t *testing.T) {
		tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool(), ServerName: "hits.test", NextProtos: []string{"http/1.1"}},
			DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, network, lb.tlsAddr)
			}}
		defer tr.CloseIdleConnections()
		resp, err := (&http.Client{Transport: tr, Timeout: 5 * time.Second}).Get(base + "/")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 || resp.Proto != "HTTP/1.1" {
			t.Fatalf("got %d %s, want 200 HTTP/1.1", resp.StatusCode, resp.Proto)
		}
	})

	t.Run("plain HTTP answers 308 to the same host, path and query on https", func(t *testing.T) {
		noFollow := &http.Client{Timeout: 5 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
		for _, method := range []string{"GET", "POST"} {
			req, _ := http.NewRequest(method, lb.url+"/a/b?x=1&y=%20", strings.NewReader("body"))
			req.Host = "hits.test:8080"
			resp, err := noFollow.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			want := "https://hits.test:" + tlsPort + "/a/b?x=1&y=%20"
			if resp.StatusCode != http.StatusPermanentRedirect || resp.Header.Get("Location") != want {
				t.Errorf("%s: %d Location %q, want 308 %q", method, resp.StatusCode, resp.Header.Get("Location"), want)
			}
			if resp.Header.Get("Strict-Transport-Security") != "" {
				t.Errorf("%s: plain HTTP answer carries HSTS", method)
			}
		}
	})

	t.Run("status shows the listeners and the certificate", func(t *testing.T) {
		resp, err := http.Get(lb.admin + "/status")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var s struct {
			Listeners struct {
				HTTPS    string `json:"https"`
				Redirect bool   `json:"redirect_https"`
				TLS      struct {
					Source       string `json:"source"`
					Certificates []struct {
						Names    []string  `json:"names"`
						NotAfter time.Time `json:"not_after"`
						State    string    `json:"state"`
					} `json:"certificates"`
				} `json:"tls"`
			} `json:"listeners"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&s); err != nil {
			t.Fatal(err)
		}
		l := s.Listeners
		if l.HTTPS != lb.tlsAddr || !l.Redirect || l.TLS.Source != "files" || len(l.TLS.Certificates) != 1 ||
			strings.Join(l.TLS.Certificates[0].Names, ",") != "hits.test" || l.TLS.Certificates[0].State != "loaded" ||
			time.Until(l.TLS.Certificates[0].NotAfter) < 23*time.Hour {
			t.Fatalf("listeners = %+v", l)
		}
	})
}

func TestHTTPSStickyCookieIsSecure(t *testing.T) {
	b1 := startBackend(t, "b1", 0)
	ca := testkit.NewCA(t)
	certFile, keyFile := writeCert(t, ca, t.TempDir())
	lb := startLB(t, map[string]string{
		"LB_BACKENDS":        addrs(b1),
		"LB_TLS_ADDR":        "127.0.0.1:0",
		"LB_TLS_CERT_FILE":   certFile,
		"LB_TLS_KEY_FILE":    keyFile,
		"LB_STICKY_SESSIONS": "cookies",
	})
	testkit.Eventually(t, "backend healthy", 5*time.Second, lb.allHealthy(t, b1))
	c := newH2Client(lb.tlsAddr, "hits.test", ca.Pool())
	resp, err := c.Get("https://hits.test/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if ck := resp.Cookies(); len(ck) != 1 || !ck[0].Secure || !ck[0].HttpOnly {
		t.Errorf("over https: cookies %v, want one Secure HttpOnly", resp.Header.Values("Set-Cookie"))
	}
	resp, err = http.Get(lb.url + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if ck := resp.Cookies(); len(ck) != 1 || ck[0].Secure {
		t.Errorf("over plain HTTP: cookies %v, want one without Secure", resp.Header.Values("Set-Cookie"))
	}
}

func TestHTTP2TruncatedResponseIsAnError(t *testing.T) {
	// A backend that dies in the middle of a chunked body: an HTTP/2
	// client must see an error, not a short body that looks complete.
	// (With a Content-Length, net/http's server catches the shortfall
	// itself; without one only the proxy knows.)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				for {
					req, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					io.Copy(io.Discard, req.Body)
					if req.URL.Path == "/healthz" {
						io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
						continue
					}
					io.WriteString(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\na\r\n0123456789\r\n")
					return
				}
			}()
		}
	}()
	ca := testkit.NewCA(t)
	certFile, keyFile := writeCert(t, ca, t.TempDir())
	lb := startLB(t, map[string]string{
		"LB_BACKENDS":      ln.Addr().String(),
		"LB_TLS_ADDR":      "127.0.0.1:0",
		"LB_TLS_CERT_FILE": certFile,
		"LB_TLS_KEY_FILE":  keyFile,
	})
	testkit.Eventually(t, "backend healthy", 5*time.Second, func() bool { return lb.healthy(t, ln.Addr().String()) })
	c := newH2Client(lb.tlsAddr, "hits.test", ca.Pool())
	resp, err := c.Get("https://hits.test/")
	if err != nil {
		// The stream was reset before the buffered headers went out.
		if !strings.Contains(err.Error(), "stream error") {
			t.Fatalf("got %v, want a stream error", err)
		}
		return
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err == nil {
		t.Fatalf("read %d bytes %q and a clean end, want a stream error", len(b), b)
	}
}

// proxyHeader is a PROXY header claiming the client 203.0.113.7.
func proxyHeader(version byte) *proxyproto.Header {
	return &proxyproto.Header{
		Version: version, Command: proxyproto.PROXY, TransportProtocol: proxyproto.TCPv4,
		SourceAddr:      &net.TCPAddr{IP: net.ParseIP("203.0.113.7"), Port: 51000},
		DestinationAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.1"), Port: 443},
	}
}

func TestProxyProtocolOnBothListeners(t *testing.T) {
	b1 := startBackend(t, "b1", 0)
	ca := testkit.NewCA(t)
	certFile, keyFile := writeCert(t, ca, t.TempDir())
	lb := startLB(t, map[string]string{
		"LB_BACKENDS":            addrs(b1),
		"LB_TLS_ADDR":            "127.0.0.1:0",
		"LB_TLS_CERT_FILE":       certFile,
		"LB_TLS_KEY_FILE":        keyFile,
		"LB_PROXY_PROTOCOL_FROM": "127.0.0.1/32",
	})
	testkit.Eventually(t, "backend healthy", 5*time.Second, lb.allHealthy(t, b1))
	plainAddr := strings.TrimPrefix(lb.url, "http://")

	// exchange connects from src, sends the header (if any), optionally
	// starts TLS, and sends one GET; it returns the status, or an error.
	exchange := func(src, addr string, h *proxyproto.Header, useTLS bool) (int, error) {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 2 * time.Second}
		raw, err := d.Dial("tcp", addr)
		if err != nil {
			return 0, err
		}
		defer raw.Close()
		raw.SetDeadline(time.Now().Add(5 * time.Second))
		if h != nil {
			if _, err := h.WriteTo(raw); err != nil {
				return 0, err
			}
		}
		var c net.Conn = raw
		if useTLS {
			tc := tls.Client(raw, &tls.Config{RootCAs: ca.Pool(), ServerName: "hits.test", NextProtos: []string{"http/1.1"}})
			if err := tc.Handshake(); err != nil {
				return 0, err
			}
			c = tc
		}
		if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: hits.test\r\nConnection: close\r\n\r\n"); err != nil {
			return 0, err
		}
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			return 0, err
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode, nil
	}
	for _, listener := range []struct {
		name string
		addr string
		tls  bool
	}{{"plain", plainAddr, false}, {"tls", lb.tlsAddr, true}} {
		for _, v := range []byte{1, 2} {
			t.Run(listener.name+" trusted v"+strconv.Itoa(int(v))+" header sets the client address", func(t *testing.T) {
				status, err := exchange("127.0.0.1", listener.addr, proxyHeader(v), listener.tls)
				if err != nil || status != 200 {
					t.Fatalf("got %d, %v; want 200", status, err)
				}
				if got := b1.xff.Load().(string); got != "203.0.113.7" {
					t.Fatalf("backend saw X-Forwarded-For %q, want 203.0.113.7", got)
				}
			})
			t.Run(listener.name+" untrusted v"+strconv.Itoa(int(v))+" header is refused", func(t *testing.T) {
				before := b1.served.Load()
				if status, err := exchange("127.0.0.2", listener.addr, proxyHeader(v), listener.tls); err == nil {
					t.Fatalf("got %d, want the connection refused", status)
				}
				if n := b1.served.Load() - before; n != 0 {
					t.Fatalf("backend served %d requests from a refused connection", n)
				}
			})
		}
		t.Run(listener.name+" trusted peer without a header is refused", func(t *testing.T) {
			if status, err := exchange("127.0.0.1", listener.addr, nil, listener.tls); err == nil {
				t.Fatalf("got %d, want the connection refused", status)
			}
		})
		t.Run(listener.name+" untrusted plain request is served with its own address", func(t *testing.T) {
			status, err := exchange("127.0.0.2", listener.addr, nil, listener.tls)
			if err != nil || status != 200 {
				t.Fatalf("got %d, %v; want 200", status, err)
			}
			if got := b1.xff.Load().(string); got != "127.0.0.2" {
				t.Fatalf("backend saw X-Forwarded-For %q, want 127.0.0.2", got)
			}
		})
	}
}

func TestHTTPSStartUpErrors(t *testing.T) {
	ca := testkit.NewCA(t)
	dir := t.TempDir()
	certFile, keyFile := writeCert(t, ca, dir)
	otherCert, _ := writeCert(t, ca, t.TempDir())
	_ = otherCert
	_, otherKey := writeCert(t, ca, t.TempDir())
	for _, tc := range []struct {
		name string
		env  map[string]string
		want string
	}{
		{"missing certificate file", map[string]string{"LB_TLS_CERT_FILE": filepath.Join(dir, "nope.pem"), "LB_TLS_KEY_FILE": keyFile}, "LB_TLS_CERT_FILE"},
		{"key that does not match", map[string]string{"LB_TLS_CERT_FILE": certFile, "LB_TLS_KEY_FILE": otherKey}, "private key does not match"},
		{"invalid domain", map[string]string{"LB_ACME_DOMAINS": "hits.test,bad_name!", "LB_ACME_CACHE_DIR": dir}, "LB_ACME_DOMAINS"},
		{"roots file missing", map[string]string{"LB_ACME_DOMAINS": "hits.test", "LB_ACME_CACHE_DIR": dir, "LB_ACME_CA_ROOTS": filepath.Join(dir, "none.pem")}, "LB_ACME_CA_ROOTS"},
		{"roots file without PEM", map[string]string{"LB_ACME_DOMAINS": "hits.test", "LB_ACME_CACHE_DIR": dir, "LB_ACME_CA_ROOTS": keyFile}, "no PEM certificate"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := map[string]string{"LB_BACKENDS": "127.0.0.1:1", "LB_ADDR": "127.0.0.1:0", "LB_ADMIN_ADDR": "127.0.0.1:0", "LB_TLS_ADDR": "127.0.0.1:0"}
			for k, v := range tc.env {
				env[k] = v
			}
			var out syncBuffer
			err := run(context.Background(), []string{"lb"}, func(k string) string { return env[k] }, &out, &out, nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("run = %v, want an error mentioning %q", err, tc.want)
			}
		})
	}
}

func TestHTTP2KeepsTheBodyLimitAndTimeout(t *testing.T) {
	b1 := startBackend(t, "b1", 0)
	ca := testkit.NewCA(t)
	certFile, keyFile := writeCert(t, ca, t.TempDir())
	lb := startLB(t, map[string]string{
		"LB_BACKENDS":            addrs(b1),
		"LB_TLS_ADDR":            "127.0.0.1:0",
		"LB_TLS_CERT_FILE":       certFile,
		"LB_TLS_KEY_FILE":        keyFile,
		"LB_MAX_BODY_BYTES":      "1000",
		"LB_CLIENT_BODY_TIMEOUT": "300ms",
	})
	testkit.Eventually(t, "backend healthy", 5*time.Second, lb.allHealthy(t, b1))
	c := newH2Client(lb.tlsAddr, "hits.test", ca.Pool())
	post := func(body io.Reader, length int64) int {
		t.Helper()
		req, _ := http.NewRequest("POST", "https://hits.test/", body)
		req.ContentLength = length
		resp, err := c.Do(req)
		if err != nil {
			t.Fatalf("POST: %v", err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.Proto != "HTTP/2.0" {
			t.Fatalf("proto %s", resp.Proto)
		}
		return resp.StatusCode
	}
	if got := post(strings.NewReader(strings.Repeat("x", 500)), 500); got != 200 {
		t.Errorf("500-byte body: %d, want 200", got)
	}
	if got := post(strings.NewReader(strings.Repeat("x", 2000)), 2000); got != 413 {
		t.Errorf("2000-byte body with a length: %d, want 413", got)
	}
	if got := post(io.MultiReader(strings.NewReader(strings.Repeat("x", 2000))), -1); got != 413 {
		t.Errorf("2000-byte body without a length: %d, want 413", got)
	}
	pr, pw := io.Pipe()
	defer pw.Close()
	go pw.Write([]byte("partial")) // then nothing: the client stalls mid-body
	if got := post(pr, -1); got != 408 {
		t.Errorf("stalled body: %d, want 408", got)
	}
}
