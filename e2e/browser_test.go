//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// page is what a person reads on the page after one load.
type page struct {
	Instance string
	Total    int64
	LastDay  int64
}

var (
	instanceRE = regexp.MustCompile(`APP INSTANCE:\s*(\S+)`)
	totalRE    = regexp.MustCompile(`Total hits:\s*([0-9][0-9,]*)`)
	lastDayRE  = regexp.MustCompile(`Hits in the last day:\s*([0-9][0-9,]*)`)
)

func parsePage(text string) (page, error) {
	var p page
	m := instanceRE.FindStringSubmatch(text)
	t := totalRE.FindStringSubmatch(text)
	d := lastDayRE.FindStringSubmatch(text)
	if m == nil || t == nil || d == nil {
		return p, fmt.Errorf("page lacks APP INSTANCE / Total hits / Hits in the last day: %q", tail(text, 20))
	}
	p.Instance = m[1]
	var err error
	if p.Total, err = strconv.ParseInt(regexp.MustCompile(`,`).ReplaceAllString(t[1], ""), 10, 64); err != nil {
		return p, fmt.Errorf("total %q: %w", t[1], err)
	}
	if p.LastDay, err = strconv.ParseInt(regexp.MustCompile(`,`).ReplaceAllString(d[1], ""), 10, 64); err != nil {
		return p, fmt.Errorf("last day %q: %w", d[1], err)
	}
	return p, nil
}

// browser is one headless Chromium; each session in it has its own cookies.
type browser struct {
	allocCtx context.Context
	cancel   context.CancelFunc
}

func newBrowser(t *testing.T, extra ...chromedp.ExecAllocatorOption) *browser {
	t.Helper()
	path := os.Getenv("CHROMIUM")
	if path == "" {
		for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
			if p, err := exec.LookPath(name); err == nil {
				path = p
				break
			}
		}
	}
	if path == "" {
		t.Fatal("no chromium on PATH (apt-get install chromium, or set CHROMIUM)")
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.NoSandbox, // CI runs as root, where Chromium's sandbox refuses to start
		chromedp.WindowSize(1000, 700),
	)
	opts = append(opts, extra...)
	allocCtx, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	b := &browser{allocCtx: allocCtx, cancel: cancel}
	t.Cleanup(cancel)
	return b
}

// session is one browser tab with a fresh cookie jar.
type session struct {
	ctx    context.Context
	cancel context.CancelFunc
}

func (b *browser) session(t *testing.T) *session {
	t.Helper()
	ctx, cancel := chromedp.NewContext(b.allocCtx)
	t.Cleanup(cancel)
	// The first Run starts the browser and tab and ties them to the context it
	// gets: it must be this long-lived one, not a per-load context with a
	// deadline, whose cancel would close the tab after the first load.
	if err := chromedp.Run(ctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return &session{ctx: ctx, cancel: cancel}
}

// load navigates (or reloads) and reads the page's text.
func (s *session) load(url string, reload bool) (page, error) {
	ctx, cancel := context.WithTimeout(s.ctx, 30*time.Second)
	defer cancel()
	var text string
	nav := chromedp.Navigate(url)
	if reload {
		nav = chromedp.Reload()
	}
	if err := chromedp.Run(ctx, nav, chromedp.WaitVisible("body", chromedp.ByQuery),
		chromedp.Text("body", &text, chromedp.ByQuery)); err != nil {
		return page{}, fmt.Errorf("load %s: %w", url, err)
	}
	return parsePage(text)
}

func (s *session) screenshot(path string) error {
	ctx, cancel := context.WithTimeout(s.ctx, 30*time.Second)
	defer cancel()
	var png []byte
	if err := chromedp.Run(ctx, chromedp.FullScreenshot(&png, 100)); err != nil {
		return err
	}
	return os.WriteFile(path, png, 0o644)
}

// loads loads url once and reloads it n times, returning every page seen.
func (s *session) loads(url string, reloads int) ([]page, error) {
	var pages []page
	for i := 0; i <= reloads; i++ {
		p, err := s.load(url, i > 0)
		if err != nil {
			return pages, fmt.Errorf("load %d: %w", i+1, err)
		}
		pages = append(pages, p)
	}
	return pages, nil
}
