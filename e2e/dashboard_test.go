//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
)

// dashStatus is the part of lb's /status the dashboard step reads.
type dashStatus struct {
	Backends []struct {
		Address   string  `json:"address"`
		Name      string  `json:"name"`
		State     string  `json:"state"`
		RPS1m     float64 `json:"rps_1m"`
		Errors1m  int64   `json:"errors_1m"`
		LatencyMS struct {
			P50 float64 `json:"p50"`
			P99 float64 `json:"p99"`
		} `json:"latency_ms"`
	} `json:"backends"`
}

func (p *project) dashStatus(ctx context.Context) (dashStatus, error) {
	var s dashStatus
	return s, p.getStatus(ctx, &s)
}

// console collects what a page reports as broken: exceptions, console
// errors, failed loads.
type console struct {
	mu   sync.Mutex // guards errs
	errs []string
}

func (c *console) listen(ctx context.Context) {
	chromedp.ListenTarget(ctx, func(ev any) {
		var msg string
		switch e := ev.(type) {
		case *runtime.EventExceptionThrown:
			msg = "exception: " + e.ExceptionDetails.Text
			if e.ExceptionDetails.Exception != nil {
				msg += " " + e.ExceptionDetails.Exception.Description
			}
		case *runtime.EventConsoleAPICalled:
			if e.Type == runtime.APITypeError {
				msg = "console.error"
				for _, a := range e.Args {
					msg += " " + string(a.Value)
				}
			}
		case *log.EventEntryAdded:
			if e.Entry.Level == log.LevelError {
				msg = "log: " + e.Entry.Text + " " + e.Entry.URL
			}
		}
		if msg != "" {
			c.mu.Lock()
			c.errs = append(c.errs, msg)
			c.mu.Unlock()
		}
	})
}

func (c *console) errors() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.errs)
}

