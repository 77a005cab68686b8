package main

import (
	"os"
	"time"

	"hits/testkit/procstat"
)

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
	return cpuSample{
		server: procstat.CPU(serverPID), self: procstat.CPU(os.Getpid()),
		postgres: procstat.WithChildren(postmasterPID), machine: procstat.MachineBusy(),
	}
}

func (s cpuSample) sub(t cpuSample) cpuSample {
	return cpuSample{server: s.server - t.server, postgres: s.postgres - t.postgres, self: s.self - t.self, machine: s.machine - t.machine}
}
