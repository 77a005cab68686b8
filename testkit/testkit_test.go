package testkit

import (
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

func TestMedian(t *testing.T) {
	if got := Median([]float64{3, 1, 2}); got != 2 {
		t.Errorf("Median(3,1,2) = %v, want 2", got)
	}
	if got := Median([]time.Duration{4, 1, 3, 2}); got != 2 {
		t.Errorf("Median(4,1,3,2) = %v, want 2 (mean of 2 and 3, truncated)", got)
	}
	if got := Median([]int64(nil)); got != 0 {
		t.Errorf("Median() = %v, want 0", got)
	}
	xs := []float64{30, 10, 20, 40}
	if got := MedianIndex(xs, func(x float64) float64 { return x }); got != 0 {
		t.Errorf("MedianIndex(30,10,20,40) = %d, want 0 (30, the upper middle)", got)
	}
	if xs[0] != 30 {
		t.Errorf("MedianIndex reordered its input: %v", xs)
	}
}

func TestPoll(t *testing.T) {
	var n atomic.Int32
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := Poll(ctx, time.Millisecond, func(context.Context) error {
		if n.Add(1) < 3 {
			return errors.New("not yet")
		}
		return nil
	})
	if err != nil || n.Load() != 3 {
		t.Errorf("Poll = %v after %d calls, want nil after 3", err, n.Load())
	}
	short, cancel2 := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel2()
	err = Poll(short, time.Millisecond, func(context.Context) error { return errors.New("never") })
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "never") {
		t.Errorf("Poll that never succeeds = %v, want DeadlineExceeded naming the last error", err)
	}
}

func TestFreePort(t *testing.T) {
	p, err := FreePort()
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
	if err != nil {
		t.Fatalf("port %d not free: %v", p, err)
	}
	ln.Close()
}

// startShell starts script under sh and waits until its log shows word.
func startShell(t *testing.T, script, word string) *Process {
	t.Helper()
	log := t.TempDir() + "/sh.log"
	p, err := Start(exec.Command("sh", "-c", script), log)
	if err != nil {
		t.Fatal(err)
	}
	EventuallyNil(t, "the child's "+word+" in its log", 10*time.Second, func() error {
		b, err := os.ReadFile(log)
		if err == nil && !strings.Contains(string(b), word) {
			err = errors.New("not yet")
		}
		return err
	})
	return p
}

func TestProcessStopAndExit(t *testing.T) {
	p := startShell(t, "echo started; exec sleep 60", "started")
	if err := p.Stop(syscall.SIGTERM, 10*time.Second); err != nil {
		t.Fatalf("Stop = %v, want nil", err)
	}
	select {
	case <-p.Exited():
	default:
		t.Fatal("Exited not closed after Stop")
	}
	if p.Err() == nil {
		t.Error("Err after SIGTERM = nil, want the signal")
	}
	// The shell must have installed its trap before the signal, or it dies
	// of SIGTERM and Stop rightly reports no kill: wait for it to say so.
	ignoring := startShell(t, "trap '' TERM; echo trapped; while :; do sleep 1; done", "trapped")
	if err := ignoring.Stop(syscall.SIGTERM, 300*time.Millisecond); !errors.Is(err, ErrKilled) {
		t.Errorf("Stop of a process ignoring SIGTERM = %v, want ErrKilled", err)
	}
}

// TestPortsNeverRepeat: a port the system offers again is skipped.
func TestPortsNeverRepeat(t *testing.T) {
	offers := []int{5, 5, 6, 5, 6, 7}
	p := Ports{next: func() (int, error) { o := offers[0]; offers = offers[1:]; return o, nil }}
	for _, want := range []int{5, 6, 7} {
		if got, err := p.Free(); err != nil || got != want {
			t.Fatalf("Free() = %d, %v; want %d", got, err, want)
		}
	}
	same := Ports{next: func() (int, error) { return 9, nil }}
	if _, err := same.Free(); err != nil {
		t.Fatal(err)
	}
	if got, err := same.Free(); err == nil {
		t.Errorf("Free() with only a taken port on offer = %d, want an error", got)
	}
}

// TestPortsReal: real free ports from one Ports are distinct and bindable.
func TestPortsReal(t *testing.T) {
	var p Ports
	seen := map[int]bool{}
	for range 20 {
		port, err := p.Free()
		if err != nil || port <= 0 || seen[port] {
			t.Fatalf("Free() = %d, %v (seen before: %v)", port, err, seen[port])
		}
		seen[port] = true
	}
}
