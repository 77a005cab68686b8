package h1

import (
	"bufio"
	"io"
	"net/http"
	"testing"
)

// BenchmarkWriteHead writes what the front server writes for a proxied
// answer from the benchmark backend: status line and three fields.
func BenchmarkWriteHead(b *testing.B) {
	bw := bufio.NewWriterSize(io.Discard, 4096)
	h := http.Header{"Content-Type": {"text/plain"}, "Content-Length": {"64"}, "X-App-Instance": {"backend-1"}}
	b.ReportAllocs()
	for b.Loop() {
		WriteStatusLine(bw, 200)
		WriteFields(bw, h)
		WriteField(bw, "Date", "Sun, 29 Nov 2026 23:59:59 GMT")
		bw.WriteString("\r\n")
		bw.Flush()
	}
}
