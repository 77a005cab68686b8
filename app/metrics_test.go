package main

import (
	"bytes"
	"os/exec"
	"strings"
	"testing"
)

// TestMetricsPassPromtool: what the operations port serves is accepted by
// Prometheus's own checker, even with an instance name that needs escaping
// (a backslash, a double quote, a non-ASCII letter), and carries the Go and
// process collectors.
func TestMetricsPassPromtool(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatalf("promtool not found (apt-get install prometheus): %v", err)
	}
	env := baseEnv(t, pg.NewDatabase(t))
	env["INSTANCE_ID"] = `back\slash "quoted" Zoë`
	a := startApp(t, env)
	hit(t, a.url)
	if code, _, err := get(a.url+"/nope", ""); code != 404 {
		t.Fatalf("GET /nope = %d, %v; want 404", code, err)
	}
	code, body, err := get(a.opsURL+"/metrics", "")
	if err != nil || code != 200 {
		t.Fatalf("GET /metrics on OPS_ADDR = %d, %v; want 200", code, err)
	}
	for _, want := range []string{
		`hits_instance_info{instance="back\\slash \"quoted\" Zoë"} 1`,
		"go_goroutines ", "process_cpu_seconds_total ", "hits_committed_total 1",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = strings.NewReader(body)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("promtool check metrics: %v\n%s\nmetrics:\n%s", err, out.String(), body)
	}
}
