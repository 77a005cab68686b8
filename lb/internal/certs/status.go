// Package certs provides the TLS listener's certificates: from PEM files
// that are re-read when they change, or over ACME with
// golang.org/x/crypto/acme/autocert. Both report what they serve for the
// admin listener.
package certs

import (
	"crypto/tls"
	"crypto/x509"
	"time"
)

// Status is what the TLS listener serves, for /status and the dashboard.
type Status struct {
	Source       string        `json:"source"` // "files" or "acme"
	Certificates []Certificate `json:"certificates"`
	// Directory is the ACME server's directory URL (ACME only).
	Directory string `json:"acme_directory,omitempty"`
}

// Certificate is one certificate (files) or one domain's (ACME).
type Certificate struct {
	Names    []string  `json:"names,omitempty"`
	Issuer   string    `json:"issuer,omitempty"`
	NotAfter time.Time `json:"not_after,omitzero"`
	// State is "loaded" (files), or for ACME "obtaining", "ready" or
	// "retrying" (the last attempt failed; Error says why, NextAttempt when).
	State       string    `json:"state"`
	Domain      string    `json:"domain,omitempty"`
	Error       string    `json:"error,omitempty"`
	NextAttempt time.Time `json:"next_attempt,omitzero"`
	// Since is when the served certificate was loaded or obtained.
	Since time.Time `json:"since,omitzero"`
}

// describe fills the certificate fields from the leaf.
func describe(c *Certificate, cert *tls.Certificate) {
	leaf := cert.Leaf
	if leaf == nil && len(cert.Certificate) > 0 {
		leaf, _ = x509.ParseCertificate(cert.Certificate[0])
	}
	if leaf == nil {
		return
	}
	c.Names = leaf.DNSNames
	if len(c.Names) == 0 && leaf.Subject.CommonName != "" {
		c.Names = []string{leaf.Subject.CommonName}
	}
	c.Issuer = leaf.Issuer.CommonName
	c.NotAfter = leaf.NotAfter
}
