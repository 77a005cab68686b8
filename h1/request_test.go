package h1

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestReadRequest(t *testing.T) {
	shared := NewReusable(context.WithValue(context.Background(), ctxKey{}, "conn"))
	for _, tc := range []struct {
		name, raw         string
		method, uri, host string
		path, query       string
		body              string
		close             bool
		header            map[string]string // "" means absent
		rest              string
	}{
		{name: "simple", raw: "GET /a?b=1 HTTP/1.1\r\nHost: h\r\nUser-Agent: x\r\n\r\nNEXT", method: "GET", uri: "/a?b=1", host: "h", path: "/a", query: "b=1",
			header: map[string]string{"User-Agent": "x", "Host": ""}, rest: "NEXT"},
		{name: "escaped path", raw: "GET /a%20b HTTP/1.1\r\nHost: h\r\n\r\n", method: "GET", uri: "/a%20b", host: "h", path: "/a b"},
		{name: "length body", raw: "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabcNEXT", method: "POST", uri: "/", host: "h", path: "/", body: "abc",
			header: map[string]string{"Content-Length": "3"}, rest: "NEXT"},
		{name: "repeated identical length", raw: "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc", method: "POST", uri: "/", host: "h", path: "/", body: "abc"},
		{name: "chunked body with trailer", raw: "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n1;ext=1\r\nd\r\n0\r\nX-T: 1\r\n\r\nNEXT",
			method: "POST", uri: "/", host: "h", path: "/", body: "abcd", header: map[string]string{"Transfer-Encoding": ""}, rest: "NEXT"},
		{name: "CL+TE: chunked wins, conn closes", raw: "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 50\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nz\r\n0\r\n\r\nNEXT",
			method: "POST", uri: "/", host: "h", path: "/", body: "z", close: true, header: map[string]string{"Content-Length": ""}, rest: "NEXT"},
		{name: "HTTP/1.0 with TE: length wins, conn closes", raw: "POST / HTTP/1.0\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\nContent-Length: 2\r\n\r\nzzNEXT",
			method: "POST", uri: "/", path: "/", body: "zz", close: true, rest: "NEXT"},
		{name: "HTTP/1.0 keep-alive", raw: "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", method: "GET", uri: "/", path: "/"},
		{name: "HTTP/1.0 default close", raw: "GET / HTTP/1.0\r\n\r\n", method: "GET", uri: "/", path: "/", close: true},
		{name: "connection close", raw: "GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n", method: "GET", uri: "/", host: "h", path: "/", close: true},
		{name: "absolute-form host wins", raw: "GET http://b:81/p?q HTTP/1.1\r\nHost: a\r\n\r\n", method: "GET", uri: "http://b:81/p?q", host: "b:81", path: "/p", query: "q"},
		{name: "asterisk", raw: "OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n", method: "OPTIONS", uri: "*", host: "h", path: "*"},
		{name: "bare LF lines", raw: "GET / HTTP/1.1\nHost: h\n\n", method: "GET", uri: "/", host: "h", path: "/"},
		{name: "empty Host", raw: "GET / HTTP/1.1\r\nHost:\r\n\r\n", method: "GET", uri: "/", path: "/"},
	} {
		// Each case twice: a new request, and one request reused for
		// every case in turn, as the front server does, so nothing of an
		// earlier case may show.
		for _, reuse := range []*Reusable{nil, shared} {
			t.Run(fmt.Sprintf("%s/reused=%v", tc.name, reuse != nil), func(t *testing.T) {
				br := bufio.NewReader(strings.NewReader(tc.raw))
				req, err := ReadRequest(context.Background(), br, Options{Reuse: reuse})
				if err != nil {
					t.Fatalf("ReadRequest: %v", err)
				}
				if reuse != nil && req.Context().Value(ctxKey{}) != "conn" {
					t.Error("the reused request lost its context")
				}
				for k := range req.Header {
					if !strings.Contains(tc.raw, k+":") {
						t.Errorf("header %s: %q is not in this request", k, req.Header[k])
					}
				}
				if tc.body == "" && req.ContentLength != 0 || req.TransferEncoding != nil && tc.body == "" {
					t.Errorf("framing left over: length %d, coding %q", req.ContentLength, req.TransferEncoding)
				}
				body, err := io.ReadAll(req.Body)
				if err != nil {
					t.Fatalf("body: %v", err)
				}
				if req.Method != tc.method || req.RequestURI != tc.uri || req.Host != tc.host || req.URL.Path != tc.path ||
					req.URL.RawQuery != tc.query || string(body) != tc.body || req.Close != tc.close {
					t.Errorf("got %s %q host %q path %q query %q body %q close %v", req.Method, req.RequestURI, req.Host, req.URL.Path, req.URL.RawQuery, body, req.Close)
				}
				for k, want := range tc.header {
					if got := req.Header.Get(k); got != want {
						t.Errorf("header %s = %q, want %q", k, got, want)
					}
				}
				if b, ok := req.Body.(*Body); ok && !b.Done() {
					t.Error("body read to EOF but not Done")
				}
				if rest, _ := io.ReadAll(br); string(rest) != tc.rest {
					t.Errorf("left %q, want %q", rest, tc.rest)
				}
			})
		}
	}
}

type ctxKey struct{}

