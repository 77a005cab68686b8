package admin

import (
	"net"
	"net/http"
	"net/netip"
	"strings"
)

// AllowHosts answers only requests whose Host is an IP literal or one of
// hosts (lower-case names without ports; "*" allows any) and refuses the
// rest with 421. A page on an attacker's domain that rebinds its name to
// 127.0.0.1 still sends its own name as Host, so it cannot read /status;
// IP literals cannot be rebound, so they are always allowed.
func AllowHosts(h http.Handler, hosts []string) http.Handler {
	allowed := make(map[string]bool, len(hosts))
	for _, n := range hosts {
		if n == "*" {
			return h
		}
		allowed[strings.ToLower(n)] = true
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !hostAllowed(r.Host, allowed) {
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			w.Header().Set("Cache-Control", "no-store")
			w.WriteHeader(http.StatusMisdirectedRequest)
			w.Write([]byte("421 this admin listener does not answer for that Host; see LB_ADMIN_HOSTS\n"))
			return
		}
		h.ServeHTTP(w, r)
	})
}

func hostAllowed(host string, allowed map[string]bool) bool {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.TrimSuffix(strings.TrimPrefix(host, "["), "]"), ".")
	if host == "" {
		return false
	}
	if _, err := netip.ParseAddr(host); err == nil {
		return true
	}
	return allowed[strings.ToLower(host)]
}
