package front

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"hits/h1"
	"hits/testkit"
)

// start serves h on a loopback port and returns the address and server.
func start(t *testing.T, h http.Handler, tweak func(*Server)) (string, *Server) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{Handler: h}
	if tweak != nil {
		tweak(s)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s.Shutdown(ctx)
		if err := <-done; err != ErrServerClosed {
			t.Errorf("Serve returned %v, want ErrServerClosed", err)
		}
	})
	return ln.Addr().String(), s
}

// raw sends bytes on a new conn and returns a reader of the answers.
func raw(t *testing.T, addr, send string) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, send); err != nil {
		t.Fatal(err)
	}
	return c, bufio.NewReader(c)
}

func readResp(t *testing.T, br *bufio.Reader, method string) (*http.Response, string) {
	t.Helper()
	resp, err := http.ReadResponse(br, &http.Request{Method: method})
	if err != nil {
		t.Fatalf("read response: %v", err)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read body: %v", err)
	}
	return resp, string(b)
}

// closed reports whether the server closed the conn (EOF on read).
func closed(br *bufio.Reader) bool {
	_, err := br.ReadByte()
	return err == io.EOF
}

var hello = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/len":
		w.Header().Set("Content-Length", "5")
		io.WriteString(w, "hello")
	case "/stream":
		io.WriteString(w, "part1,")
		w.(http.Flusher).Flush()
		io.WriteString(w, "part2")
	case "/short":
		w.Header().Set("Content-Length", "10")
		io.WriteString(w, "abc")
	case "/echo":
		b, _ := io.ReadAll(r.Body)
		w.Header().Set("Content-Length", fmt.Sprint(len(b)))
		w.Write(b)
	case "/small": // no length declared, and done within bufferBeforeChunking
		io.WriteString(w, "small ")
		io.WriteString(w, "page")
	case "/big": // no length declared, and more than bufferBeforeChunking
		for range 3 {
			io.WriteString(w, strings.Repeat("x", 1000))
		}
	case "/ignore-body":
		w.Header().Set("Content-Length", "2")
		io.WriteString(w, "ok")
	default:
		w.Header().Set("X-Host", r.Host)
		w.Header().Set("X-Remote", r.RemoteAddr)
		w.Header().Set("X-Uri", r.RequestURI)
		w.WriteHeader(http.StatusTeapot)
	}
})

func TestKeepAliveAndPipelining(t *testing.T) {
	addr, _ := start(t, hello, nil)
	_, br := raw(t, addr, "GET /len HTTP/1.1\r\nHost: a\r\n\r\nGET /stream HTTP/1.1\r\nHost: a\r\n\r\nHEAD /len HTTP/1.1\r\nHost: a\r\n\r\nGET /x?q=1 HTTP/1.1\r\nHost: b.test\r\n\r\n")
	resp, body := readResp(t, br, "GET")
	if resp.StatusCode != 200 || body != "hello" || resp.ContentLength != 5 {
		t.Errorf("first: %d %q len %d", resp.StatusCode, body, resp.ContentLength)
	}
	resp, body = readResp(t, br, "GET")
	if body != "part1,part2" || resp.TransferEncoding[0] != "chunked" {
		t.Errorf("second: %q %v, want chunked part1,part2", body, resp.TransferEncoding)
	}
	resp, body = readResp(t, br, "HEAD")
	if resp.ContentLength != 5 || body != "" {
		t.Errorf("HEAD: len %d body %q", resp.ContentLength, body)
	}
	resp, _ = readResp(t, br, "GET")
	if resp.StatusCode != 418 || resp.Header.Get("X-Host") != "b.test" || resp.Header.Get("X-Uri") != "/x?q=1" ||
		!strings.HasPrefix(resp.Header.Get("X-Remote"), "127.0.0.1:") || resp.Header.Get("Date") == "" {
		t.Errorf("fourth: %d %v", resp.StatusCode, resp.Header)
	}
}

