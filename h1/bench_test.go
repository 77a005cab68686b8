package h1

import (
	"bufio"
	"context"
	"net/http"
	"strings"
	"testing"
)

// wrkRequest is what the benchmark's load generator sends.
const wrkRequest = "GET / HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n"

// browserRequest is a typical page load.
const browserRequest = "GET /?x=1 HTTP/1.1\r\nHost: hits.example\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64) Gecko/20100101 Firefox/120.0\r\n" +
	"Accept: text/html,application/xhtml+xml\r\nAccept-Language: en-US,en;q=0.5\r\nAccept-Encoding: gzip, deflate, br\r\n" +
	"Cookie: lb_sticky=0123456789abcdef.1800000000.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\r\nConnection: keep-alive\r\n\r\n"

func benchRead(b *testing.B, raw string, read func(*bufio.Reader) (*http.Request, error)) {
	sr := strings.NewReader(raw)
	br := bufio.NewReaderSize(sr, 4096)
	b.ReportAllocs()
	for b.Loop() {
		sr.Reset(raw)
		br.Reset(sr)
		if _, err := read(br); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkReadRequest compares h1.ReadRequest with http.ReadRequest
// plus the WithContext copy the front server used to make.
func BenchmarkReadRequest(b *testing.B) {
	ctx := context.Background()
	for name, raw := range map[string]string{"wrk": wrkRequest, "browser": browserRequest} {
		b.Run(name+"/h1", func(b *testing.B) {
			benchRead(b, raw, func(br *bufio.Reader) (*http.Request, error) { return ReadRequest(ctx, br, Options{}) })
		})
		b.Run(name+"/h1-reused", func(b *testing.B) {
			reuse := NewReusable(ctx)
			benchRead(b, raw, func(br *bufio.Reader) (*http.Request, error) { return ReadRequest(ctx, br, Options{Reuse: reuse}) })
		})
		b.Run(name+"/net-http", func(b *testing.B) {
			benchRead(b, raw, func(br *bufio.Reader) (*http.Request, error) {
				r, err := http.ReadRequest(br)
				if err != nil {
					return nil, err
				}
				return r.WithContext(ctx), nil
			})
		})
	}
}
