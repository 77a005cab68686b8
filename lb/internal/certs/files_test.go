package certs

import (
	"crypto/tls"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"hits/testkit"
)

// serialSeen does a real handshake against a TLS listener that gets its
// certificate from f, and returns the serial number the client saw.
func serialSeen(t *testing.T, f *Files, ca *testkit.CA) string {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{GetCertificate: f.GetCertificate})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err == nil {
			c.(*tls.Conn).Handshake()
			c.Close()
		}
	}()
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 2 * time.Second}, "tcp", ln.Addr().String(), &tls.Config{RootCAs: ca.Pool(), ServerName: "hits.test"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0].SerialNumber.String()
}

func write(t *testing.T, name string, b []byte, mod time.Time) {
	t.Helper()
	if err := os.WriteFile(name, b, 0o600); err != nil {
		t.Fatal(err)
	}
	// Distinct modification times, whatever the file system's resolution.
	if err := os.Chtimes(name, mod, mod); err != nil {
		t.Fatal(err)
	}
}

func TestFilesRotation(t *testing.T) {
	ca := testkit.NewCA(t)
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	c1, k1 := ca.Issue(t, time.Now().Add(time.Hour), "hits.test")
	t0 := time.Now().Add(-time.Hour)
	write(t, certFile, c1, t0)
	write(t, keyFile, k1, t0)
	f, err := LoadFiles(certFile, keyFile, FilesOptions{})
	if err != nil {
		t.Fatal(err)
	}
	first := serialSeen(t, f, ca)

	f.Check() // nothing changed
	if got := serialSeen(t, f, ca); got != first {
		t.Fatalf("serial changed to %s without a file change", got)
	}

	// A renewal that is caught half done (new certificate, old key) is
	// not served; the old pair stays, and the status says why.
	c2, k2 := ca.Issue(t, time.Now().Add(48*time.Hour), "hits.test")
	write(t, certFile, c2, t0.Add(time.Minute))
	f.Check()
	if got := serialSeen(t, f, ca); got != first {
		t.Fatalf("served %s from a mismatched pair, want the old %s", got, first)
	}
	if st := f.Status().Certificates[0]; !strings.Contains(st.Error, "private key does not match") {
		t.Fatalf("status error %q, want the mismatch", st.Error)
	}

	// The renewal completes: the next check serves it.
	write(t, keyFile, k2, t0.Add(time.Minute))
	f.Check()
	second := serialSeen(t, f, ca)
	if second == first {
		t.Fatal("still serving the old certificate after the renewal")
	}
	st := f.Status().Certificates[0]
	if st.Error != "" || st.State != "loaded" || strings.Join(st.Names, ",") != "hits.test" || time.Until(st.NotAfter) < 47*time.Hour {
		t.Fatalf("status %+v after the renewal", st)
	}
}

func TestLoadFilesErrorsSayWhich(t *testing.T) {
	ca := testkit.NewCA(t)
	dir := t.TempDir()
	c, k := ca.Issue(t, time.Now().Add(time.Hour), "hits.test")
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	write(t, certFile, c, time.Now())
	write(t, keyFile, k, time.Now())
	unreadable := filepath.Join(dir, "unreadable.pem")
	write(t, unreadable, c, time.Now())
	os.Chmod(unreadable, 0)
	for _, tc := range []struct {
		name, cert, key, want string
	}{
		{"missing certificate", filepath.Join(dir, "none.pem"), keyFile, "certificate file"},
		{"missing key", certFile, filepath.Join(dir, "none.pem"), "key file"},
		{"key in place of the certificate", keyFile, keyFile, "certificate"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := LoadFiles(tc.cert, tc.key, FilesOptions{}); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("LoadFiles = %v, want an error about the %s", err, tc.want)
			}
		})
	}
	if os.Geteuid() != 0 { // root reads any file
		if _, err := LoadFiles(unreadable, keyFile, FilesOptions{}); err == nil || !strings.Contains(err.Error(), "permission denied") {
			t.Fatalf("unreadable file: %v", err)
		}
	}
}
