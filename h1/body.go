package h1

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"strconv"
)

// BodyError is a request body that failed on the client's side: it was
// malformed (400), stalled or ended early (408) or was too large (413).
// Status is the answer the client gets if one can still be sent; nothing
// in it is the backend's fault.
type BodyError struct {
	Status int
	Err    error
}

func (e *BodyError) Error() string { return "request body: " + e.Err.Error() }

func (e *BodyError) Unwrap() error { return e.Err }

// ReadHook is told before every read of a request body from the conn: the
// server moves its read deadline there, and sends 100 Continue before the
// first read when the client asked for it.
type ReadHook interface {
	BeforeBodyRead(first bool) error
}

// Body is a request body framed by Content-Length or chunked coding. It
// records whether it was read to its end, so the server knows whether the
// conn is positioned at the next request.
type Body struct {
	br      *bufio.Reader
	chunked io.Reader // set for chunked coding
	left    int64     // bytes left of a Content-Length body
	read    int64     // bytes returned so far
	limit   int64     // at most this many bytes (0: no limit)
	hook    ReadHook
	started bool
	eof     bool
	err     error // sticky: a failed body stays failed
}

// SetHook installs h; it is called before every read that touches the conn.
func (b *Body) SetHook(h ReadHook) { b.hook = h }

// Done reports whether the body was read to its end.
func (b *Body) Done() bool { return b.eof }

// Read reads the body; any failure is a *BodyError.
func (b *Body) Read(p []byte) (int, error) {
	if b.eof {
		return 0, io.EOF
	}
	if b.err != nil {
		return 0, b.err
	}
	if len(p) == 0 {
		return 0, nil
	}
	if b.hook != nil {
		if err := b.hook.BeforeBodyRead(!b.started); err != nil {
			b.err = err
			return 0, err
		}
	}
	b.started = true
	var n int
	var err error
	if b.chunked != nil {
		n, err = b.chunked.Read(p)
		if err == io.EOF {
			err = readTrailer(b.br)
			if err == nil {
				err = io.EOF
			}
		}
	} else {
		if int64(len(p)) > b.left {
			p = p[:b.left]
		}
		n, err = b.br.Read(p)
		b.left -= int64(n)
		if b.left == 0 {
			err = io.EOF
		} else if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
	}
	b.read += int64(n)
	if b.limit > 0 && b.read > b.limit {
		err = &http.MaxBytesError{Limit: b.limit}
	}
	switch {
	case err == nil:
	case err == io.EOF:
		b.eof = true
	default:
		b.err = classify(err)
		err = b.err
	}
	return n, err
}

// Close does nothing: the server decides whether the conn can be reused
// from Done.
func (b *Body) Close() error { return nil }

// classify turns a failed read of a request body into a BodyError with
// the status the client gets.
func classify(err error) error {
	var mb *http.MaxBytesError
	var ne net.Error
	switch {
	case errors.As(err, &mb):
		return &BodyError{Status: http.StatusRequestEntityTooLarge, Err: err}
	case errors.As(err, &ne) && ne.Timeout():
		return &BodyError{Status: http.StatusRequestTimeout, Err: fmt.Errorf("client stalled: %w", err)}
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		// The client stopped sending before the body's end: like a stall,
		// a request that never completed (nginx logs these as 400 and
		// answers nothing; a half-closed client can still read a 408).
		return &BodyError{Status: http.StatusRequestTimeout, Err: fmt.Errorf("client stopped mid-body: %w", err)}
	default:
		var be *BodyError
		if errors.As(err, &be) {
			return err
		}
		return &BodyError{Status: http.StatusBadRequest, Err: err}
	}
}

// newChunkedReader decodes chunked coding strictly (CRLF only, hex sizes
// that fit in 63 bits, no overlong lines); the trailer section is left for
// readTrailer.
func newChunkedReader(br *bufio.Reader) io.Reader { return httputil.NewChunkedReader(br) }

// readTrailer consumes the trailer section after the last chunk up to its
// blank line; the fields are dropped (the balancer does not forward
// trailers). Every line must end in CRLF, as the chunk lines must (RFC
// 9112 7.1), and fit in the reader's buffer.
func readTrailer(br *bufio.Reader) error {
	for total := 0; ; {
		line, err := br.ReadSlice('\n')
		if err == io.EOF || (err == nil && (len(line) < 2 || line[len(line)-2] != '\r')) {
			return fmt.Errorf("%w: trailer line without CRLF", errMalformed)
		}
		if err != nil {
			return fmt.Errorf("%w: trailer: %v", errMalformed, err)
		}
		if total += len(line); total > maxHeadLine {
			return fmt.Errorf("%w: trailer over %d bytes", errMalformed, maxHeadLine)
		}
		line = line[:len(line)-2]
		if len(line) == 0 {
			return nil
		}
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 || !IsToken(line[:colon]) || !ValidFieldValue(line[colon+1:]) {
			return fmt.Errorf("%w: trailer line %q", errMalformed, truncate(line))
		}
	}
}

// WriteChunk writes p as one chunk; an empty p writes nothing (the last
// chunk is WriteLastChunk's).
func WriteChunk(bw *bufio.Writer, p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	var hex [16]byte
	bw.Write(strconv.AppendInt(hex[:0], int64(len(p)), 16))
	bw.WriteString("\r\n")
	n, err := bw.Write(p)
	if err == nil {
		_, err = bw.WriteString("\r\n")
	}
	return n, err
}

// WriteLastChunk ends a chunked body with an empty trailer section.
func WriteLastChunk(bw *bufio.Writer) error {
	_, err := bw.WriteString("0\r\n\r\n")
	return err
}

// ChunkedWriter frames everything written to it as chunks on bw.
type ChunkedWriter struct{ BW *bufio.Writer }

func (w ChunkedWriter) Write(p []byte) (int, error) { return WriteChunk(w.BW, p) }
