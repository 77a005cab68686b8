package config

import (
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// tls reads the HTTPS settings. Every LB_TLS_*, LB_ACME_*, redirect and
// HSTS setting needs LB_TLS_ADDR: a setting that would silently do
// nothing is a mistake to report, not to ignore.
func (p *parser) tls() TLS {
	t := TLS{
		Addr:         strings.TrimSpace(p.getenv("LB_TLS_ADDR")),
		CertFile:     strings.TrimSpace(p.getenv("LB_TLS_CERT_FILE")),
		KeyFile:      strings.TrimSpace(p.getenv("LB_TLS_KEY_FILE")),
		Email:        strings.TrimSpace(p.getenv("LB_ACME_EMAIL")),
		Directory:    p.str("LB_ACME_DIRECTORY", DefaultACMEDirectory),
		CARootsFile:  strings.TrimSpace(p.getenv("LB_ACME_CA_ROOTS")),
		ACMECacheDir: strings.TrimSpace(p.getenv("LB_ACME_CACHE_DIR")),
		Redirect:     p.boolean("LB_REDIRECT_HTTPS", false),
		PublicPort:   p.intRange("LB_HTTPS_PUBLIC_PORT", 0, 1, 65535),
		HSTSMaxAge:   p.seconds("LB_HSTS_MAX_AGE"),
	}
	t.Domains = p.domains("LB_ACME_DOMAINS")
	if t.Addr == "" {
		// LB_ACME_CACHE_DIR is exempt: it names a place (the compose
		// files point it at their volume), not a behaviour.
		for _, name := range []string{"LB_TLS_CERT_FILE", "LB_TLS_KEY_FILE", "LB_ACME_DOMAINS", "LB_ACME_EMAIL",
			"LB_ACME_DIRECTORY", "LB_ACME_CA_ROOTS", "LB_HTTPS_PUBLIC_PORT", "LB_HSTS_MAX_AGE"} {
			if v := strings.TrimSpace(p.getenv(name)); v != "" {
				p.fail(name, v, "nothing unless LB_TLS_ADDR is set (it turns the HTTPS listener on)")
				return TLS{}
			}
		}
		if t.Redirect {
			p.fail("LB_REDIRECT_HTTPS", "true", "false unless LB_TLS_ADDR is set (there is no https to redirect to)")
		}
		return TLS{}
	}
	p.address("LB_TLS_ADDR", t.Addr)
	files := t.CertFile != "" || t.KeyFile != ""
	switch {
	case files && t.ACME():
		p.fail("LB_ACME_DOMAINS", strings.Join(t.Domains, ","), "empty when LB_TLS_CERT_FILE/LB_TLS_KEY_FILE are set (certificates come from files or from ACME, not both)")
	case files && (t.CertFile == "" || t.KeyFile == ""):
		p.fail("LB_TLS_CERT_FILE", t.CertFile, "set together with LB_TLS_KEY_FILE (both files, PEM)")
	case !files && !t.ACME():
		p.fail("LB_TLS_ADDR", t.Addr, "set with LB_TLS_CERT_FILE and LB_TLS_KEY_FILE, or with LB_ACME_DOMAINS")
	}
	if !t.ACME() {
		for _, name := range []string{"LB_ACME_EMAIL", "LB_ACME_DIRECTORY", "LB_ACME_CA_ROOTS"} {
			if v := strings.TrimSpace(p.getenv(name)); v != "" {
				p.fail(name, v, "nothing unless LB_ACME_DOMAINS is set")
			}
		}
		return t
	}
	if u, err := url.Parse(t.Directory); err != nil || u.Scheme != "https" || u.Host == "" {
		p.fail("LB_ACME_DIRECTORY", t.Directory, "an https:// URL of an ACME directory")
	}
	if t.Email != "" && (strings.Count(t.Email, "@") != 1 || strings.HasPrefix(t.Email, "@") || strings.HasSuffix(t.Email, "@")) {
		p.fail("LB_ACME_EMAIL", t.Email, "an e-mail address (or empty)")
	}
	if t.ACMECacheDir == "" {
		p.fail("LB_ACME_CACHE_DIR", "", "a directory that keeps the account key and certificates across restarts (required with LB_ACME_DOMAINS)")
	}
	return t
}

// domains parses a comma-separated list of host names an ACME server can
// issue for with HTTP-01 or TLS-ALPN-01: no IP addresses, no wildcards.
func (p *parser) domains(name string) []string {
	raw := strings.TrimSpace(p.getenv(name))
	if raw == "" {
		return nil
	}
	var out []string
	seen := map[string]bool{}
	for _, d := range strings.Split(raw, ",") {
		d = strings.ToLower(strings.TrimSuffix(strings.TrimSpace(d), "."))
		if !validDomain(d) {
			p.fail(name, raw, "a comma-separated list of DNS names such as example.com,www.example.com (no IP addresses, wildcards, ports or schemes; "+strconv.Quote(d)+" is not one)")
			return nil
		}
		if !seen[d] {
			seen[d] = true
			out = append(out, d)
		}
	}
	return out
}

// validDomain accepts a fully qualified DNS name of letter-digit-hyphen
// labels (A-labels for internationalized names), at least two of them.
func validDomain(d string) bool {
	if len(d) == 0 || len(d) > 253 {
		return false
	}
	if _, err := netip.ParseAddr(d); err == nil {
		return false
	}
	labels := strings.Split(d, ".")
	if len(labels) < 2 {
		return false
	}
	for _, l := range labels {
		if len(l) == 0 || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return false
		}
		for _, r := range l {
			if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-') {
				return false
			}
		}
	}
	// A top-level label of digits only would make the name look like an IP.
	tld := labels[len(labels)-1]
	return strings.Trim(tld, "0123456789") != ""
}

// seconds reads a positive duration given as a Go duration (8760h) or a
// whole number of seconds (31536000); empty is zero (off).
func (p *parser) seconds(name string) time.Duration {
	v := strings.TrimSpace(p.getenv(name))
	if v == "" {
		return 0
	}
	if n, err := strconv.ParseInt(v, 10, 64); err == nil && n > 0 && n <= 1<<31 {
		return time.Duration(n) * time.Second
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < time.Second {
		p.fail(name, v, "a whole number of seconds (31536000) or a Go duration of at least 1s (8760h)")
		return 0
	}
	return d
}
