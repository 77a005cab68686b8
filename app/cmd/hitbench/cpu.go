package main

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// clockTick is the unit of utime/stime in /proc/<pid>/stat (USER_HZ, 100
// on Linux for every architecture Go supports).
const clockTick = 10 * time.Millisecond

// cpuSample is CPU time used so far by the three parties of a run, and by
// the whole machine.
type cpuSample struct {
	server, postgres, self time.Duration
	machine                time.Duration // busy time of all CPUs together
}

// others is the CPU time used by processes outside the run: other work on
// the machine competing with it.
func (s cpuSample) others() time.Duration {
	return max(0, s.machine-s.server-s.postgres-s.self)
}

// sampleCPU reads the CPU time of the server under test, of the PostgreSQL
// postmaster and all its children (backends, WAL writer, checkpointer...),
// and of this process (the load generator).
func sampleCPU(serverPID, postmasterPID int) cpuSample {
	s := cpuSample{server: procCPU(serverPID), self: procCPU(os.Getpid()), postgres: procCPU(postmasterPID), machine: machineBusy()}
	if postmasterPID > 0 {
		dirs, _ := filepath.Glob("/proc/[0-9]*")
		for _, d := range dirs {
			pid, _ := strconv.Atoi(filepath.Base(d))
			if ppid, ok := parentPID(pid); ok && ppid == postmasterPID {
				s.postgres += procCPU(pid)
			}
		}
	}
	return s
}

func (s cpuSample) sub(t cpuSample) cpuSample {
	return cpuSample{server: s.server - t.server, postgres: s.postgres - t.postgres, self: s.self - t.self, machine: s.machine - t.machine}
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

func parentPID(pid int) (int, bool) {
	f := statFields(pid)
	if len(f) < 2 {
		return 0, false
	}
	ppid, err := strconv.Atoi(f[1])
	return ppid, err == nil
}

// procCPU is user+system time of one process (utime and stime are fields 14
// and 15 of stat, i.e. 12 and 13 after the name).
func procCPU(pid int) time.Duration {
	if pid <= 0 {
		return 0
	}
	f := statFields(pid)
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(u+st) * clockTick
}

// machineBusy is the non-idle time of all CPUs from /proc/stat (user, nice,
// system, irq, softirq, steal; not idle or iowait).
func machineBusy() time.Duration {
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
