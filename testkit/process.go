package testkit

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"
)

// Process is a child process a test or benchmark started. It dies with the
// process that started it (Pdeathsig), even on a crash; Stop ends it by its
// own PID and waits for it.
type Process struct {
	cmd    *exec.Cmd
	log    *os.File // nil when the caller routed the output itself
	exited chan struct{}

	mu  sync.Mutex // guards err
	err error      // what Wait returned, once exited is closed
}

// Start starts cmd. Output the caller did not route (cmd.Stdout, cmd.Stderr
// nil) is appended to logPath when it is not empty. SysProcAttr fields the
// caller set (a Credential, Setpgid) are kept; Pdeathsig is set to SIGKILL.
func Start(cmd *exec.Cmd, logPath string) (*Process, error) {
	p := &Process{cmd: cmd, exited: make(chan struct{})}
	if logPath != "" && (cmd.Stdout == nil || cmd.Stderr == nil) {
		f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			return nil, err
		}
		p.log = f
		if cmd.Stdout == nil {
			cmd.Stdout = f
		}
		if cmd.Stderr == nil {
			cmd.Stderr = f
		}
	}
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	if err := cmd.Start(); err != nil {
		if p.log != nil {
			p.log.Close()
		}
		return nil, fmt.Errorf("start %s: %w", cmd.Path, err)
	}
	go func() {
		err := cmd.Wait()
		if p.log != nil {
			p.log.Close()
		}
		p.mu.Lock()
		p.err = err
		p.mu.Unlock()
		close(p.exited)
	}()
	return p, nil
}

// PID is the process's ID.
func (p *Process) PID() int { return p.cmd.Process.Pid }

// Exited is closed once the process has exited and been waited for.
func (p *Process) Exited() <-chan struct{} { return p.exited }

// Err is what waiting for the process returned (nil for exit status 0);
// meaningful once Exited is closed.
func (p *Process) Err() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.err
}

// ErrKilled reports a process that had to be killed after it ignored the
// signal Stop sent.
var ErrKilled = errors.New("did not stop in time; killed")

// Stop sends sig and waits for the process to exit; after timeout it sends
// SIGKILL and returns ErrKilled. A process that already exited is fine.
func (p *Process) Stop(sig syscall.Signal, timeout time.Duration) error {
	select {
	case <-p.exited:
		return nil
	default:
	}
	p.cmd.Process.Signal(sig)
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-p.exited:
		return nil
	case <-t.C:
		p.cmd.Process.Kill()
		<-p.exited
		return fmt.Errorf("%s: %w after %s", p.cmd.Path, ErrKilled, timeout)
	}
}
