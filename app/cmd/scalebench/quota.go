package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// cgroupRoot is where the kernel's cgroup filesystems are mounted.
const cgroupRoot = "/sys/fs/cgroup"

// cfsPeriod is the quota period in µs: 100 ms, as Docker's --cpus uses.
const cfsPeriod = 100000

// cpuQuota is a cgroup of its own with a CFS bandwidth limit: processes in
// it get cpus × 100 ms of CPU per 100 ms period, then wait for the next.
// cgroup v1 (a cpu hierarchy under /sys/fs/cgroup/cpu) and v2 (the unified
// hierarchy with the cpu controller) are both handled; either needs root.
type cpuQuota struct {
	dir string
}

func newCPUQuota(name string, cpus float64) (*cpuQuota, error) {
	quota := int(cpus * cfsPeriod)
	if v1 := filepath.Join(cgroupRoot, "cpu"); fileExists(filepath.Join(v1, "cpu.cfs_quota_us")) {
		q := &cpuQuota{dir: filepath.Join(v1, name)}
		if err := os.Mkdir(q.dir, 0o755); err != nil {
			return nil, fmt.Errorf("cpu quota (cgroup v1): %w (needs root)", err)
		}
		err := errors.Join(
			write(filepath.Join(q.dir, "cpu.cfs_period_us"), strconv.Itoa(cfsPeriod)),
			write(filepath.Join(q.dir, "cpu.cfs_quota_us"), strconv.Itoa(quota)))
		if err != nil {
			return nil, errors.Join(err, q.remove())
		}
		return q, nil
	}
	controllers, err := os.ReadFile(filepath.Join(cgroupRoot, "cgroup.controllers"))
	if err != nil || !hasWord(string(controllers), "cpu") {
		return nil, errors.New("cpu quota: no cgroup v1 cpu hierarchy and no cgroup v2 cpu controller under " + cgroupRoot)
	}
	// v2: the cpu controller must be enabled for the root's children.
	if err := write(filepath.Join(cgroupRoot, "cgroup.subtree_control"), "+cpu"); err != nil {
		return nil, fmt.Errorf("cpu quota (cgroup v2): enable cpu: %w (needs root)", err)
	}
	q := &cpuQuota{dir: filepath.Join(cgroupRoot, name)}
	if err := os.Mkdir(q.dir, 0o755); err != nil {
		return nil, fmt.Errorf("cpu quota (cgroup v2): %w (needs root)", err)
	}
	if err := write(filepath.Join(q.dir, "cpu.max"), fmt.Sprintf("%d %d", quota, cfsPeriod)); err != nil {
		return nil, errors.Join(err, q.remove())
	}
	return q, nil
}

// procsFile is where writing a PID moves that process into the quota.
func (q *cpuQuota) procsFile() string { return filepath.Join(q.dir, "cgroup.procs") }

// remove deletes the cgroup; its processes must have exited.
func (q *cpuQuota) remove() error {
	if err := os.Remove(q.dir); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("cpu quota: %w", err)
	}
	return nil
}

func write(path, v string) error {
	if err := os.WriteFile(path, []byte(v), 0o644); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

func hasWord(s, w string) bool {
	for _, f := range strings.Fields(s) {
		if f == w {
			return true
		}
	}
	return false
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}
