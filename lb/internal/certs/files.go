package certs

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync/atomic"
	"time"
)

// FilesOptions configures Files. Zero values are documented per field.
type FilesOptions struct {
	// Interval is how often the files are checked for a change; if zero,
	// 10s, so a renewed certificate is served well within a minute.
	Interval time.Duration
	// Logger receives reloads and failed reloads; if nil, nothing is logged.
	Logger *slog.Logger
	// Now is the clock; if nil, time.Now.
	Now func() time.Time
}

// Files serves a certificate and key from PEM files, re-reading them when
// either changes. A change that does not load (a key that no longer
// matches, a file caught half written) is logged and the previous pair is
// served until the next good one.
type Files struct {
	certFile, keyFile string
	opts              FilesOptions
	cur               atomic.Pointer[loaded]
	lastErr           atomic.Pointer[string] // the last failed reload, "" after a good one
}

type loaded struct {
	cert  *tls.Certificate
	stamp [2]fileStamp // of certFile and keyFile when read
	at    time.Time
}

// fileStamp identifies a version of a file without reading it.
type fileStamp struct {
	size int64
	mod  time.Time
}

// LoadFiles reads the pair once, so a missing, unreadable or mismatched
// file stops start-up with an error that says which.
func LoadFiles(certFile, keyFile string, opts FilesOptions) (*Files, error) {
	if opts.Interval <= 0 {
		opts.Interval = 10 * time.Second
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	f := &Files{certFile: certFile, keyFile: keyFile, opts: opts}
	l, err := f.load()
	if err != nil {
		return nil, err
	}
	f.cur.Store(l)
	if now := opts.Now(); now.After(l.cert.Leaf.NotAfter) && opts.Logger != nil {
		opts.Logger.Warn("TLS certificate has expired", "file", certFile, "not_after", l.cert.Leaf.NotAfter)
	}
	return f, nil
}

func stamp(name string) (fileStamp, error) {
	fi, err := os.Stat(name)
	if err != nil {
		return fileStamp{}, err
	}
	return fileStamp{size: fi.Size(), mod: fi.ModTime()}, nil
}

func (f *Files) load() (*loaded, error) {
	var l loaded
	var err error
	// Stamps first: a file replaced while it is read is then read again
	// at the next check.
	if l.stamp[0], err = stamp(f.certFile); err != nil {
		return nil, fmt.Errorf("certificate file: %w", err)
	}
	if l.stamp[1], err = stamp(f.keyFile); err != nil {
		return nil, fmt.Errorf("key file: %w", err)
	}
	certPEM, err := os.ReadFile(f.certFile)
	if err != nil {
		return nil, fmt.Errorf("certificate file: %w", err)
	}
	keyPEM, err := os.ReadFile(f.keyFile)
	if err != nil {
		return nil, fmt.Errorf("key file: %w", err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("certificate %s and key %s: %w", f.certFile, f.keyFile, err)
	}
	if cert.Leaf == nil {
		if cert.Leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return nil, fmt.Errorf("certificate file %s: %w", f.certFile, err)
		}
	}
	l.cert = &cert
	l.at = f.opts.Now()
	return &l, nil
}

// GetCertificate is for tls.Config: the pair loaded last.
func (f *Files) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return f.cur.Load().cert, nil
}

// Run checks the files every Interval until ctx ends.
func (f *Files) Run(ctx context.Context) {
	t := time.NewTicker(f.opts.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			f.Check()
		}
	}
}

// Check reloads the pair if either file changed since it was read.
func (f *Files) Check() {
	cur := f.cur.Load()
	a, errA := stamp(f.certFile)
	b, errB := stamp(f.keyFile)
	if err := errors.Join(errA, errB); err != nil {
		f.failed(err)
		return
	}
	if a == cur.stamp[0] && b == cur.stamp[1] {
		return
	}
	l, err := f.load()
	if err != nil {
		f.failed(err)
		return
	}
	f.cur.Store(l)
	empty := ""
	f.lastErr.Store(&empty)
	if f.opts.Logger != nil {
		f.opts.Logger.Info("TLS certificate reloaded", "file", f.certFile, "names", l.cert.Leaf.DNSNames, "not_after", l.cert.Leaf.NotAfter)
	}
}

func (f *Files) failed(err error) {
	msg := err.Error()
	if p := f.lastErr.Swap(&msg); (p == nil || *p != msg) && f.opts.Logger != nil {
		// Logged once per distinct error, not every interval.
		f.opts.Logger.Error("TLS certificate reload failed; still serving the previous one", "error", msg)
	}
}

// Status reports the served certificate.
func (f *Files) Status() Status {
	l := f.cur.Load()
	c := Certificate{State: "loaded", Since: l.at}
	describe(&c, l.cert)
	if p := f.lastErr.Load(); p != nil && *p != "" {
		c.Error = *p
	}
	return Status{Source: "files", Certificates: []Certificate{c}}
}
