package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log"
	"log/slog"
	"net"
	"net/http"
	"os"

	"hits/lb/internal/certs"
	"hits/lb/internal/config"
	"hits/lb/internal/proxyheader"
	"hits/lb/internal/tlsfront"
)

// httpsSide is what LB_TLS_ADDR adds: the TLS listener and its server,
// where certificates come from, and what the plain listener does instead
// of proxying (redirect to https, ACME's HTTP-01 challenges).
type httpsSide struct {
	ln    net.Listener // nil: no TLS listener
	srv   *http.Server
	certs certSource
	plain http.Handler // the plain listener's handler
}

// certSource is certs.Files or certs.ACME.
type certSource interface {
	GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error)
	Status() certs.Status
	Run(ctx context.Context)
}

// listenHTTPS loads certificates (a bad file stops start-up here), binds
// LB_TLS_ADDR and builds both listeners' handlers around proxy.
func listenHTTPS(cfg config.Config, proxy http.Handler, logger *slog.Logger, errLog *log.Logger) (*httpsSide, error) {
	t := cfg.TLS
	if t.Addr == "" {
		return &httpsSide{plain: proxy}, nil
	}
	h := &httpsSide{}
	var acmeMgr *certs.ACME
	if t.ACME() {
		var roots *x509.CertPool
		if t.CARootsFile != "" {
			pem, err := os.ReadFile(t.CARootsFile)
			if err != nil {
				return nil, fmt.Errorf("config: LB_ACME_CA_ROOTS=%q: %w", t.CARootsFile, err)
			}
			if roots, err = x509.SystemCertPool(); err != nil || roots == nil {
				roots = x509.NewCertPool()
			}
			if !roots.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("config: LB_ACME_CA_ROOTS=%q: no PEM certificate in the file", t.CARootsFile)
			}
		}
		m, err := certs.NewACME(certs.ACMEOptions{
			Domains:   t.Domains,
			Email:     t.Email,
			Directory: t.Directory,
			Roots:     roots,
			CacheDir:  t.ACMECacheDir,
			Logger:    logger,
		})
		if err != nil {
			return nil, fmt.Errorf("config: LB_ACME_CACHE_DIR=%q: %w", t.ACMECacheDir, err)
		}
		acmeMgr, h.certs = m, m
	} else {
		f, err := certs.LoadFiles(t.CertFile, t.KeyFile, certs.FilesOptions{Logger: logger})
		if err != nil {
			return nil, fmt.Errorf("config: LB_TLS_CERT_FILE=%q, LB_TLS_KEY_FILE=%q: %w", t.CertFile, t.KeyFile, err)
		}
		h.certs = f
	}
	ln, err := net.Listen("tcp", t.Addr)
	if err != nil {
		return nil, fmt.Errorf("listen LB_TLS_ADDR %s: %w", t.Addr, err)
	}
	h.ln = ln
	opts := tlsfront.Options{
		GetCertificate:    h.certs.GetCertificate,
		HSTSMaxAge:        t.HSTSMaxAge,
		ReadHeaderTimeout: cfg.ReadHeaderTimeout,
		IdleTimeout:       cfg.ClientIdleTimeout,
		MaxHeaderBytes:    cfg.MaxHeaderBytes,
		MaxBodyBytes:      cfg.MaxBodyBytes,
		BodyTimeout:       cfg.ClientBodyTimeout,
		SendTimeout:       cfg.ClientSendTimeout,
		ErrorLog:          errLog,
	}
	if acmeMgr != nil {
		opts.ExtraProtos = acmeMgr.NextProtos()
	}
	h.srv = tlsfront.NewServer(proxy, opts)

	h.plain = proxy
	if t.Redirect {
		port := t.PublicPort
		if port == 0 {
			port = ln.Addr().(*net.TCPAddr).Port
		}
		h.plain = tlsfront.Redirect(port)
	}
	if acmeMgr != nil {
		h.plain = acmeMgr.HTTPHandler(h.plain) // challenges are answered, never redirected
	}
	return h, nil
}

// withProxyProtocol wraps ln so connections from LB_PROXY_PROTOCOL_FROM
// must send a PROXY header and no one else may; ln as is when it is off.
func withProxyProtocol(ln net.Listener, cfg config.Config, logger *slog.Logger) (net.Listener, error) {
	if len(cfg.ProxyProtocolFrom) == 0 || ln == nil {
		return ln, nil
	}
	return proxyheader.New(ln, proxyheader.Options{
		Trusted:       cfg.ProxyProtocolFrom,
		HeaderTimeout: cfg.ReadHeaderTimeout,
		Logger:        logger,
	})
}

// listenersStatus is the "listeners" part of /status.
type listenersStatus struct {
	HTTP              string        `json:"http"`
	HTTPS             string        `json:"https,omitempty"`
	RedirectHTTPS     bool          `json:"redirect_https"`
	HSTSMaxAgeSeconds int64         `json:"hsts_max_age_seconds,omitempty"`
	ProxyProtocolFrom []string      `json:"proxy_protocol_from,omitempty"`
	TLS               *certs.Status `json:"tls,omitempty"`
}

func (h *httpsSide) status(cfg config.Config, plain net.Listener) func() any {
	base := listenersStatus{HTTP: plain.Addr().String(), RedirectHTTPS: cfg.TLS.Redirect, HSTSMaxAgeSeconds: int64(cfg.TLS.HSTSMaxAge.Seconds())}
	if h.ln != nil {
		base.HTTPS = h.ln.Addr().String()
	}
	for _, p := range cfg.ProxyProtocolFrom {
		base.ProxyProtocolFrom = append(base.ProxyProtocolFrom, p.String())
	}
	return func() any {
		s := base
		if h.certs != nil {
			st := h.certs.Status()
			s.TLS = &st
		}
		return s
	}
}

// tlsAddr is the TLS listener's address for the start-up log, "" if none.
func (h *httpsSide) tlsAddr() string {
	if h.ln == nil {
		return ""
	}
	return h.ln.Addr().String()
}
