// Package tlsfront is the balancer's HTTPS side: the TLS listener's server
// (net/http, HTTP/2 and HTTP/1.1 by ALPN, the proxy as its handler, HSTS)
// and the plain listener's redirect to it.
package tlsfront

import (
	"crypto/tls"
	"log"
	"net/http"
	"strconv"
	"time"
)

// Options configures the TLS listener's server. Zero values are
// documented per field.
type Options struct {
	// GetCertificate picks the certificate for a handshake; required.
	GetCertificate func(*tls.ClientHelloInfo) (*tls.Certificate, error)
	// ExtraProtos are ALPN protocols offered besides h2 and http/1.1
	// (acme-tls/1 for ACME's TLS-ALPN-01); if nil, none.
	ExtraProtos []string
	// HSTSMaxAge, if positive, adds Strict-Transport-Security to every
	// response.
	HSTSMaxAge time.Duration
	// ReadHeaderTimeout bounds the handshake and each request's headers;
	// IdleTimeout closes idle connections (HTTP/1.1 and HTTP/2 alike);
	// MaxHeaderBytes limits request headers (431 over HTTP/1.1, a reset
	// HTTP/2 stream). If zero, net/http's defaults.
	ReadHeaderTimeout time.Duration
	IdleTimeout       time.Duration
	MaxHeaderBytes    int
	// MaxConcurrentStreams bounds the streams of one HTTP/2 connection;
	// if zero, 250.
	MaxConcurrentStreams int
	// ErrorLog receives the server's errors (failed handshakes and the
	// like); if nil, the standard logger.
	ErrorLog *log.Logger
}

// NewServer returns the TLS listener's server around h (the proxy). Serve
// it with ServeTLS(ln, "", "") on a plain TCP listener.
func NewServer(h http.Handler, opts Options) *http.Server {
	if opts.MaxConcurrentStreams <= 0 {
		opts.MaxConcurrentStreams = 250
	}
	protos := new(http.Protocols)
	protos.SetHTTP1(true)
	protos.SetHTTP2(true)
	return &http.Server{
		Handler: wrap(h, opts.HSTSMaxAge),
		TLSConfig: &tls.Config{
			MinVersion:     tls.VersionTLS12,
			GetCertificate: opts.GetCertificate,
			NextProtos:     append([]string{"h2", "http/1.1"}, opts.ExtraProtos...),
		},
		Protocols:         protos,
		HTTP2:             &http.HTTP2Config{MaxConcurrentStreams: opts.MaxConcurrentStreams},
		ReadHeaderTimeout: opts.ReadHeaderTimeout,
		IdleTimeout:       opts.IdleTimeout,
		MaxHeaderBytes:    opts.MaxHeaderBytes,
		ErrorLog:          opts.ErrorLog,
	}
}

// wrap adapts requests from net/http's server to what the proxy expects
// from the plain listener, and adds HSTS.
func wrap(h http.Handler, hsts time.Duration) http.Handler {
	var hstsValue string
	if hsts > 0 {
		hstsValue = "max-age=" + strconv.FormatInt(int64(hsts/time.Second), 10)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if hstsValue != "" {
			w.Header().Set("Strict-Transport-Security", hstsValue)
		}
		if r.Method == http.MethodConnect {
			// An HTTP/2 CONNECT asks for a tunnel, which a balancer in
			// front of a web app does not offer.
			w.Header().Set("Allow", "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS")
			http.Error(w, "CONNECT is not supported", http.StatusMethodNotAllowed)
			return
		}
		// An HTTP/2 request always has a Body, even one that ends with
		// its headers; one known to be empty is passed on as none, so the
		// backend gets a plain GET (not an empty chunked body) and the
		// proxy's retry rules see a request without a body.
		if r.ContentLength == 0 && r.Body != nil && r.Body != http.NoBody {
			r.Body = http.NoBody
		}
		h.ServeHTTP(w, r)
	})
}