// A body of unknown length that ends within bufferBeforeChunking goes out
// with its measured length, so an HTTP/1.0 client keeps its conn too; a
// longer one, or one flushed, is chunked; an answer with no body at all
// says Content-Length: 0.
func TestUnknownLengthMeasured(t *testing.T) {
	addr, _ := start(t, hello, nil)
	_, br := raw(t, addr, "GET /small HTTP/1.1\r\nHost: a\r\n\r\nGET /big HTTP/1.1\r\nHost: a\r\n\r\nGET /teapot HTTP/1.1\r\nHost: a\r\n\r\nGET /stream HTTP/1.1\r\nHost: a\r\n\r\nGET /small HTTP/1.1\r\nHost: a\r\n\r\n")
	for _, want := range []struct {
		body    string
		length  int64
		chunked bool
	}{
		{"small page", 10, false},
		{strings.Repeat("x", 3000), -1, true},
		{"", 0, false},
		{"part1,part2", -1, true},
		{"small page", 10, false}, // the held bytes of the conn's earlier answer are gone
	} {
		resp, body := readResp(t, br, "GET")
		if body != want.body || resp.ContentLength != want.length || (len(resp.TransferEncoding) > 0) != want.chunked {
			t.Errorf("got %q, Content-Length %d, Transfer-Encoding %v; want %.20q, %d, chunked %v", body, resp.ContentLength, resp.TransferEncoding, want.body, want.length, want.chunked)
		}
	}

	_, br = raw(t, addr, "GET /small HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /small HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
	for i := range 2 {
		resp, body := readResp(t, br, "GET")
		if body != "small page" || resp.ContentLength != 10 || resp.Close {
			t.Errorf("HTTP/1.0 keep-alive #%d: %q, Content-Length %d, close %v; want a measured body on a kept conn", i, body, resp.ContentLength, resp.Close)
		}
	}
}

func TestHTTP10AndConnectionClose(t *testing.T) {
	addr, _ := start(t, hello, nil)
	_, br := raw(t, addr, "GET /stream HTTP/1.0\r\n\r\n")
	resp, body := readResp(t, br, "GET")
	if body != "part1,part2" || len(resp.TransferEncoding) != 0 || !resp.Close {
		t.Errorf("HTTP/1.0 unknown length: body %q TE %v close %v, want close-delimited", body, resp.TransferEncoding, resp.Close)
	}
	_, br = raw(t, addr, "GET /len HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /len HTTP/1.0\r\n\r\n")
	resp, _ = readResp(t, br, "GET")
	if resp.Close || resp.Header.Get("Connection") != "keep-alive" {
		t.Errorf("HTTP/1.0 keep-alive not honoured: %v", resp.Header)
	}
	readResp(t, br, "GET")
	if !closed(br) {
		t.Error("HTTP/1.0 without keep-alive left the conn open")
	}
	_, br = raw(t, addr, "GET /len HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
	if resp, _ := readResp(t, br, "GET"); !resp.Close || !closed(br) {
		t.Error("Connection: close not honoured")
	}
}

func TestBadRequests(t *testing.T) {
	addr, _ := start(t, hello, func(s *Server) { s.MaxHeaderBytes = 4096 })
	cases := []struct {
		name, send string
		want       int
	}{
		{"garbage", "HELLO\r\n\r\n", 400},
		{"missing host", "GET / HTTP/1.1\r\n\r\n", 400},
		{"two hosts", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400},
		{"bare CR in value", "GET / HTTP/1.1\r\nHost: a\r\nX-A: a\rb\r\n\r\n", 400},
		{"NUL in value", "GET / HTTP/1.1\r\nHost: a\r\nX-A: a\x00b\r\n\r\n", 400},
		{"DEL in value", "GET / HTTP/1.1\r\nHost: a\r\nX-A: a\x7fb\r\n\r\n", 400},
		{"space in name", "GET / HTTP/1.1\r\nHost: a\r\nX A: b\r\n\r\n", 400},
		{"bad host", "GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 400},
		{"CL and unknown TE", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: gzip\r\n\r\nabc", 501},
		{"TE list", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 501},
		{"two TE fields", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 501},
		{"scheme-like target", "GET t:80 HTTP/1.1\r\nHost: a\r\n\r\n", 400},
		{"ftp target", "GET ftp://a/x HTTP/1.1\r\nHost: a\r\n\r\n", 400},
		{"asterisk for GET", "GET * HTTP/1.1\r\nHost: a\r\n\r\n", 400},
		{"relative target", "GET x/y HTTP/1.1\r\nHost: a\r\n\r\n", 400},
		{"obs-fold", "GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\r\n 2\r\n\r\n", 400},
		{"signed length", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +3\r\n\r\nabc", 400},
		{"same length spelled twice differently", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 03\r\n\r\nabc", 400},
		{"HTTP/1.2", "GET / HTTP/1.2\r\nHost: a\r\n\r\n", 505},
		{"lower-case version", "GET / http/1.1\r\nHost: a\r\n\r\n", 400},
		{"two lengths", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabc", 400},
		{"HTTP/2 preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 505},
		{"CONNECT", "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n", 405},
		{"Expect other", "GET / HTTP/1.1\r\nHost: a\r\nExpect: magic\r\n\r\n", 417},
		{"huge headers", "GET / HTTP/1.1\r\nHost: a\r\nX-Big: " + strings.Repeat("x", 10000) + "\r\n\r\n", 431},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, br := raw(t, addr, tc.send)
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatalf("no response: %v", err)
			}
			io.ReadAll(resp.Body)
			if resp.StatusCode != tc.want && !(tc.want == 501 && resp.StatusCode == 400) {
				t.Errorf("status %d, want %d", resp.StatusCode, tc.want)
			}
			if !closed(br) {
				t.Error("conn left open after a bad request")
			}
		})
	}
}

func TestBodies(t *testing.T) {
	addr, _ := start(t, hello, nil)
	t.Run("content-length and chunked request bodies", func(t *testing.T) {
		_, br := raw(t, addr, "POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhelloPOST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n")
		if _, body := readResp(t, br, "POST"); body != "hello" {
			t.Errorf("first body %q", body)
		}
		if _, body := readResp(t, br, "POST"); body != "abcde" {
			t.Errorf("chunked body %q", body)
		}
	})
	t.Run("unread body closes the conn after the answer", func(t *testing.T) {
		_, br := raw(t, addr, "POST /ignore-body HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello")
		resp, body := readResp(t, br, "POST")
		if body != "ok" {
			t.Errorf("body %q", body)
		}
		// Closing without saying so makes a client reuse the conn: its next
		// request meets EOF, and a POST cannot be retried.
		if !resp.Close {
			t.Error("answer does not say Connection: close, but the conn is closed after it")
		}
		if !closed(br) {
			t.Error("conn with an unread body was kept: the body would be parsed as a request")
		}
	})
	t.Run("short write closes the conn", func(t *testing.T) {
		_, br := raw(t, addr, "GET /short HTTP/1.1\r\nHost: a\r\n\r\n")
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadAll(resp.Body); err == nil {
			t.Error("a response shorter than its Content-Length read as complete")
		}
	})
	t.Run("100-continue", func(t *testing.T) {
		c, br := raw(t, addr, "POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n")
		line, err := br.ReadString('\n')
		if err != nil || line != "HTTP/1.1 100 Continue\r\n" {
			t.Fatalf("got %q %v, want 100 Continue before the body is sent", line, err)
		}
		br.ReadString('\n')
		io.WriteString(c, "hi")
		if _, body := readResp(t, br, "POST"); body != "hi" {
			t.Errorf("body %q", body)
		}
	})
}

// RFC 9112 6.1: a request with both Content-Length and chunked coding,
// or an HTTP/1.0 request with Transfer-Encoding, is answered (chunked
// wins; 1.0 ignores the coding as net/http does) and its conn closed, so
// nothing after it is taken as a request.
func TestAmbiguousFramingIsAnsweredThenClosed(t *testing.T) {
	addr, _ := start(t, hello, nil)
	for _, tc := range []struct{ name, send, body string }{
		{"CL+TE", "POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n", "ab"},
		{"TE+CL", "POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 30\r\n\r\n2\r\nab\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n", "ab"},
		{"HTTP/1.0 with TE", "POST /echo HTTP/1.0\r\nConnection: keep-alive\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\nabcGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n", "abc"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, br := raw(t, addr, tc.send)
			resp, body := readResp(t, br, "POST")
			if resp.StatusCode != 200 || body != tc.body {
				t.Errorf("got %d %q, want 200 %q", resp.StatusCode, body, tc.body)
			}
			if !resp.Close {
				t.Error("answer does not say Connection: close")
			}
			if !closed(br) {
				t.Error("conn left open: the bytes after the body could be read as a request")
			}
		})
	}
	t.Run("absolute-form", func(t *testing.T) {
		_, br := raw(t, addr, "GET http://b.example/p?q HTTP/1.1\r\nHost: a\r\n\r\n")
		resp, _ := readResp(t, br, "GET")
		if resp.StatusCode != 418 || resp.Header.Get("X-Host") != "b.example" || resp.Header.Get("X-Uri") != "http://b.example/p?q" {
			t.Errorf("got %d host %q uri %q, want 418 b.example http://b.example/p?q", resp.StatusCode, resp.Header.Get("X-Host"), resp.Header.Get("X-Uri"))
		}
	})
}

func TestBodyLimits(t *testing.T) {
	var gotErr atomic.Value
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, err := io.ReadAll(r.Body)
		var be *h1.BodyError
		if errors.As(err, &be) {
			gotErr.Store(be.Status)
			w.Header().Set("Connection", "close")
			w.WriteHeader(be.Status)
			return
		}
		w.WriteHeader(200)
	})
	addr, _ := start(t, h, func(s *Server) {
		s.MaxBodyBytes = 10
		s.BodyTimeout = 300 * time.Millisecond
	})
	t.Run("announced too large", func(t *testing.T) {
		_, br := raw(t, addr, "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\n")
		if resp, _ := readResp(t, br, "POST"); resp.StatusCode != 413 {
			t.Errorf("status %d, want 413", resp.StatusCode)
		}
	})
	t.Run("chunked grows too large", func(t *testing.T) {
		_, br := raw(t, addr, "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n8\r\n12345678\r\n8\r\n12345678\r\n0\r\n\r\n")
		if resp, _ := readResp(t, br, "POST"); resp.StatusCode != 413 {
			t.Errorf("status %d, want 413", resp.StatusCode)
		}
	})
	for _, tc := range []struct{ name, send string }{
		{"stalled length body", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nab"},
		{"stalled chunked body", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			_, br := raw(t, addr, tc.send)
			resp, _ := readResp(t, br, "POST")
			if resp.StatusCode != 408 {
				t.Errorf("status %d, want 408", resp.StatusCode)
			}
			if d := time.Since(start); d < 250*time.Millisecond || d > 2*time.Second {
				t.Errorf("cut after %v, want about 300ms", d)
			}
			if !closed(br) {
				t.Error("conn left open")
			}
		})
	}
	for _, tc := range []struct{ name, send string }{
		{"bad chunk size", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nab\r\n0\r\n\r\n"},
		{"negative chunk size", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n-5\r\nab\r\n0\r\n\r\n"},
		{"17 hex digits", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n10000000000000000\r\nab\r\n0\r\n\r\n"},
		{"bare LF", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n2\nab\r\n0\r\n\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, br := raw(t, addr, tc.send)
			resp, _ := readResp(t, br, "POST")
			if resp.StatusCode != 400 {
				t.Errorf("status %d, want 400", resp.StatusCode)
			}
		})
	}
	t.Run("client stops mid-body", func(t *testing.T) {
		c, br := raw(t, addr, "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nab")
		c.(*net.TCPConn).CloseWrite()
		if resp, _ := readResp(t, br, "POST"); resp.StatusCode != 408 {
			t.Errorf("status %d, want 408 (the half-closed client can still read it)", resp.StatusCode)
		}
	})
}

func TestSendTimeout(t *testing.T) {
	werr := make(chan error, 1)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		chunk := make([]byte, 64<<10)
		for range 4096 { // 256 MiB: far more than socket buffers hold
			if _, err := w.Write(chunk); err != nil {
				werr <- err
				return
			}
		}
		werr <- nil
	})
	addr, _ := start(t, h, func(s *Server) { s.SendTimeout = 300 * time.Millisecond })
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: a\r\n\r\n") // and never read
	select {
	case err := <-werr:
		var ne net.Error
		if !errors.As(err, &ne) || !ne.Timeout() {
			t.Errorf("write error %v, want a timeout", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a client that does not read held the handler for 10s")
	}
}

func TestTimeouts(t *testing.T) {
	addr, _ := start(t, hello, func(s *Server) {
		s.ReadHeaderTimeout = 200 * time.Millisecond
		s.IdleTimeout = 300 * time.Millisecond
	})
	for _, tc := range []struct{ name, send string }{
		{"slow headers", "GET / HTTP/1.1\r\nHost: a\r\n"},
		{"silent client", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			_, br := raw(t, addr, tc.send)
			if !closed(br) {
				t.Fatal("conn not closed")
			}
			if d := time.Since(start); d > 2*time.Second {
				t.Errorf("closed after %v, want about 200ms", d)
			}
		})
	}
	t.Run("idle keep-alive", func(t *testing.T) {
		_, br := raw(t, addr, "GET /len HTTP/1.1\r\nHost: a\r\n\r\n")
		readResp(t, br, "GET")
		start := time.Now()
		if !closed(br) {
			t.Fatal("idle conn not closed")
		}
		if d := time.Since(start); d < 250*time.Millisecond || d > 2*time.Second {
			t.Errorf("idle conn closed after %v, want about 300ms", d)
		}
	})
}

func TestShutdownWaitsForActiveAndClosesIdle(t *testing.T) {
	entered := make(chan struct{})
	release := make(chan struct{})
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			close(entered)
			<-release
		}
		w.Header().Set("Content-Length", "4")
		io.WriteString(w, "done")
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{Handler: h}
	served := make(chan error, 1)
	go func() { served <- s.Serve(ln) }()
	addr := ln.Addr().String()

	_, idle := raw(t, addr, "GET /fast HTTP/1.1\r\nHost: a\r\n\r\n")
	readResp(t, idle, "GET")
	_, busy := raw(t, addr, "GET /slow HTTP/1.1\r\nHost: a\r\n\r\n")
	<-entered

	shut := make(chan error, 1)
	go func() { shut <- s.Shutdown(context.Background()) }()
	if !closed(idle) {
		t.Error("idle conn not closed by Shutdown")
	}
	if _, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		t.Error("new conns still accepted during Shutdown")
	}
	select {
	case err := <-shut:
		t.Fatalf("Shutdown returned %v with a request in flight", err)
	default:
	}
	close(release)
	resp, body := readResp(t, busy, "GET")
	if body != "done" || !resp.Close {
		t.Errorf("in-flight request: %q close=%v, want done with Connection: close", body, resp.Close)
	}
	if err := <-shut; err != nil {
		t.Errorf("Shutdown = %v", err)
	}
	if err := <-served; err != ErrServerClosed {
		t.Errorf("Serve = %v", err)
	}
}

func TestShutdownDeadlineForcesClose(t *testing.T) {
	hang := make(chan struct{})
	defer close(hang)
	handling := make(chan struct{})
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(handling)
		select {
		case <-hang:
		case <-r.Context().Done(): // forced close cancels request contexts
		}
	})
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	s := &Server{Handler: h}
	go s.Serve(ln)
	raw(t, ln.Addr().String(), "GET / HTTP/1.1\r\nHost: a\r\n\r\n")
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	// Wait until the request is being handled: Shutdown then cannot drain.
	select {
	case <-handling:
	case <-time.After(5 * time.Second):
		t.Fatal("the request never reached the handler")
	}
	if err := s.Shutdown(ctx); err != context.DeadlineExceeded {
		t.Errorf("Shutdown = %v, want DeadlineExceeded", err)
	}
}

