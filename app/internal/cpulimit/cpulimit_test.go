package cpulimit

import (
	"testing"
	"testing/fstest"
)

func TestRead(t *testing.T) {
	file := func(s string) *fstest.MapFile { return &fstest.MapFile{Data: []byte(s)} }
	for _, tc := range []struct {
		name string
		fs   fstest.MapFS
		want float64
		ok   bool
	}{
		{"v1 own cgroup", fstest.MapFS{
			"proc/self/cgroup": file("4:memory:/x\n1:cpu:/bench/r1\n2:cpuacct:/bench/r1\n"),
			"sys/fs/cgroup/cpu/bench/r1/cpu.cfs_quota_us":  file("10000\n"),
			"sys/fs/cgroup/cpu/bench/r1/cpu.cfs_period_us": file("100000\n"),
		}, 0.1, true},
		{"v1 container view, combined controllers", fstest.MapFS{
			"proc/self/cgroup":                            file("3:cpu,cpuacct:/docker/abc\n"),
			"sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us":  file("50000"),
			"sys/fs/cgroup/cpu,cpuacct/cpu.cfs_period_us": file("100000"),
		}, 0.5, true},
		{"v1 tightest ancestor wins", fstest.MapFS{
			"proc/self/cgroup":                        file("1:cpu:/a/b\n"),
			"sys/fs/cgroup/cpu/a/b/cpu.cfs_quota_us":  file("-1"),
			"sys/fs/cgroup/cpu/a/b/cpu.cfs_period_us": file("100000"),
			"sys/fs/cgroup/cpu/a/cpu.cfs_quota_us":    file("150000"),
			"sys/fs/cgroup/cpu/a/cpu.cfs_period_us":   file("100000"),
			"sys/fs/cgroup/cpu/cpu.cfs_quota_us":      file("-1"),
			"sys/fs/cgroup/cpu/cpu.cfs_period_us":     file("100000"),
		}, 1.5, true},
		{"v1 no limit", fstest.MapFS{
			"proc/self/cgroup":                    file("1:cpu:/\n"),
			"sys/fs/cgroup/cpu/cpu.cfs_quota_us":  file("-1"),
			"sys/fs/cgroup/cpu/cpu.cfs_period_us": file("100000"),
		}, 0, false},
		{"v2", fstest.MapFS{
			"proc/self/cgroup": file("0::/system.slice/app.service\n"),
			"sys/fs/cgroup/system.slice/app.service/cpu.max": file("20000 100000\n"),
			"sys/fs/cgroup/system.slice/cpu.max":             file("max 100000\n"),
		}, 0.2, true},
		{"v2 unlimited", fstest.MapFS{
			"proc/self/cgroup":      file("0::/\n"),
			"sys/fs/cgroup/cpu.max": file("max 100000\n"),
		}, 0, false},
		{"garbage", fstest.MapFS{
			"proc/self/cgroup":      file("0::/\n"),
			"sys/fs/cgroup/cpu.max": file("lots\n"),
		}, 0, false},
		{"no proc", fstest.MapFS{}, 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := read(tc.fs)
			if got != tc.want || ok != tc.ok {
				t.Errorf("read = %g, %v; want %g, %v", got, ok, tc.want, tc.ok)
			}
		})
	}
}

// TestReadHere runs against this machine's own files: no limit or a
// positive one, never a crash.
func TestReadHere(t *testing.T) {
	if cpus, ok := Read(); ok && cpus <= 0 {
		t.Errorf("Read = %g, true; want a positive limit", cpus)
	}
}
