package procstat

import (
	"os"
	"os/exec"
	"testing"
	"time"
)

var sink int

// busy spends CPU in this process until CPU shows some, within 5 s. Without
// it a test binary can finish inside one clock tick (10 ms) and read 0:
// seen without -race on a fast machine.
func busy(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for CPU(os.Getpid()) <= 0 {
		if time.Now().After(deadline) {
			t.Fatal("CPU(self) still 0 after 5 s of work")
		}
		for i := range 1_000_000 {
			sink += i
		}
	}
}

// TestCPUOfABusyChild: a child that spins for a while shows CPU time, in
// itself, in its parent's WithChildren while it lives and after it is reaped.
func TestCPUOfABusyChild(t *testing.T) {
	self := os.Getpid()
	before := WithChildren(self)
	cmd := exec.Command("sh", "-c", "i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	found := false
	for _, c := range Children(self) {
		found = found || c == cmd.Process.Pid
	}
	if !found {
		t.Errorf("Children(%d) does not list the child %d", self, cmd.Process.Pid)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
	if got := WithChildren(self) - before; got < 10*time.Millisecond {
		t.Errorf("WithChildren grew by %s after a busy child was reaped, want at least one tick", got)
	}
	busy(t)
	if CPU(self) <= 0 || CPU(-1) != 0 || CPU(1<<30) != 0 {
		t.Errorf("CPU(self) = %s, CPU(-1) = %s, CPU(gone) = %s; want >0, 0, 0", CPU(self), CPU(-1), CPU(1<<30))
	}
	if MachineBusy() <= 0 {
		t.Error("MachineBusy = 0, want the machine's busy time")
	}
}

// TestOfCountsSystemCalls: reading a file a thousand times shows in Reads.
func TestOfCountsSystemCalls(t *testing.T) {
	before, err := Of(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open("/proc/self/stat")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 64)
	for range 1000 {
		if _, err := f.ReadAt(buf, 0); err != nil {
			t.Fatal(err)
		}
	}
	busy(t)
	after, err := Of(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if got := after.Reads - before.Reads; got < 1000 {
		t.Errorf("Reads grew by %d over 1000 reads, want at least 1000", got)
	}
	if after.User+after.System <= 0 {
		t.Errorf("Of(self) = %+v, want some CPU time", after)
	}
	if _, err := Of(1 << 30); err == nil {
		t.Error("Of(a pid that does not exist) = nil error")
	}
}