func TestHijack(t *testing.T) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Errorf("hijack: %v", err)
			return
		}
		defer c.Close()
		brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n")
		brw.Flush()
		io.Copy(c, brw)
	})
	addr, _ := start(t, h, nil)
	c, br := raw(t, addr, "GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\nearly ")
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 101 {
		t.Fatalf("got %v %v, want 101", resp, err)
	}
	io.WriteString(c, "late\n")
	line, _ := br.ReadString('\n')
	if line != "early late\n" {
		t.Errorf("echo %q, want bytes sent before and after the 101", line)
	}
}

type forcedCloser interface{ OnForcedClose(func()) bool }

func TestOnForcedClose(t *testing.T) {
	type result struct{ ran, removed bool }
	results := make(chan result, 2)
	inside := make(chan struct{}, 1)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var ran atomic.Bool
		hooked := make(chan struct{})
		fc := w.(forcedCloser)
		fc.OnForcedClose(func() { ran.Store(true); close(hooked) })
		if r.URL.Path == "/hang" {
			inside <- struct{}{}
			<-r.Context().Done() // ended by the forced close, before the hook runs
			select {             // the hook runs just after; the result below says if it did
			case <-hooked:
			case <-time.After(5 * time.Second):
			}
		}
		removed := fc.OnForcedClose(nil)
		results <- result{ran.Load(), removed}
	})
	addr, s := start(t, h, nil)

	_, br := raw(t, addr, "GET /ok HTTP/1.1\r\nHost: a\r\n\r\n")
	if resp, _ := readResp(t, br, "GET"); resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	if got := <-results; got != (result{false, true}) {
		t.Errorf("normal request: hook ran=%v removed=%v, want false true", got.ran, got.removed)
	}

	raw(t, addr, "GET /hang HTTP/1.1\r\nHost: a\r\n\r\n")
	<-inside
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	s.Shutdown(ctx)
	if got := <-results; got != (result{true, false}) {
		t.Errorf("forced close: hook ran=%v removed=%v, want true false", got.ran, got.removed)
	}
}

// The Date header comes from a cache a timer marks stale each second: it
// must stay within a second of the clock and move on with it.
func TestDateFollowsTheClock(t *testing.T) {
	s := &Server{}
	within := func(text string) bool {
		d, err := http.ParseTime(text)
		if err != nil {
			t.Fatalf("Date %q: %v", text, err)
		}
		now := time.Now()
		return !d.After(now) && now.Sub(d) < 2*time.Second
	}
	first := s.httpDate()
	if !within(first) {
		t.Fatalf("Date %q is not the current second", first)
	}
	testkit.Eventually(t, "the Date header to move to the next second", 3*time.Second, func() bool {
		return s.httpDate() != first
	})
	if next := s.httpDate(); !within(next) {
		t.Errorf("Date %q after a second is not the current one", next)
	}
}
