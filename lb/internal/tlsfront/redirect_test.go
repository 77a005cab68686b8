package tlsfront

import (
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"
)

func TestRedirect(t *testing.T) {
	for _, tc := range []struct {
		name, method, target, host string
		port                       int
		status                     int
		location                   string
	}{
		{"default port left out", "GET", "/a/b?x=1", "hits.example", 443, 308, "https://hits.example/a/b?x=1"},
		{"host port replaced by the https one", "GET", "/", "hits.example:8080", 8443, 308, "https://hits.example:8443/"},
		{"POST keeps its method with 308", "POST", "/form", "hits.example", 443, 308, "https://hits.example/form"},
		{"escaped path and query kept", "GET", "/a%20b/?q=%2F&r", "hits.example", 443, 308, "https://hits.example/a%20b/?q=%2F&r"},
		{"IPv6 literal", "GET", "/", "[2001:db8::1]:80", 443, 308, "https://[2001:db8::1]/"},
		{"IPv6 literal without a port", "GET", "/", "[::1]", 8443, 308, "https://[::1]:8443/"},
		{"host with userinfo trick", "GET", "/", "evil.example@hits.example", 443, 400, ""},
		{"host with a path", "GET", "/", "hits.example/evil", 443, 400, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(tc.method, tc.target, strings.NewReader(""))
			r.Host = tc.host
			w := httptest.NewRecorder()
			Redirect(tc.port).ServeHTTP(w, r)
			if w.Code != tc.status || w.Header().Get("Location") != tc.location {
				t.Fatalf("got %d %q, want %d %q", w.Code, w.Header().Get("Location"), tc.status, tc.location)
			}
		})
	}
}

func TestWrapAddsHSTSAndRefusesCONNECT(t *testing.T) {
	var got *http.Request
	h := wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { got = r }), Options{HSTSMaxAge: 365 * 24 * time.Hour})
	w := httptest.NewRecorder()
	r := httptest.NewRequest("GET", "/", nil)
	r.Body = http.NoBody
	h.ServeHTTP(w, r)
	if v := w.Header().Get("Strict-Transport-Security"); v != "max-age=31536000" {
		t.Fatalf("Strict-Transport-Security %q", v)
	}
	// An empty body that is not NoBody (HTTP/2) is passed on as NoBody.
	r = httptest.NewRequest("GET", "/", strings.NewReader(""))
	r.ContentLength = 0
	h.ServeHTTP(httptest.NewRecorder(), r)
	if got.Body != http.NoBody {
		t.Fatalf("body %T, want http.NoBody", got.Body)
	}
	got = nil
	w = httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest("CONNECT", "/", nil))
	if w.Code != http.StatusMethodNotAllowed || got != nil {
		t.Fatalf("CONNECT: %d, handler called %v", w.Code, got != nil)
	}
	w = httptest.NewRecorder()
	wrap(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}), Options{}).ServeHTTP(w, httptest.NewRequest("GET", "/", nil))
	if v := w.Header().Get("Strict-Transport-Security"); v != "" {
		t.Fatalf("HSTS %q with max age 0", v)
	}
}

// FuzzRedirect: whatever Host and path a client sends, the answer is a 400
// or a 308 to https on the same host and the configured port, never to
// another host or scheme.
func FuzzRedirect(f *testing.F) {
	for _, s := range [][2]string{{"hits.example", "/a?b=c"}, {"[::1]:80", "/"}, {"a@b", "/"}, {"x/y", "//evil.example/"}, {"h:1:2", "/%2F"}} {
		f.Add(s[0], s[1])
	}
	h := Redirect(8443)
	f.Fuzz(func(t *testing.T, host, path string) {
		r, err := http.NewRequest("GET", "http://placeholder/", nil)
		if err != nil {
			t.Fatal(err) // a constant URL: cannot happen
		}
		r.Host = host
		if u, err := url.ParseRequestURI(path); err == nil {
			r.URL = u
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code == http.StatusBadRequest {
			return
		}
		loc, err := url.Parse(w.Header().Get("Location"))
		if w.Code != http.StatusPermanentRedirect || err != nil {
			t.Fatalf("host %q path %q: %d %q (%v)", host, path, w.Code, w.Header().Get("Location"), err)
		}
		want := host
		if h, _, err := net.SplitHostPort(host); err == nil {
			want = h
		}
		want = strings.TrimSuffix(strings.TrimPrefix(want, "["), "]")
		if loc.Scheme != "https" || loc.Port() != "8443" || !strings.EqualFold(loc.Hostname(), want) || loc.User != nil {
			t.Fatalf("host %q path %q: Location %q leaves https://%s:8443", host, path, loc, want)
		}
	})
}
