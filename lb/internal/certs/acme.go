package certs

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/acme"
	"golang.org/x/crypto/acme/autocert"
)

// ACMEOptions configures ACME. Zero values are documented per field.
type ACMEOptions struct {
	// Domains are the names to obtain certificates for; required.
	Domains []string
	// Email is the account's contact; if empty, none.
	Email string
	// Directory is the ACME directory URL; if empty, Let's Encrypt's
	// production directory.
	Directory string
	// Roots verify the ACME server's certificate; if nil, the system's.
	Roots *x509.CertPool
	// CacheDir keeps the account key and certificates; required.
	CacheDir string
	// RetryMin and RetryMax bound the back-off between failed attempts
	// to obtain a certificate; if zero, 1m and 1h. (autocert itself
	// remembers a failure for a minute, so retrying sooner gains nothing.)
	RetryMin, RetryMax time.Duration
	// Recheck is how often a certificate that was obtained is looked at
	// again, so the status follows autocert's renewals; if zero, 10m.
	Recheck time.Duration
	// Logger receives attempts, failures and new certificates; if nil,
	// nothing is logged.
	Logger *slog.Logger
	// Now is the clock; if nil, time.Now.
	Now func() time.Time
}

// ACME obtains and renews certificates with autocert: TLS-ALPN-01 on the
// TLS listener (GetCertificate answers the challenge handshakes) and
// HTTP-01 on the plain listener (HTTPHandler). Run asks for every domain's
// certificate at start-up, retrying with back-off while the ACME server is
// unreachable or refuses, rather than waiting for the first visitor's
// handshake to do it; autocert renews before expiry on its own timers.
type ACME struct {
	m    *autocert.Manager
	opts ACMEOptions

	mu    sync.Mutex // guards state
	state map[string]*Certificate
}

// NewACME checks the cache directory (creating it if needed) and returns
// a manager that has not contacted the ACME server yet.
func NewACME(opts ACMEOptions) (*ACME, error) {
	if len(opts.Domains) == 0 {
		return nil, errors.New("acme: no domains")
	}
	if opts.CacheDir == "" {
		return nil, errors.New("acme: no cache directory")
	}
	if err := os.MkdirAll(opts.CacheDir, 0o700); err != nil {
		return nil, fmt.Errorf("acme cache directory: %w", err)
	}
	probe, err := os.CreateTemp(opts.CacheDir, ".write-test-*")
	if err != nil {
		return nil, fmt.Errorf("acme cache directory is not writable: %w", err)
	}
	probe.Close()
	os.Remove(probe.Name())
	if opts.Directory == "" {
		opts.Directory = autocert.DefaultACMEDirectory
	}
	if opts.RetryMin <= 0 {
		opts.RetryMin = time.Minute
	}
	if opts.RetryMax <= 0 {
		opts.RetryMax = time.Hour
	}
	if opts.Recheck <= 0 {
		opts.Recheck = 10 * time.Minute
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if opts.Roots != nil {
		tr.TLSClientConfig = &tls.Config{RootCAs: opts.Roots, MinVersion: tls.VersionTLS12}
	}
	a := &ACME{
		opts:  opts,
		state: map[string]*Certificate{},
		m: &autocert.Manager{
			Prompt:     autocert.AcceptTOS,
			Cache:      autocert.DirCache(opts.CacheDir),
			HostPolicy: autocert.HostWhitelist(opts.Domains...),
			Email:      opts.Email,
			Client: &acme.Client{
				DirectoryURL: opts.Directory,
				HTTPClient:   &http.Client{Transport: tr, Timeout: time.Minute},
				UserAgent:    "hits-lb",
			},
		},
	}
	for _, d := range opts.Domains {
		a.state[d] = &Certificate{Domain: d, State: "obtaining"}
	}
	return a, nil
}

// GetCertificate is for tls.Config: the domain's certificate, or the
// TLS-ALPN-01 challenge certificate when the ACME server is validating.
func (a *ACME) GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	return a.m.GetCertificate(hello)
}

