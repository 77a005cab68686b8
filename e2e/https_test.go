//go:build e2e

package e2e

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"hits/testkit"
)

// testCert is a throwaway CA and a certificate it issued for one name.
type testCert struct {
	roots           *x509.CertPool
	certPEM, keyPEM []byte
	spki            string // base64 SHA-256 of the leaf's public key, for Chromium
}

func newTestCert(t *testing.T, name string) testCert {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "hits e2e CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: name}, DNSNames: []string{name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	kder, _ := x509.MarshalECPrivateKey(key)
	sum := sha256.Sum256(leaf.RawSubjectPublicKeyInfo)
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	return testCert{
		roots:   roots,
		certPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		keyPEM:  pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}),
		spki:    base64.StdEncoding.EncodeToString(sum[:]),
	}
}

// stepHTTPS: lb recreated with a TLS listener (a certificate from files the
// test made) and LB_REDIRECT_HTTPS. A Go HTTP/2 client sends 100 concurrent
// hits on one connection: 100 distinct totals, spread exactly over the
// replicas. Headless Chromium opens the plain URL, is redirected (308) to
// https, and loads the page over HTTP/2, each reload counted once.
func stepHTTPS(t *testing.T, p *project, rep *report) {
	const host = "hits.test"
	cert := newTestCert(t, host)
	dir := filepath.Join(p.out, "tls")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	// Readable by the image's user (65532): the files hold a throwaway key.
	for name, b := range map[string][]byte{"cert.pem": cert.certPEM, "key.pem": cert.keyPEM} {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	httpsPort := testkit.Port(t)
	for k, v := range map[string]string{
		"E2E_TLS_DIR": dir, "HTTPS_BIND": "127.0.0.1", "HTTPS_PORT": strconv.Itoa(httpsPort),
		"LB_TLS_ADDR": ":8443", "LB_TLS_CERT_FILE": "/tls/cert.pem", "LB_TLS_KEY_FILE": "/tls/key.pem",
		"LB_REDIRECT_HTTPS": "true", "LB_HTTPS_PUBLIC_PORT": strconv.Itoa(httpsPort),
	} {
		p.env[k] = v
	}
	p.extraFiles = append(p.extraFiles, filepath.Join(p.root, "e2e", "https.compose.yml"))
	p.mustCompose(5*time.Minute, "up", "-d", "--no-deps", "lb")
	p.waitHealthy(4, time.Minute)
	base := fmt.Sprintf("https://%s:%d", host, httpsPort)

	// Go's HTTP/2 client, every connection to the published port.
	var dials int
	var dialMu sync.Mutex // guards dials
	tr := &http.Transport{
		ForceAttemptHTTP2: true,
		TLSClientConfig:   &tls.Config{RootCAs: cert.roots},
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			dialMu.Lock()
			dials++
			dialMu.Unlock()
			var d net.Dialer
			return d.DialContext(ctx, network, "127.0.0.1:"+strconv.Itoa(httpsPort))
		},
	}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	get := func() (hit, string, error) {
		req, _ := http.NewRequest("GET", base+"/", nil)
		req.Header.Set("Accept", "application/json")
		resp, err := client.Do(req)
		if err != nil {
			return hit{}, "", err
		}
		defer resp.Body.Close()
		var v hit
		if resp.StatusCode != 200 {
			return v, resp.Proto, fmt.Errorf("status %d", resp.StatusCode)
		}
		return v, resp.Proto, json.NewDecoder(resp.Body).Decode(&v)
	}
	// One request opens the connection, so the 100 find it (the client
	// dials per request until it knows the server speaks HTTP/2).
	waitFor(t, time.Minute, "lb to answer over HTTPS", func() bool { _, _, err := get(); return err == nil }, func() string { return "" })
	dialsBefore := dials
	var mu sync.Mutex // guards totals, shares, protos, errs
	totals, shares, protos := map[int64]bool{}, map[string]int{}, map[string]int{}
	var errs []error
	var wg sync.WaitGroup
	for range 100 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			v, proto, err := get()
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
				return
			}
			totals[v.Total] = true
			shares[v.Instance]++
			protos[proto]++
		}()
	}
	wg.Wait()
	if len(errs) > 0 {
		t.Fatalf("%d of 100 HTTP/2 requests failed, first: %v", len(errs), errs[0])
	}
	if len(totals) != 100 || protos["HTTP/2.0"] != 100 || dials != dialsBefore {
		t.Errorf("100 concurrent: %d distinct totals, protocols %v, %d new connections; want 100, all HTTP/2.0, 0", len(totals), protos, dials-dialsBefore)
	}
	checkSpread(t, shares, 100, 4)
	rep.add("https: 100 concurrent HTTP/2 requests on one connection: %d distinct totals, shares %v", len(totals), sortedShares(shares))

	// The browser: plain URL → 308 → https over HTTP/2.
	b := newBrowser(t,
		chromedp.Flag("host-resolver-rules", "MAP "+host+" 127.0.0.1"),
		// Trust exactly the test's certificate, not every certificate.
		chromedp.Flag("ignore-certificate-errors-spki-list", cert.spki),
	)
	s := b.session(t)
	var pages []page
	var protosSeen []string
	var lastURL string
	// Five loads in a row, each total one more than the last. Chromium
	// aborts a load with net::ERR_NETWORK_CHANGED when an interface comes or
	// goes on the host (Docker adding a container's veth); the load may
	// still have counted, so the whole sequence starts again, once.
	run := func() error {
		pages, protosSeen = nil, nil
		for i := range 5 {
			url := base + "/"
			if i == 0 {
				url = fmt.Sprintf("http://%s:%d/", host, p.httpPort) // redirected
			}
			pg, err := s.load(url, i > 0)
			if err != nil {
				return err
			}
			var proto string
			ctx, cancel := context.WithTimeout(s.ctx, 10*time.Second)
			err = chromedp.Run(ctx,
				chromedp.Evaluate(`performance.getEntriesByType("navigation")[0].nextHopProtocol`, &proto),
				chromedp.Location(&lastURL))
			cancel()
			if err != nil {
				return err
			}
			pages = append(pages, pg)
			protosSeen = append(protosSeen, proto)
		}
		return nil
	}
	err := run()
	if err != nil && strings.Contains(err.Error(), "ERR_NETWORK_CHANGED") {
		t.Logf("browser: %v; the five loads start again", err)
		err = run()
	}
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(lastURL, base+"/") {
		t.Errorf("browser ended at %s, want %s/", lastURL, base)
	}
	for i, proto := range protosSeen {
		if proto != "h2" {
			t.Errorf("load %d used %q, want h2", i+1, proto)
		}
		if i > 0 && pages[i].Total != pages[i-1].Total+1 {
			t.Errorf("load %d: total %d, want %d (one more than the last)", i+1, pages[i].Total, pages[i-1].Total+1)
		}
	}
	s.screenshot(filepath.Join(p.out, "https.png"))
	rep.add("https: browser http://%s:%d/ → 308 → %s, protocols %v, totals %d..%d", host, p.httpPort, lastURL, protosSeen, pages[0].Total, pages[len(pages)-1].Total)
}
