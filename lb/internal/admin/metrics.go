package admin

import (
	"fmt"
	"net/http"
	"strings"

	"hits/lb/internal/balancer"
)

// handleMetrics writes the Prometheus text exposition format by hand: a
// few gauges and counters do not justify a client library.
func handleMetrics(src Source) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		s := src.Status()
		var b strings.Builder
		metric := func(name, typ, help string, value func(balancer.BackendStatus) string) {
			fmt.Fprintf(&b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, typ)
			for _, st := range s.Backends {
				fmt.Fprintf(&b, "%s{backend=%q} %s\n", name, st.Address, value(st))
			}
		}
		healthy := 0
		for _, st := range s.Backends {
			if st.Healthy && !st.Removed {
				healthy++
			}
		}
		fmt.Fprintf(&b, "# HELP lb_backends Backends known from discovery.\n# TYPE lb_backends gauge\nlb_backends %d\n", len(s.Backends))
		fmt.Fprintf(&b, "# HELP lb_backends_healthy Backends in rotation.\n# TYPE lb_backends_healthy gauge\nlb_backends_healthy %d\n", healthy)
		metric("lb_backend_up", "gauge", "1 when the backend is in rotation.", func(st balancer.BackendStatus) string { return boolNum(st.Healthy && !st.Removed) })
		metric("lb_backend_in_flight", "gauge", "Requests being proxied to the backend.", func(st balancer.BackendStatus) string { return fmt.Sprint(st.InFlight) })
		metric("lb_backend_idle_conns", "gauge", "Idle keep-alive connections to the backend.", func(st balancer.BackendStatus) string { return fmt.Sprint(st.IdleConns) })
		metric("lb_backend_requests_total", "counter", "Requests sent to the backend (attempts, retries included).", func(st balancer.BackendStatus) string { return fmt.Sprint(st.Requests) })
		metric("lb_backend_failures_total", "counter", "Connection failures and timeouts talking to the backend.", func(st balancer.BackendStatus) string { return fmt.Sprint(st.Failures) })
		w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		w.Write([]byte(b.String()))
	})
}

func boolNum(b bool) string {
	if b {
		return "1"
	}
	return "0"
}
