package h1

import (
	"bufio"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
)

func TestReadResponse(t *testing.T) {
	cases := []struct {
		name, raw, method string
		status            int
		body              string
		close             bool
		stream            bool
		header            map[string]string // "" means absent
		rest              string            // what must be left for the next response
	}{
		{name: "content-length", raw: "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhelloNEXT",
			status: 200, body: "hello", header: map[string]string{"Content-Type": "text/plain", "Content-Length": "5"}, rest: "NEXT"},
		{name: "chunked with trailers", raw: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-T\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\nX-T: 1\r\n\r\nNEXT",
			status: 200, body: "abcde", stream: true, header: map[string]string{"Trailer": "", "Transfer-Encoding": "", "Content-Length": ""}, rest: "NEXT"},
		{name: "chunked wins over length", raw: "HTTP/1.1 200 OK\r\nContent-Length: 99\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\n\r\n",
			status: 200, body: "x", stream: true, header: map[string]string{"Content-Length": ""}},
		{name: "until close", raw: "HTTP/1.1 200 OK\r\n\r\nall of it", status: 200, body: "all of it", close: true, stream: true},
		{name: "HTTP/1.0 default close", raw: "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok", status: 200, body: "ok", close: true},
		{name: "HTTP/1.0 keep-alive", raw: "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok", status: 200, body: "ok"},
		{name: "connection close and listed fields", raw: "HTTP/1.1 200 OK\r\nConnection: close, X-Hop\r\nX-Hop: 1\r\nKeep-Alive: timeout=5\r\nX-Kept: 2\r\nContent-Length: 0\r\n\r\n",
			status: 200, close: true, header: map[string]string{"X-Hop": "", "Keep-Alive": "", "Connection": "", "X-Kept": "2"}},
		{name: "interim responses skipped", raw: "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 1\r\n\r\n!",
			status: 201, body: "!", header: map[string]string{"Link": ""}},
		{name: "HEAD keeps the length, no body", method: "HEAD", raw: "HTTP/1.1 200 OK\r\nContent-Length: 42\r\n\r\nNEXT",
			status: 200, header: map[string]string{"Content-Length": "42"}, rest: "NEXT"},
		{name: "204 has no body", raw: "HTTP/1.1 204 No Content\r\n\r\nNEXT", status: 204, rest: "NEXT"},
		{name: "304 has no body", raw: "HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\n\r\nNEXT", status: 304, rest: "NEXT", header: map[string]string{"Etag": "\"x\""}},
		{name: "bare LF and no reason", raw: "HTTP/1.1 200\nContent-Length: 1\n\nz", status: 200, body: "z"},
		{name: "repeated fields kept", raw: "HTTP/1.1 200 OK\r\nSet-Cookie: a=1\r\nX-Between: o\r\nSet-Cookie: b=2\r\nX-After: p\r\nContent-Length: 0\r\n\r\n", status: 200,
			header: map[string]string{"Set-Cookie": "a=1", "X-Between": "o", "X-After": "p"}},
		{name: "304 drops its length", raw: "HTTP/1.1 304 Not Modified\r\nContent-Length: 7\r\ncontent-type: text/x\r\n\r\nNEXT", status: 304, rest: "NEXT",
			header: map[string]string{"Content-Length": "", "Content-Type": "text/x"}},
		{name: "length digits passed on", raw: "HTTP/1.1 200 OK\r\nContent-Length: 03\r\nContent-Length: 03\r\n\r\nabc", status: 200, body: "abc",
			header: map[string]string{"Content-Length": "03"}},
		{name: "long header line", raw: "HTTP/1.1 200 OK\r\nX-Long: " + strings.Repeat("y", 10000) + "\r\nContent-Length: 0\r\n\r\n", status: 200,
			header: map[string]string{"X-Long": strings.Repeat("y", 10000)}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			br := bufio.NewReaderSize(strings.NewReader(tc.raw), 4096)
			h := http.Header{}
			method := tc.method
			if method == "" {
				method = "GET"
			}
			resp, err := ReadResponse(br, h, method, false, new(LengthBody))
			if err != nil {
				t.Fatalf("readResponse: %v", err)
			}
			var body []byte
			if resp.Body != nil {
				if body, err = io.ReadAll(resp.Body); err != nil {
					t.Fatalf("body: %v", err)
				}
			}
			if resp.Status != tc.status || string(body) != tc.body || resp.Close != tc.close || resp.Stream != tc.stream {
				t.Errorf("got status %d body %q close %v stream %v, want %d %q %v %v", resp.Status, body, resp.Close, resp.Stream, tc.status, tc.body, tc.close, tc.stream)
			}
			for k, want := range tc.header {
				if got := h.Get(k); got != want {
					t.Errorf("header %s = %q, want %q", k, got, want)
				}
			}
			if tc.name == "repeated fields kept" {
				if got := strings.Join(h["Set-Cookie"], "|"); got != "a=1|b=2" {
					t.Errorf("Set-Cookie = %q, want a=1|b=2", got)
				}
				// The proxy adds its sticky cookie after the backend's: an
				// append must not overwrite the field stored next to it.
				h.Add("Set-Cookie", "lb=1")
				h.Add("X-Between", "q")
				if got := strings.Join(h["Set-Cookie"], "|") + " " + strings.Join(h["X-Between"], "|") + " " + h.Get("X-After"); got != "a=1|b=2|lb=1 o|q p" {
					t.Errorf("after appends: %q", got)
				}
			}
			if rest, _ := io.ReadAll(br); string(rest) != tc.rest {
				t.Errorf("left %q for the next response, want %q", rest, tc.rest)
			}
		})
	}
}

