package h1

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httputil"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// The fuzz targets hold h1 to net/http's parsers on the same bytes: where
// both accept a message they must agree on it and on where it ends; h1
// may refuse what net/http accepts (it is stricter on purpose: see
// ReadRequest), never the reverse. `make fuzz` runs each for FUZZTIME;
// the seeds (f.Add below and testdata/fuzz) run with every `go test`.

// requestSeeds are the requests the issue and the tests name.
var requestSeeds = []string{
	"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
	"GET /a?b=1 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\nGET / HTTP/1.1\r\n",
	"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabcGET / HTTP/1.1\r\nHost: a\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nab\r\n0\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n-5\r\nab\r\n0\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n10000000000000000\r\nab\r\n0\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n2\nab\r\n0\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nz\r\n0\r\n\r\nGET / HTTP/1.1\r\n",
	"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\nContent-Length: 2\r\n\r\nzz",
	"GET t:80 HTTP/1.1\r\nHost: a\r\n\r\n",
	"GET http://b/c HTTP/1.1\r\nHost: a\r\n\r\n",
	"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a\r\nX: a\x00b\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 01\r\n\r\nz",
	"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n1;x=y\r\nz\r\n0\r\nT: 1\r\n\r\n",
}

// responseSeeds are the backend answers the issue and the tests name.
var responseSeeds = []string{
	"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
	"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokSTRAYBYTES",
	"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\nHTTP/1.1 200 OK\r\n",
	"HTTP/1.1 204 No Content\r\nContent-Length: 6\r\n\r\nstolen",
	"HTTP/1.1 304 Not Modified\r\n\r\n",
	"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
	"HTTP/1.1 200 OK\r\nX-Evil: a\x00b\r\nContent-Length: 2\r\n\r\nok",
	"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nz",
	"HTTP/1.0 200 OK\r\n\r\nuntil close",
	"HTTP/1.1 200 OK\r\nContent-Length: 9\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\n\r\n",
	"HTTP/1.1 200 OK\r\nConnection: close, X-Hop\r\nX-Hop: 1\r\nContent-Length: 0\r\n\r\n",
}

// parsed is what a parser made of a message, in terms both parsers share.
type parsed struct {
	method, uri, host string
	status            int
	header            http.Header
	body              []byte
	consumed          int // bytes of input the message took
	close             bool
}

func consumed(total int, br *bufio.Reader, rd *bytes.Reader) int {
	return total - br.Buffered() - rd.Len()
}

// oursRequest parses raw with h1.ReadRequest twice, into a new request
// and into a reused one that held a different request before (as the
// front server's conns do); the two must agree.
func oursRequest(t testing.TB, raw []byte) (parsed, error) {
	t.Helper()
	fresh, ferr := oursRequestWith(raw, nil)
	reuse := NewReusable(context.Background())
	dirty := bufio.NewReader(strings.NewReader("POST /old?q HTTP/1.0\r\nConnection: close\r\nX-Old: 1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\nabc"))
	if _, err := ReadRequest(context.Background(), dirty, Options{Reuse: reuse}); err != nil {
		panic(err)
	}
	again, rerr := oursRequestWith(raw, reuse)
	if (ferr == nil) != (rerr == nil) || !reflect.DeepEqual(fresh, again) {
		t.Fatalf("on %q a reused request differs from a new one:\nreused %+v, %v\nnew    %+v, %v", raw, again, rerr, fresh, ferr)
	}
	return fresh, ferr
}

func oursRequestWith(raw []byte, reuse *Reusable) (parsed, error) {
	rd := bytes.NewReader(raw)
	br := bufio.NewReader(rd)
	req, err := ReadRequest(context.Background(), br, Options{Reuse: reuse})
	if err != nil {
		return parsed{}, err
	}
	body, err := io.ReadAll(req.Body)
	if err != nil {
		return parsed{}, err
	}
	return parsed{method: req.Method, uri: req.RequestURI, host: req.Host, header: req.Header, body: body,
		consumed: consumed(len(raw), br, rd), close: req.Close}, nil
}