// stepDashboard: under steady load, the balancer explains itself. /status
// names the 4 replicas the page shows, with traffic and latency; every
// answer says who served it and why; the page says "sent here by round
// robin"; the dashboard shows the names as text and a chart that moves, at
// 1400 px and at 375 px, without a console error.
func stepDashboard(t *testing.T, p *project, h *hitter, rep *report) {
	ctx := context.Background()
	// The page's names: what 40 answers say.
	pageNames := map[string]bool{}
	for range 40 {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, p.baseURL()+"/", nil)
		req.Header.Set("Accept", "application/json")
		resp, err := h.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var v hit
		err = json.NewDecoder(resp.Body).Decode(&v)
		resp.Body.Close()
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("GET /: %d %v", resp.StatusCode, err)
		}
		pageNames[v.Instance] = true
		if got := resp.Header.Get("X-LB-Backend"); got != v.Instance {
			t.Errorf("X-LB-Backend %q, want the answer's instance %q", got, v.Instance)
		}
		if got := resp.Header.Get("X-LB-Reason"); got != "least_connections" {
			t.Errorf("X-LB-Reason %q, want least_connections", got)
		}
	}
	names := make([]string, 0, len(pageNames))
	for n := range pageNames {
		names = append(names, n)
	}
	sort.Strings(names)

	l := startLoad(h, 4, 3*time.Minute, 1_000_000)
	defer l.stop()
	waitLoad(t, l, 200)

	// /status: 4 backends named as the page names them, with traffic.
	var st dashStatus
	waitFor(t, 30*time.Second, "/status: 4 named backends with rps_1m > 0 and p99 > 0", func() bool {
		c, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		var err error
		if st, err = p.dashStatus(c); err != nil || len(st.Backends) != 4 {
			return false
		}
		var got []string
		for _, b := range st.Backends {
			if b.RPS1m <= 0 || b.LatencyMS.P99 <= 0 || b.State != "up" {
				return false
			}
			got = append(got, b.Name)
		}
		sort.Strings(got)
		return slices.Equal(got, names)
	}, func() string { return fmt.Sprintf("status %+v, page names %v", st, names) })
	var figures []string
	for _, b := range st.Backends {
		figures = append(figures, fmt.Sprintf("%s (%s) %.1f req/s p50 %.2fms p99 %.2fms", b.Name, b.Address, b.RPS1m, b.LatencyMS.P50, b.LatencyMS.P99))
	}
	rep.add("dashboard /status under 4-worker load: %s", strings.Join(figures, "; "))

	b := newBrowser(t)
	for _, width := range []int64{1400, 375} {
		s := b.session(t)
		var con console
		con.listen(s.ctx)
		height := int64(1000)
		if width < 500 {
			height = 800
		}
		run := func(what string, actions ...chromedp.Action) {
			t.Helper()
			c, cancel := context.WithTimeout(s.ctx, 30*time.Second)
			defer cancel()
			if err := chromedp.Run(c, actions...); err != nil {
				t.Fatalf("%d px: %s: %v", width, what, err)
			}
		}
		shot := func(name string) []byte {
			t.Helper()
			var png []byte
			run("screenshot "+name, chromedp.FullScreenshot(&png, 100))
			if err := os.WriteFile(filepath.Join(p.out, name), png, 0o644); err != nil {
				t.Fatal(err)
			}
			return png
		}
		overflow := func(what string) {
			t.Helper()
			var sw int64
			run("measure "+what, chromedp.Evaluate(`document.documentElement.scrollWidth`, &sw))
			if sw > width+1 {
				t.Errorf("%s at %d px is %d px wide: it scrolls sideways", what, width, sw)
			}
		}

		// The app's page: why this replica.
		var text string
		run("load the page", chromedp.EmulateViewport(width, height), chromedp.Navigate(p.baseURL()+"/"),
			chromedp.WaitVisible("body", chromedp.ByQuery), chromedp.Text("body", &text, chromedp.ByQuery))
		if !strings.Contains(text, "sent here by least connections") {
			t.Errorf("%d px: the page lacks %q: %s", width, "sent here by least connections", tail(text, 10))
		}
		overflow("the page")
		shot(fmt.Sprintf("page-%d.png", width))

		// The dashboard: names as text, a chart that moves.
		run("load the dashboard", chromedp.Navigate(p.adminURL()+"/"), chromedp.WaitVisible("#rpsChart path.area", chromedp.ByQuery))
		waitFor(t, 20*time.Second, "the dashboard to name the 4 replicas", func() bool {
			run("read the cards", chromedp.Text("#cards", &text, chromedp.ByQuery))
			for _, n := range names {
				if !strings.Contains(text, n) {
					return false
				}
			}
			return true
		}, func() string { return "cards: " + text })
		var areas, lines int
		run("count the drawing", chromedp.Evaluate(`document.querySelectorAll("#rpsChart path.area").length`, &areas),
			chromedp.Evaluate(`document.querySelectorAll("#latChart path.p99").length`, &lines))
		if areas != 4 || lines != 4 {
			t.Errorf("%d px: %d stacked areas and %d p99 lines, want 4 of each", width, areas, lines)
		}
		overflow("the dashboard")
		var chart1, chart2 []byte
		polls := func() int {
			var n string
			run("count redraws", chromedp.Evaluate(`document.body.dataset.polls || "0"`, &n))
			var v int
			fmt.Sscan(n, &v)
			return v
		}
		run("chart 1", chromedp.Screenshot("#rpsChart", &chart1, chromedp.ByQuery))
		first := shot(fmt.Sprintf("dashboard-%d-a.png", width))
		// Two screenshots 3 s apart: the page redraws once a second.
		taken, drawn := time.Now(), polls()
		waitFor(t, 20*time.Second, "3 more redraws, 3 s later", func() bool {
			return time.Since(taken) >= 3*time.Second && polls() >= drawn+3
		}, func() string { return fmt.Sprintf("redraws %d → %d", drawn, polls()) })
		run("chart 2", chromedp.Screenshot("#rpsChart", &chart2, chromedp.ByQuery))
		second := shot(fmt.Sprintf("dashboard-%d-b.png", width))
		if bytes.Equal(chart1, chart2) || bytes.Equal(first, second) {
			t.Errorf("%d px: the requests chart did not change in 3 s under load", width)
		}
		if errs := con.errors(); len(errs) > 0 {
			t.Errorf("%d px: console errors: %v", width, errs)
		}
		rep.add("dashboard at %d px: names %v as text, %d areas, chart changed in 3 s, %d console errors; out/e2e/page-%d.png, dashboard-%d-{a,b}.png",
			width, names, areas, len(con.errors()), width, width)
	}
	res := l.stop()
	if f := res.failed(); len(f) > 0 {
		t.Errorf("%d of %d requests failed during the dashboard step:%s", len(f), len(res.outcomes), describeFailures(f))
	}
}
