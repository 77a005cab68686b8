package config

import (
	"strings"
	"testing"
	"time"
)

func TestTLSSettings(t *testing.T) {
	base := func(kv ...string) map[string]string {
		m := map[string]string{"LB_BACKENDS": "app:8080"}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	t.Run("off by default", func(t *testing.T) {
		c, err := Load(env(base()))
		if err != nil {
			t.Fatal(err)
		}
		if c.TLS.Addr != "" || c.TLS.ACME() || len(c.ProxyProtocolFrom) != 0 {
			t.Fatalf("TLS = %+v, proxy protocol %v; want all off", c.TLS, c.ProxyProtocolFrom)
		}
	})
	t.Run("files", func(t *testing.T) {
		c, err := Load(env(base("LB_TLS_ADDR", ":8443", "LB_TLS_CERT_FILE", "/c.pem", "LB_TLS_KEY_FILE", "/k.pem",
			"LB_REDIRECT_HTTPS", "true", "LB_HTTPS_PUBLIC_PORT", "443", "LB_HSTS_MAX_AGE", "31536000",
			"LB_PROXY_PROTOCOL_FROM", "10.0.0.0/8, 192.168.1.7")))
		if err != nil {
			t.Fatal(err)
		}
		if c.TLS.CertFile != "/c.pem" || c.TLS.KeyFile != "/k.pem" || !c.TLS.Redirect || c.TLS.PublicPort != 443 ||
			c.TLS.HSTSMaxAge != 365*24*time.Hour || c.TLS.ACME() {
			t.Fatalf("TLS = %+v", c.TLS)
		}
		if got := len(c.ProxyProtocolFrom); got != 2 || c.ProxyProtocolFrom[1].String() != "192.168.1.7/32" {
			t.Fatalf("ProxyProtocolFrom = %v", c.ProxyProtocolFrom)
		}
	})
	t.Run("acme", func(t *testing.T) {
		c, err := Load(env(base("LB_TLS_ADDR", ":443", "LB_ACME_DOMAINS", "Hits.Example.com., www.hits.example.com,hits.example.com",
			"LB_ACME_EMAIL", "ops@example.com", "LB_ACME_CACHE_DIR", "/acme", "LB_HSTS_MAX_AGE", "8760h")))
		if err != nil {
			t.Fatal(err)
		}
		if strings.Join(c.TLS.Domains, ",") != "hits.example.com,www.hits.example.com" || c.TLS.Directory != DefaultACMEDirectory ||
			c.TLS.Email != "ops@example.com" || c.TLS.HSTSMaxAge != 8760*time.Hour {
			t.Fatalf("TLS = %+v", c.TLS)
		}
	})
	for _, tc := range []struct {
		name string
		env  map[string]string
		want string // the variable named in the error
	}{
		{"cert without LB_TLS_ADDR", base("LB_TLS_CERT_FILE", "/c.pem"), "LB_TLS_CERT_FILE"},
		{"redirect without LB_TLS_ADDR", base("LB_REDIRECT_HTTPS", "true"), "LB_REDIRECT_HTTPS"},
		{"no certificate source", base("LB_TLS_ADDR", ":443"), "LB_TLS_ADDR"},
		{"cert without key", base("LB_TLS_ADDR", ":443", "LB_TLS_CERT_FILE", "/c.pem"), "LB_TLS_CERT_FILE"},
		{"files and acme", base("LB_TLS_ADDR", ":443", "LB_TLS_CERT_FILE", "/c.pem", "LB_TLS_KEY_FILE", "/k.pem", "LB_ACME_DOMAINS", "a.example", "LB_ACME_CACHE_DIR", "/a"), "LB_ACME_DOMAINS"},
		{"acme without cache dir", base("LB_TLS_ADDR", ":443", "LB_ACME_DOMAINS", "a.example"), "LB_ACME_CACHE_DIR"},
		{"acme email without domains", base("LB_TLS_ADDR", ":443", "LB_TLS_CERT_FILE", "/c.pem", "LB_TLS_KEY_FILE", "/k.pem", "LB_ACME_EMAIL", "a@b.c"), "LB_ACME_EMAIL"},
		{"bad tls addr", base("LB_TLS_ADDR", "443", "LB_ACME_DOMAINS", "a.example", "LB_ACME_CACHE_DIR", "/a"), "LB_TLS_ADDR"},
		{"directory not https", base("LB_TLS_ADDR", ":443", "LB_ACME_DOMAINS", "a.example", "LB_ACME_CACHE_DIR", "/a", "LB_ACME_DIRECTORY", "http://ca/dir"), "LB_ACME_DIRECTORY"},
		{"bad email", base("LB_TLS_ADDR", ":443", "LB_ACME_DOMAINS", "a.example", "LB_ACME_CACHE_DIR", "/a", "LB_ACME_EMAIL", "nobody"), "LB_ACME_EMAIL"},
		{"public port 0", base("LB_TLS_ADDR", ":443", "LB_ACME_DOMAINS", "a.example", "LB_ACME_CACHE_DIR", "/a", "LB_HTTPS_PUBLIC_PORT", "0"), "LB_HTTPS_PUBLIC_PORT"},
		{"hsts garbage", base("LB_TLS_ADDR", ":443", "LB_ACME_DOMAINS", "a.example", "LB_ACME_CACHE_DIR", "/a", "LB_HSTS_MAX_AGE", "forever"), "LB_HSTS_MAX_AGE"},
		{"bad proxy protocol source", base("LB_PROXY_PROTOCOL_FROM", "10.0.0.0/33"), "LB_PROXY_PROTOCOL_FROM"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Load(env(tc.env))
			if err == nil || !strings.Contains(err.Error(), tc.want+"=") {
				t.Fatalf("Load = %v, want an error naming %s", err, tc.want)
			}
		})
	}
}

func TestACMEDomainNames(t *testing.T) {
	for _, tc := range []struct {
		domain string
		ok     bool
	}{
		{"hits.test", true},
		{"a-b.example.co.uk", true},
		{"xn--bcher-kva.example", true},
		{"localhost", false},        // one label: no CA issues for it
		{"*.example.com", false},    // wildcards need DNS-01
		{"192.0.2.1", false},        // an IP address
		{"example.123", false},      // numeric top-level label
		{"-bad.example", false},     // label starts with a hyphen
		{"bad_name.example", false}, // underscore
		{"https://a.example", false},
		{"a.example:443", false},
		{"a..example", false},
		{strings.Repeat("a", 64) + ".example", false},
	} {
		t.Run(tc.domain, func(t *testing.T) {
			_, err := Load(env(map[string]string{"LB_BACKENDS": "app:8080", "LB_TLS_ADDR": ":443", "LB_ACME_CACHE_DIR": "/a", "LB_ACME_DOMAINS": tc.domain}))
			if (err == nil) != tc.ok {
				t.Fatalf("Load(%q) = %v, want ok %v", tc.domain, err, tc.ok)
			}
			if err != nil && !strings.Contains(err.Error(), "LB_ACME_DOMAINS") {
				t.Fatalf("error %v does not name LB_ACME_DOMAINS", err)
			}
		})
	}
}
