package admin_test

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"hits/lb/internal/admin"
)

func TestAllowHosts(t *testing.T) {
	ok := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) })
	for _, tc := range []struct {
		hosts []string
		host  string
		want  int
	}{
		{[]string{"localhost"}, "localhost", 200},
		{[]string{"localhost"}, "LocalHost:8081", 200},
		{[]string{"localhost"}, "localhost.:8081", 200},
		{[]string{"localhost"}, "127.0.0.1:8081", 200},
		{[]string{"localhost"}, "[::1]:8081", 200},
		{[]string{"localhost"}, "10.1.2.3", 200},
		{[]string{"localhost"}, "evil.example", 421},
		{[]string{"localhost"}, "evil.example:8081", 421},
		{[]string{"localhost"}, "localhost.evil.example", 421},
		{[]string{"localhost"}, "", 421},
		{[]string{"lb", "admin.example"}, "admin.example", 200},
		{[]string{"lb", "admin.example"}, "localhost", 421},
		{[]string{"*"}, "evil.example", 200},
	} {
		r := httptest.NewRequest(http.MethodGet, "/status", nil)
		r.Host = tc.host
		w := httptest.NewRecorder()
		admin.AllowHosts(ok, tc.hosts).ServeHTTP(w, r)
		if w.Code != tc.want {
			t.Errorf("hosts %v, Host %q: got %d, want %d", tc.hosts, tc.host, w.Code, tc.want)
		}
	}
}