// stdRequest is http.ReadRequest plus the checks net/http's server makes
// before a handler sees the request.
func stdRequest(raw []byte) (parsed, error) {
	rd := bytes.NewReader(raw)
	br := bufio.NewReader(rd)
	req, err := http.ReadRequest(br)
	if err != nil {
		return parsed{}, err
	}
	// http.ReadRequest moves Host out of the header map; the server's
	// checks see the fields as sent.
	hosts := hostFields(raw)
	switch {
	case req.ProtoMajor != 1:
		return parsed{}, errStd
	case req.ProtoAtLeast(1, 1) && len(hosts) == 0 && req.Method != http.MethodConnect:
		return parsed{}, errStd
	case len(hosts) == 1 && !ValidHost(hosts[0]):
		return parsed{}, errStd
	}
	for k, vv := range req.Header {
		if !IsToken(k) {
			return parsed{}, errStd
		}
		for _, v := range vv {
			if !ValidFieldValue(v) {
				return parsed{}, errStd
			}
		}
	}
	delete(req.Header, "Host")
	body, err := io.ReadAll(req.Body)
	if err != nil {
		return parsed{}, err
	}
	return parsed{method: req.Method, uri: req.RequestURI, host: req.Host, header: req.Header, body: body,
		consumed: consumed(len(raw), br, rd), close: req.Close}, nil
}

var errStd = errors.New("refused by net/http's server checks")

// hostFields are the values of the Host fields in a request head.
func hostFields(raw []byte) []string {
	var hosts []string
	lines := bytes.Split(raw, []byte("\n"))
	for _, l := range lines[1:] {
		l = bytes.TrimSuffix(l, []byte("\r"))
		if len(l) == 0 {
			break
		}
		if k, v, ok := bytes.Cut(l, []byte(":")); ok && strings.EqualFold(string(k), "host") {
			hosts = append(hosts, string(bytes.Trim(v, " \t")))
		}
	}
	return hosts
}

func sameHeader(ours, std http.Header) bool {
	for k, vv := range std {
		if k == "Cache-Control" && ours[k] == nil && std["Pragma"] != nil {
			continue // net/http adds it for Pragma: no-cache
		}
		if !slices.Equal(ours[k], vv) {
			return false
		}
	}
	for k := range ours {
		if std[k] == nil {
			return false
		}
	}
	return true
}

// FuzzReadRequest is the differential target for request framing.
func FuzzReadRequest(f *testing.F) {
	for _, s := range requestSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		ours, oerr := oursRequest(t, raw)
		std, serr := stdRequest(raw)
		if oerr == nil && serr != nil {
			t.Fatalf("h1 accepts what net/http refuses (%v): %q", serr, raw)
		}
		if oerr != nil || serr != nil {
			return
		}
		if ours.method != std.method || ours.uri != std.uri || ours.host != std.host || !bytes.Equal(ours.body, std.body) || ours.consumed != std.consumed {
			t.Fatalf("parsers disagree on %q:\nh1       %s %q host %q body %q took %d\nnet/http %s %q host %q body %q took %d",
				raw, ours.method, ours.uri, ours.host, ours.body, ours.consumed, std.method, std.uri, std.host, std.body, std.consumed)
		}
		if !sameHeader(ours.header, std.header) {
			t.Fatalf("headers differ on %q:\nh1       %v\nnet/http %v", raw, ours.header, std.header)
		}
		if std.close && !ours.close {
			t.Fatalf("net/http closes after %q, h1 would keep the conn", raw)
		}
	})
}

func oursResponse(raw []byte, method string) (parsed, error) {
	rd := bytes.NewReader(raw)
	br := bufio.NewReader(rd)
	h := http.Header{}
	resp, err := ReadResponse(br, h, method, false, new(LengthBody))
	if err != nil {
		return parsed{}, err
	}
	var body []byte
	if resp.Body != nil {
		if body, err = io.ReadAll(resp.Body); err != nil {
			return parsed{}, err
		}
	}
	return parsed{status: resp.Status, header: h, body: body, consumed: consumed(len(raw), br, rd), close: resp.Close}, nil
}

func stdResponse(raw []byte, method string) (parsed, error) {
	rd := bytes.NewReader(raw)
	br := bufio.NewReader(rd)
	for {
		resp, err := http.ReadResponse(br, &http.Request{Method: method})
		if err != nil {
			return parsed{}, err
		}
		if resp.StatusCode >= 100 && resp.StatusCode < 200 && resp.StatusCode != http.StatusSwitchingProtocols {
			continue // interim: the transport skips it too
		}
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			return parsed{}, err
		}
		return parsed{status: resp.StatusCode, header: resp.Header, body: body, consumed: consumed(len(raw), br, rd), close: resp.Close}, nil
	}
}