func TestReadResponseRejectsMalformed(t *testing.T) {
	for name, raw := range map[string]string{
		"empty":                 "",
		"not http":              "SSH-2.0-OpenSSH\r\n\r\n",
		"http/2":                "HTTP/2 200\r\n\r\n",
		"bad status":            "HTTP/1.1 2x0 OK\r\n\r\n",
		"cut head":              "HTTP/1.1 200 OK\r\nContent-Le",
		"folded line":           "HTTP/1.1 200 OK\r\nX-A: 1\r\n  more\r\n\r\n",
		"no colon":              "HTTP/1.1 200 OK\r\nbogus\r\n\r\n",
		"space before colon":    "HTTP/1.1 200 OK\r\nX-A : 1\r\n\r\n",
		"conflicting lengths":   "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
		"lengths spelled apart": "HTTP/1.1 200 OK\r\nContent-Length: 03\r\nContent-Length: 3\r\n\r\nabc",
		"negative length":       "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
		"signed length":         "HTTP/1.1 200 OK\r\nContent-Length: +1\r\n\r\n",
		"empty length":          "HTTP/1.1 200 OK\r\nContent-Length: \r\n\r\n",
		"huge length":           "HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\n",
		"unknown coding":        "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
		"header line too long":  "HTTP/1.1 200 OK\r\nX: " + strings.Repeat("z", maxHeadLine+10) + "\r\n\r\n",
	} {
		t.Run(name, func(t *testing.T) {
			_, err := ReadResponse(bufio.NewReader(strings.NewReader(raw)), http.Header{}, "GET", false, new(LengthBody))
			if err == nil {
				t.Fatal("accepted")
			}
		})
	}
	t.Run("body cut short", func(t *testing.T) {
		resp, err := ReadResponse(bufio.NewReader(strings.NewReader("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")), http.Header{}, "GET", false, new(LengthBody))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadAll(resp.Body); !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Errorf("read = %v, want ErrUnexpectedEOF", err)
		}
	})
	t.Run("chunked cut short", func(t *testing.T) {
		resp, err := ReadResponse(bufio.NewReader(strings.NewReader("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab")), http.Header{}, "GET", false, new(LengthBody))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadAll(resp.Body); err == nil {
			t.Error("a cut chunked body read as complete")
		}
	})
}

// BenchmarkReadResponse parses the head a small app answer has (the
// benchmark backend's), as the proxy does per request.
func BenchmarkReadResponse(b *testing.B) {
	raw := "HTTP/1.1 200 OK\r\nContent-Length: 64\r\nContent-Type: text/plain\r\nDate: Thu, 26 Nov 2026 20:00:00 GMT\r\n\r\n" + strings.Repeat("x", 64)
	sr := strings.NewReader(raw)
	br := bufio.NewReaderSize(sr, 4096)
	h := http.Header{}
	var fixed LengthBody // the conn's, as in the proxy
	b.ReportAllocs()
	for b.Loop() {
		sr.Reset(raw)
		br.Reset(sr)
		clear(h)
		resp, err := ReadResponse(br, h, "GET", false, &fixed)
		if err != nil || resp.Length != 64 {
			b.Fatalf("got %+v, %v", resp, err)
		}
	}
}