func TestReadRequestRefuses(t *testing.T) {
	for _, tc := range []struct {
		name, raw string
		status    int
	}{
		{"scheme-like target", "GET t:80 HTTP/1.1\r\nHost: h\r\n\r\n", 400},
		{"relative target", "GET a/b HTTP/1.1\r\nHost: h\r\n\r\n", 400},
		{"ftp URL", "GET ftp://h/ HTTP/1.1\r\nHost: h\r\n\r\n", 400},
		{"URL with user", "GET http://u@h/ HTTP/1.1\r\nHost: h\r\n\r\n", 400},
		{"asterisk for GET", "GET * HTTP/1.1\r\nHost: h\r\n\r\n", 400},
		{"no Host", "GET / HTTP/1.1\r\n\r\n", 400},
		{"two Hosts", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400},
		{"bad Host", "GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 400},
		{"space in name", "GET / HTTP/1.1\r\nHost: h\r\nX A: 1\r\n\r\n", 400},
		{"space before colon", "GET / HTTP/1.1\r\nHost: h\r\nX-A : 1\r\n\r\n", 400},
		{"NUL in value", "GET / HTTP/1.1\r\nHost: h\r\nX-A: a\x00b\r\n\r\n", 400},
		{"CR in value", "GET / HTTP/1.1\r\nHost: h\r\nX-A: a\rb\r\n\r\n", 400},
		{"obs-fold", "GET / HTTP/1.1\r\nHost: h\r\nX-A: 1\r\n 2\r\n\r\n", 400},
		{"conflicting lengths", "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 400},
		{"lengths spelled differently", "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nContent-Length: 01\r\n\r\n", 400},
		{"signed length", "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: +1\r\n\r\n", 400},
		{"empty length", "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: \r\n\r\n", 400},
		{"gzip coding", "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\n\r\n", 501},
		{"coding list", "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501},
		{"HTTP/2", "PRI * HTTP/2.0\r\n\r\n", 505},
		{"bad version", "GET / HTTP/1.x\r\nHost: h\r\n\r\n", 400},
		{"bad method", "G(T / HTTP/1.1\r\nHost: h\r\n\r\n", 400},
		{"too large", "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 11\r\n\r\n", 413},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ReadRequest(context.Background(), bufio.NewReader(strings.NewReader(tc.raw)), Options{MaxBodyBytes: 10})
			var he *Error
			if !errors.As(err, &he) || he.Status != tc.status {
				t.Errorf("err = %v, want status %d", err, tc.status)
			}
		})
	}
}

func TestRequestBodyErrors(t *testing.T) {
	for _, tc := range []struct {
		name, raw string
		status    int
	}{
		{"bad chunk size", "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400},
		{"negative chunk size", "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n-5\r\n", 400},
		{"17 hex digits", "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n10000000000000000\r\n", 400},
		{"bare LF after size", "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n2\nab\r\n0\r\n\r\n", 400},
		{"no blank line after last chunk", "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n", 400},
		{"length cut short", "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nab", 408},
		{"chunked cut short", "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab", 408},
		{"chunked over the limit", "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n8\r\n12345678\r\n8\r\n12345678\r\n0\r\n\r\n", 413},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, err := ReadRequest(context.Background(), bufio.NewReader(strings.NewReader(tc.raw)), Options{MaxBodyBytes: 10})
			if err != nil {
				t.Fatal(err)
			}
			_, err = io.ReadAll(req.Body)
			var be *BodyError
			if !errors.As(err, &be) || be.Status != tc.status {
				t.Errorf("err = %v, want a BodyError with status %d", err, tc.status)
			}
			if req.Body.(*Body).Done() {
				t.Error("a failed body is Done")
			}
		})
	}
}

func TestReadResponseStrictness(t *testing.T) {
	for _, tc := range []struct {
		name, raw string
		upgrade   bool
		ok        bool
	}{
		{"NUL in a value", "HTTP/1.1 200 OK\r\nX-A: a\x00b\r\nContent-Length: 0\r\n\r\n", false, false},
		{"ESC in a value", "HTTP/1.1 200 OK\r\nX-A: a\x1bb\r\nContent-Length: 0\r\n\r\n", false, false},
		{"tab in a value", "HTTP/1.1 200 OK\r\nX-A: a\tb\r\nContent-Length: 0\r\n\r\n", false, true},
		{"101 to a plain request", "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n", false, false},
		{"101 without Upgrade", "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n\r\n", true, false},
		{"101 to an upgrade", "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n", true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := ReadResponse(bufio.NewReader(strings.NewReader(tc.raw)), http.Header{}, "GET", tc.upgrade, new(LengthBody))
			if (err == nil) != tc.ok {
				t.Fatalf("err = %v, want ok=%v", err, tc.ok)
			}
			if tc.ok && resp.Status == 101 && (resp.Upgrade != "websocket" || !resp.Close) {
				t.Errorf("101: Upgrade %q Close %v, want websocket and never pooled", resp.Upgrade, resp.Close)
			}
		})
	}
}

func TestDeadlineSkipsNegligibleMoves(t *testing.T) {
	now := time.Now()
	var dl Deadline
	for _, st := range []struct {
		d       time.Time
		timeout time.Duration
		move    bool
		why     string
	}{
		{now.Add(60 * time.Second), time.Minute, true, "first deadline is set"},
		{now.Add(60*time.Second + 10*time.Millisecond), time.Minute, false, "10ms later than the current one: kept"},
		{now.Add(62 * time.Second), time.Minute, true, "2s later: moved"},
		{now.Add(30 * time.Second), time.Minute, true, "earlier: always moved"},
		{time.Time{}, 0, true, "cleared"},
		{time.Time{}, 0, false, "already clear"},
		{now.Add(100 * time.Millisecond), 100 * time.Millisecond, true, "set again"},
		{now.Add(120 * time.Millisecond), 100 * time.Millisecond, true, "20ms is over a sixteenth of a 100ms timeout: moved"},
		{now.Add(122 * time.Millisecond), 100 * time.Millisecond, false, "2ms is under it: kept"},
	} {
		if got := dl.Move(st.d, st.timeout); got != st.move {
			t.Fatalf("%s: Move = %v, want %v", st.why, got, st.move)
		}
	}
}