// FuzzReadResponse is the differential target for response framing. The
// first byte picks the request method (GET or HEAD).
func FuzzReadResponse(f *testing.F) {
	for _, s := range responseSeeds {
		f.Add(byte(0), []byte(s))
	}
	f.Add(byte(1), []byte("HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nstolen"))
	f.Fuzz(func(t *testing.T, m byte, raw []byte) {
		method := http.MethodGet
		if m&1 == 1 {
			method = http.MethodHead
		}
		ours, oerr := oursResponse(raw, method)
		std, serr := stdResponse(raw, method)
		if oerr == nil && serr != nil {
			t.Fatalf("h1 accepts what net/http refuses (%v): %s %q", serr, method, raw)
		}
		if oerr != nil || serr != nil {
			return
		}
		if ours.status != std.status || !bytes.Equal(ours.body, std.body) || ours.consumed != std.consumed {
			t.Fatalf("parsers disagree on %s %q:\nh1       %d body %q took %d\nnet/http %d body %q took %d",
				method, raw, ours.status, ours.body, ours.consumed, std.status, std.body, std.consumed)
		}
		if std.close && !ours.close {
			t.Fatalf("net/http would close after %q, h1 would pool the conn", raw)
		}
	})
}

// FuzzChunkedDecode reads raw as a chunked request body with h1 and with
// net/http: the same bytes and the same end, or both refuse.
func FuzzChunkedDecode(f *testing.F) {
	for _, s := range []string{"3\r\nabc\r\n0\r\n\r\n", "zz\r\n", "-5\r\n", "10000000000000000\r\n", "2\nab\r\n0\r\n\r\n",
		"1;ext\r\nz\r\n0\r\nX-T: 1\r\n\r\nNEXT", "0\r\n", "2\r\nabc\r\n0\r\n\r\n", "a\r\n0123456789\r\n0\r\n\r\n"} {
		f.Add([]byte(s))
	}
	head := "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
	f.Fuzz(func(t *testing.T, raw []byte) {
		msg := append([]byte(head), raw...)
		ours, oerr := oursRequest(t, msg)
		std, serr := stdRequest(msg)
		if oerr == nil && serr != nil {
			t.Fatalf("h1 decodes what net/http refuses (%v): %q", serr, raw)
		}
		if oerr == nil && (!bytes.Equal(ours.body, std.body) || ours.consumed != std.consumed) {
			t.Fatalf("decoders disagree on %q: h1 %q took %d, net/http %q took %d", raw, ours.body, ours.consumed, std.body, std.consumed)
		}
	})
}

// FuzzChunkedEncode writes data as chunks split where cuts says, then
// reads it back with h1 and with net/http's decoder.
func FuzzChunkedEncode(f *testing.F) {
	f.Add([]byte("hello, world"), []byte{3, 0, 5})
	f.Add([]byte{}, []byte{})
	f.Add(bytes.Repeat([]byte{0, '\r', '\n'}, 100), []byte{1, 255})
	f.Fuzz(func(t *testing.T, data, cuts []byte) {
		var buf bytes.Buffer
		bw := bufio.NewWriter(&buf)
		rest := data
		for i := 0; len(rest) > 0; i++ {
			n := len(rest)
			if len(cuts) > 0 {
				n = min(n, int(cuts[i%len(cuts)]))
			}
			if _, err := WriteChunk(bw, rest[:n]); err != nil {
				t.Fatal(err)
			}
			rest = rest[n:]
			if n == 0 && i > len(data)+len(cuts) {
				t.Fatal("no progress")
			}
			if n == 0 {
				rest = rest[:len(rest):len(rest)]
				if len(cuts) > 0 && cuts[i%len(cuts)] == 0 {
					n = 1 // a zero cut writes nothing; move on
					if _, err := WriteChunk(bw, rest[:1]); err != nil {
						t.Fatal(err)
					}
					rest = rest[1:]
				}
			}
		}
		WriteLastChunk(bw)
		bw.Flush()
		encoded := buf.Bytes()
		got, err := io.ReadAll(httputil.NewChunkedReader(bytes.NewReader(encoded)))
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("net/http decodes %q as %q, %v; want %q", encoded, got, err, data)
		}
		ours, err := oursRequest(t, append([]byte("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"), encoded...))
		if err != nil || !bytes.Equal(ours.body, data) {
			t.Fatalf("h1 decodes %q as %q, %v; want %q", encoded, ours.body, err, data)
		}
	})
}
