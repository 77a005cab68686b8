// Package procstat reads CPU time and system calls from Linux's /proc, for
// the benchmarks: one process, a process and its children, the whole
// machine.
package procstat

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// clockTick is the unit of utime/stime in /proc/<pid>/stat (USER_HZ, 100
// on Linux for every architecture Go supports).
const clockTick = 10 * time.Millisecond

// CPU is the user+system time of one process so far (all its threads); 0
// if it is gone or pid <= 0.
func CPU(pid int) time.Duration {
	if pid <= 0 {
		return 0
	}
	f := statFields(pid)
	if len(f) < 13 {
		return 0
	}
	// utime and stime are fields 14 and 15 of stat, i.e. 12 and 13 after the name.
	u, _ := strconv.ParseInt(f[11], 10, 64)
	s, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(u+s) * clockTick
}

// SelfAndReaped is CPU(pid) plus that of the children it has reaped
// (cutime, cstime), not of its live children.
func SelfAndReaped(pid int) time.Duration {
	if pid <= 0 {
		return 0
	}
	f := statFields(pid)
	if len(f) < 15 {
		return 0
	}
	var t int64
	for _, i := range []int{11, 12, 13, 14} {
		v, _ := strconv.ParseInt(f[i], 10, 64)
		t += v
	}
	return time.Duration(t) * clockTick
}

// WithChildren is CPU(pid) plus that of its live children and of the
// children it has already reaped (cutime, cstime): for PostgreSQL's
// postmaster, every backend, the WAL writer and the checkpointer, including
// backends that ended during the run.
func WithChildren(pid int) time.Duration {
	if pid <= 0 {
		return 0
	}
	total := SelfAndReaped(pid)
	for _, c := range Children(pid) {
		total += CPU(c)
	}
	return total
}

// Usage is what one process has used so far.
type Usage struct {
	User, System time.Duration // CPU time of all its threads
	// Reads and Writes count read- and write-like system calls (recv and
	// send too): syscr and syscw of /proc/<pid>/io, 0 where it is not
	// readable.
	Reads, Writes int64
}

// Of returns what pid has used so far, or an error if it is gone.
func Of(pid int) (Usage, error) {
	f := statFields(pid)
	if len(f) < 13 {
		return Usage{}, fmt.Errorf("procstat: no process %d", pid)
	}
	u, _ := strconv.ParseInt(f[11], 10, 64)
	s, _ := strconv.ParseInt(f[12], 10, 64)
	use := Usage{User: time.Duration(u) * clockTick, System: time.Duration(s) * clockTick}
	if b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/io"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			k, v, _ := strings.Cut(line, ": ")
			switch k {
			case "syscr":
				use.Reads, _ = strconv.ParseInt(v, 10, 64)
			case "syscw":
				use.Writes, _ = strconv.ParseInt(v, 10, 64)
			}
		}
	}
	return use, nil
}

// Children returns the live child processes of pid.
func Children(pid int) []int {
	var out []int
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	for _, d := range dirs {
		c, err := strconv.Atoi(filepath.Base(d))
		if err != nil {
			continue
		}
		if f := statFields(c); len(f) >= 2 && f[1] == strconv.Itoa(pid) {
			out = append(out, c)
		}
	}
	return out
}

// MachineBusy is the non-idle time of all CPUs from /proc/stat (user, nice,
// system, irq, softirq, steal; not idle or iowait).
func MachineBusy() time.Duration {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return 0
	}
	var busy int64
	for _, i := range []int{1, 2, 3, 6, 7, 8} {
		v, _ := strconv.ParseInt(f[i], 10, 64)
		busy += v
	}
	return time.Duration(busy) * clockTick
}

// statFields returns the fields of /proc/<pid>/stat after the command name.
func statFields(pid int) []string {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return nil
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')') // the name may contain spaces
	if i < 0 {
		return nil
	}
	return strings.Fields(s[i+1:])
}
