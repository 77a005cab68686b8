package testenv

import (
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"hits/testkit"
)

// OwnTLSRedis starts a server only this test uses that also accepts TLS,
// the way managed Redis does. It returns the server, its rediss:// URL and
// the PEM file of the throwaway CA whose certificate (for 127.0.0.1) it
// presents, which a client must trust.
func OwnTLSRedis(t testing.TB) (r *Redis, tlsURL, caFile string) {
	t.Helper()
	dir := t.TempDir()
	ca := testkit.NewCA(t)
	certPEM, keyPEM := ca.Issue(t, time.Now().Add(24*time.Hour), "127.0.0.1")
	caFile, certFile, keyFile := filepath.Join(dir, "ca.crt"), filepath.Join(dir, "redis.crt"), filepath.Join(dir, "redis.key")
	for _, f := range []struct {
		path string
		pem  []byte
	}{{caFile, ca.PEM}, {certFile, certPEM}, {keyFile, keyPEM}} {
		if err := os.WriteFile(f.path, f.pem, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	port := testkit.Port(t)
	r, err := startRedis("--tls-port", strconv.Itoa(port), "--tls-cert-file", certFile, "--tls-key-file", keyFile,
		"--tls-auth-clients", "no")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Close)
	return r, "rediss://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(port)) + "/0", caFile
}
