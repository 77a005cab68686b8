// Package logbuf batches a log's lines into few writes, as nginx's
// `access_log ... buffer= flush=` does: one write call per batch instead
// of one per line. lb's access log is one line per request; written
// straight to stdout it cost lb about 13-16 µs of CPU per request (make
// bench-scale, LB_ACCESS_LOG on against off), and under Docker every
// write also wakes the engine's log reader.
package logbuf

import (
	"io"
	"sync"
	"time"
)

// Writer collects whole writes (slog writes one line per call) and passes
// them on in batches: when the next would not fit in size bytes, and at the
// latest interval after the first line of a batch. A line is never split
// across two writes, so other writers to the same file cannot land inside
// one. Safe for concurrent use.
type Writer struct {
	w        io.Writer
	size     int
	interval time.Duration

	mu     sync.Mutex // guards everything below; held while writing to w
	buf    []byte
	timer  *time.Timer // flushes a pending batch; nil until the first
	closed bool
	err    error // the first write error, reported by Flush and Close
}

// New returns a Writer in front of w. size is the most bytes held back;
// interval the longest a line waits.
func New(w io.Writer, size int, interval time.Duration) *Writer {
	return &Writer{w: w, size: size, interval: interval, buf: make([]byte, 0, size)}
}

// Write queues p, written whole in one later write of w (at once if p alone
// is size or longer, or after Close). It never fails: a failed write of w is
// reported by Flush and Close, as a log has no one to tell.
func (b *Writer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed || len(p) >= b.size {
		b.flushLocked()
		b.write(p)
		return len(p), nil
	}
	if len(b.buf)+len(p) > b.size {
		b.flushLocked()
	}
	if len(b.buf) == 0 {
		if b.timer == nil {
			b.timer = time.AfterFunc(b.interval, func() { b.Flush() })
		} else {
			b.timer.Reset(b.interval)
		}
	}
	b.buf = append(b.buf, p...)
	return len(p), nil
}

// Flush writes what is pending now and reports the first write error so far.
func (b *Writer) Flush() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.flushLocked()
	return b.err
}

// Close flushes; later writes go straight through.
func (b *Writer) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.closed = true
	if b.timer != nil {
		b.timer.Stop()
	}
	b.flushLocked()
	return b.err
}

func (b *Writer) flushLocked() {
	if len(b.buf) == 0 {
		return
	}
	b.write(b.buf)
	b.buf = b.buf[:0]
}

func (b *Writer) write(p []byte) {
	if _, err := b.w.Write(p); err != nil && b.err == nil {
		b.err = err
	}
}
