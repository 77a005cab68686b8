package certs

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"testing"
	"time"

	"hits/lb/internal/testenv"
	"hits/testkit"
)

// TestACMERenewsWithoutARestart gets a certificate from pebble that is
// valid for 30 s, and watches the TLS listener serve a renewed one before
// it expires, with nothing restarted.
func TestACMERenewsWithoutARestart(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	p := testenv.StartPebble(t, testenv.PebbleOptions{
		HTTPPort: testkit.Port(t), // nothing there: TLS-ALPN-01 only
		TLSPort:  ln.Addr().(*net.TCPAddr).Port,
		Validity: 30 * time.Second,
	})
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(p.RootsPEM)
	a, err := NewACME(ACMEOptions{
		Domains:   []string{"hits.test"},
		Directory: p.Directory,
		Roots:     roots,
		CacheDir:  t.TempDir(),
		RetryMin:  time.Second,
		Recheck:   200 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	tln := tls.NewListener(ln, &tls.Config{GetCertificate: a.GetCertificate, NextProtos: append([]string{"http/1.1"}, a.NextProtos()...)})
	go func() {
		for {
			c, err := tln.Accept()
			if err != nil {
				return
			}
			go func() {
				c.SetDeadline(time.Now().Add(5 * time.Second))
				c.(*tls.Conn).Handshake()
				c.Close()
			}()
		}
	}()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { a.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()

	served := func() *x509.Certificate {
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: 2 * time.Second}, "tcp", ln.Addr().String(),
			&tls.Config{ServerName: "hits.test", RootCAs: p.IssuerRoots(t)})
		if err != nil {
			return nil
		}
		defer c.Close()
		return c.ConnectionState().PeerCertificates[0]
	}
	var first *x509.Certificate
	testkit.Eventually(t, "a certificate from pebble", 30*time.Second, func() bool {
		first = served()
		return first != nil
	})
	// The handshake can serve the certificate a moment before Run records
	// it: the status must follow, not lead.
	testkit.Eventually(t, "the status to show the served certificate as ready", 5*time.Second, func() bool {
		st := a.Status().Certificates[0]
		return st.State == "ready" && st.NotAfter.Equal(first.NotAfter)
	})
	// autocert renews a third of the validity before expiry: about 20 s in.
	var renewed *x509.Certificate
	testkit.Eventually(t, "a renewed certificate before the first expires", time.Until(first.NotAfter), func() bool {
		c := served()
		if c != nil && c.SerialNumber.Cmp(first.SerialNumber) != 0 {
			renewed = c
			return true
		}
		return false
	})
	if !renewed.NotAfter.After(first.NotAfter) {
		t.Fatalf("renewed certificate expires %v, not after the first's %v", renewed.NotAfter, first.NotAfter)
	}
	testkit.Eventually(t, "the status to show the renewed certificate", 5*time.Second, func() bool {
		return a.Status().Certificates[0].NotAfter.Equal(renewed.NotAfter)
	})
}
