// Package tlsfront is the balancer's HTTPS side: the TLS listener's server
// (net/http, HTTP/2 and HTTP/1.1 by ALPN, the proxy as its handler, HSTS)
// and the plain listener's redirect to it.
package tlsfront

import (
	"crypto/tls"
	"io"
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
	// MaxBodyBytes limits a request body (413); BodyTimeout bounds the
	// wait between two reads of a request body (408) and SendTimeout the
	// wait between two writes to the client. If zero, no limit.
	MaxBodyBytes int64
	BodyTimeout  time.Duration
	SendTimeout  time.Duration
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
		Handler: wrap(h, opts),
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
// from the plain listener (the same body limit and timeouts), and adds
// HSTS.
func wrap(h http.Handler, opts Options) http.Handler {
	var hstsValue string
	if opts.HSTSMaxAge > 0 {
		hstsValue = "max-age=" + strconv.FormatInt(int64(opts.HSTSMaxAge/time.Second), 10)
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
		if opts.MaxBodyBytes > 0 && r.ContentLength > opts.MaxBodyBytes {
			w.Header().Set("Connection", "close")
			http.Error(w, "request body too large", http.StatusRequestEntityTooLarge)
			return
		}
		rc := http.NewResponseController(w)
		if r.Body != http.NoBody {
			if opts.MaxBodyBytes > 0 {
				r.Body = http.MaxBytesReader(w, r.Body, opts.MaxBodyBytes)
			}
			if opts.BodyTimeout > 0 {
				r.Body = &timedBody{ReadCloser: r.Body, rc: rc, d: opts.BodyTimeout}
			}
		}
		if opts.SendTimeout > 0 {
			w = &timedWriter{ResponseWriter: w, rc: rc, d: opts.SendTimeout}
		}
		h.ServeHTTP(w, r)
	})
}

// timedBody gives every read of a request body its own deadline, so a
// client that stops sending mid-body is cut off after d (the proxy
// answers 408) however long the whole upload takes.
type timedBody struct {
	io.ReadCloser
	rc *http.ResponseController
	d  time.Duration
}

func (b *timedBody) Read(p []byte) (int, error) {
	b.rc.SetReadDeadline(time.Now().Add(b.d))
	return b.ReadCloser.Read(p)
}

// timedWriter gives every write to the client its own deadline, so a
// client that stops reading is cut off after d.
type timedWriter struct {
	http.ResponseWriter
	rc *http.ResponseController
	d  time.Duration
}

func (w *timedWriter) Write(p []byte) (int, error) {
	w.rc.SetWriteDeadline(time.Now().Add(w.d))
	return w.ResponseWriter.Write(p)
}

// Unwrap lets http.ResponseController reach Flush and Hijack.
func (w *timedWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