// HTTPHandler answers HTTP-01 challenges under /.well-known/acme-challenge/
// and passes every other request to next.
func (a *ACME) HTTPHandler(next http.Handler) http.Handler {
	h := a.m.HTTPHandler(next)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// autocert checks the Host field against the domain list as is,
		// so a validation on a port other than 80 (Host: name:port)
		// would be refused.
		if strings.HasPrefix(r.URL.Path, challengePath) {
			if host, _, err := net.SplitHostPort(r.Host); err == nil {
				r2 := *r
				r2.Host = host
				r = &r2
			}
		}
		h.ServeHTTP(w, r)
	})
}

const challengePath = "/.well-known/acme-challenge/"

// NextProtos are the ALPN protocols the TLS listener must offer besides
// its own: TLS-ALPN-01's.
func (a *ACME) NextProtos() []string { return []string{acme.ALPNProto} }

// Run obtains every domain's certificate, retrying with back-off, then
// rechecks them until ctx ends. Each domain has its own goroutine.
func (a *ACME) Run(ctx context.Context) {
	var wg sync.WaitGroup
	for _, d := range a.opts.Domains {
		wg.Add(1)
		go func() { defer wg.Done(); a.keep(ctx, d) }()
	}
	wg.Wait()
}

// keep obtains one domain's certificate and keeps its status current.
func (a *ACME) keep(ctx context.Context, domain string) {
	delay := a.opts.RetryMin
	for {
		start := a.opts.Now()
		cert, ok, err := a.obtain(ctx, domain)
		if !ok {
			return
		}
		var wait time.Duration
		a.mu.Lock()
		st := a.state[domain]
		if err != nil {
			wait = delay
			delay = min(2*delay, a.opts.RetryMax)
			st.State, st.Error, st.NextAttempt = "retrying", err.Error(), a.opts.Now().Add(wait)
			if a.opts.Logger != nil {
				a.opts.Logger.Error("ACME: no certificate yet; plain HTTP keeps serving", "domain", domain, "directory", a.opts.Directory, "error", err.Error(), "retry_in", wait.String())
			}
		} else {
			wait, delay = a.opts.Recheck, a.opts.RetryMin
			prev := st.NotAfter
			st.State, st.Error, st.NextAttempt = "ready", "", time.Time{}
			describe(st, cert)
			if !st.NotAfter.Equal(prev) {
				st.Since = a.opts.Now()
				if a.opts.Logger != nil {
					a.opts.Logger.Info("ACME: certificate ready", "domain", domain, "issuer", st.Issuer, "not_after", st.NotAfter, "took", a.opts.Now().Sub(start).String())
				}
			}
		}
		a.mu.Unlock()
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// obtain asks autocert for domain's certificate. autocert takes no
// context (it bounds an issuance at 5 minutes itself), so a shutdown does
// not wait for an ACME server that hangs: obtain returns ok=false when ctx
// ends, and the call finishes on its own goroutine, which exits with it.
func (a *ACME) obtain(ctx context.Context, domain string) (cert *tls.Certificate, ok bool, err error) {
	type result struct {
		cert *tls.Certificate
		err  error
	}
	done := make(chan result, 1)
	go func() {
		c, err := a.m.GetCertificate(helloFor(domain))
		done <- result{c, err}
	}()
	select {
	case <-ctx.Done():
		return nil, false, nil
	case r := <-done:
		return r.cert, true, r.err
	}
}

// helloFor is the handshake autocert is asked with at start-up: one that
// supports ECDSA, so the certificate obtained is the one modern clients
// get (autocert keeps an RSA one for clients without ECDSA, obtained on
// their first handshake).
func helloFor(domain string) *tls.ClientHelloInfo {
	return &tls.ClientHelloInfo{
		ServerName:        domain,
		CipherSuites:      []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256},
		SignatureSchemes:  []tls.SignatureScheme{tls.ECDSAWithP256AndSHA256},
		SupportedCurves:   []tls.CurveID{tls.CurveP256},
		SupportedVersions: []uint16{tls.VersionTLS13, tls.VersionTLS12},
	}
}

// Status reports each domain's certificate and ACME state.
func (a *ACME) Status() Status {
	a.mu.Lock()
	defer a.mu.Unlock()
	s := Status{Source: "acme", Directory: a.opts.Directory}
	for _, d := range a.opts.Domains {
		s.Certificates = append(s.Certificates, *a.state[d])
	}
	return s
}
