package tlsfront

import (
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
)

// Redirect answers every request with 308 Permanent Redirect to the same
// host, path and query over https on port (443 is left out of the URL).
// 308, unlike 301 and 302, keeps the method and body of a POST.
func Redirect(port int) http.Handler {
	suffix := ""
	if port != 443 {
		suffix = ":" + strconv.Itoa(port)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host := r.Host
		if h, _, err := net.SplitHostPort(host); err == nil {
			host = h
		} else if strings.HasPrefix(host, "[") && strings.HasSuffix(host, "]") {
			host = host[1 : len(host)-1]
		}
		if !validHost(host) {
			http.Error(w, "Bad Request: missing or invalid Host", http.StatusBadRequest)
			return
		}
		if strings.Contains(host, ":") { // IPv6 literal
			host = "[" + host + "]"
		}
		uri := r.URL.RequestURI()
		if !strings.HasPrefix(uri, "/") {
			uri = "/"
		}
		w.Header().Set("Location", "https://"+host+suffix+uri)
		w.Header().Set("Content-Length", "0")
		w.WriteHeader(http.StatusPermanentRedirect)
	})
}

// validHost accepts what may stand between https:// and the port: a DNS
// name or an IP literal, so a crafted Host cannot turn the Location into
// a different URL (userinfo, a path, a second host).
func validHost(h string) bool {
	if h == "" || len(h) > 253 {
		return false
	}
	if strings.Contains(h, ":") {
		ip, err := netip.ParseAddr(h)
		return err == nil && ip.Is6() && ip.Zone() == ""
	}
	for _, c := range h {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}
