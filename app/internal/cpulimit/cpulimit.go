// Package cpulimit reads the CPU bandwidth limit of this process's cgroup:
// cgroup v1 (cpu.cfs_quota_us / cpu.cfs_period_us) or v2 (cpu.max), at the
// conventional mount points under /sys/fs/cgroup, walking up the hierarchy
// and keeping the tightest limit. Go's runtime reads the same limit but
// never sets GOMAXPROCS below 2; the app uses this to choose 1 in a quota
// below one CPU, where a second thread only burns the quota sooner.
package cpulimit

import (
	"bufio"
	"bytes"
	"io/fs"
	"os"
	"path"
	"strconv"
	"strings"
)

// Read returns the CPUs this process may use per period (e.g. 0.1 for a
// quota of 10 ms per 100 ms), and false when there is no limit or it cannot
// be read.
func Read() (float64, bool) { return read(os.DirFS("/")) }

func read(root fs.FS) (float64, bool) {
	b, err := fs.ReadFile(root, "proc/self/cgroup")
	if err != nil {
		return 0, false
	}
	best, found := 0.0, false
	keep := func(cpus float64, ok bool) {
		if ok && (!found || cpus < best) {
			best, found = cpus, true
		}
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		// hierarchy-ID:controllers:path; v2 is "0::path".
		parts := strings.SplitN(sc.Text(), ":", 3)
		if len(parts) != 3 {
			continue
		}
		controllers, p := parts[1], strings.TrimPrefix(parts[2], "/")
		switch {
		case parts[0] == "0" && controllers == "":
			for _, dir := range ancestors("sys/fs/cgroup", p) {
				keep(v2(root, dir))
			}
		case hasController(controllers, "cpu"):
			for _, mount := range []string{"sys/fs/cgroup/cpu", "sys/fs/cgroup/cpu,cpuacct", "sys/fs/cgroup/cpuacct,cpu"} {
				for _, dir := range ancestors(mount, p) {
					keep(v1(root, dir))
				}
			}
		}
	}
	return best, found
}

// ancestors lists mount/p and each parent up to mount itself. In a
// container the mount is often the container's own cgroup, so mount alone
// is where its limit is.
func ancestors(mount, p string) []string {
	var dirs []string
	for p != "" && p != "." {
		dirs = append(dirs, path.Join(mount, p))
		p = path.Dir(p)
	}
	return append(dirs, mount)
}

func hasController(list, name string) bool {
	for _, c := range strings.Split(list, ",") {
		if c == name {
			return true
		}
	}
	return false
}

// v1 reads cpu.cfs_quota_us and cpu.cfs_period_us; a quota of -1 is no limit.
func v1(root fs.FS, dir string) (float64, bool) {
	q, ok1 := readInt(root, path.Join(dir, "cpu.cfs_quota_us"))
	p, ok2 := readInt(root, path.Join(dir, "cpu.cfs_period_us"))
	if !ok1 || !ok2 || q <= 0 || p <= 0 {
		return 0, false
	}
	return float64(q) / float64(p), true
}

// v2 reads cpu.max: "max 100000" is no limit, "10000 100000" is 0.1 CPU.
func v2(root fs.FS, dir string) (float64, bool) {
	b, err := fs.ReadFile(root, path.Join(dir, "cpu.max"))
	if err != nil {
		return 0, false
	}
	f := strings.Fields(string(b))
	if len(f) != 2 || f[0] == "max" {
		return 0, false
	}
	q, err1 := strconv.ParseInt(f[0], 10, 64)
	p, err2 := strconv.ParseInt(f[1], 10, 64)
	if err1 != nil || err2 != nil || q <= 0 || p <= 0 {
		return 0, false
	}
	return float64(q) / float64(p), true
}

func readInt(root fs.FS, name string) (int64, bool) {
	b, err := fs.ReadFile(root, name)
	if err != nil {
		return 0, false
	}
	v, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	return v, err == nil
}
