package web

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"hits/app/internal/hits"
	"hits/app/internal/metrics"
)

// panickyCounter stands in for the counter to make a handler panic, which
// no real part does on demand.
type panickyCounter struct{}

func (panickyCounter) Hit(context.Context) (hits.Hit, error) { panic("secret internal state") }
func (panickyCounter) Breakdown(context.Context) ([]hits.InstanceCount, error) {
	return nil, nil
}

func TestPanicBecomesA500WithoutInternals(t *testing.T) {
	var logs bytes.Buffer
	srv := httptest.NewServer(NewServer(Deps{
		Counter:    panickyCounter{},
		Ready:      func(context.Context) error { return nil },
		Draining:   func() bool { return false },
		Metrics:    metrics.NewRegistry(),
		Log:        slog.New(slog.NewJSONHandler(&logs, nil)),
		HitTimeout: time.Second,
	}))
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusInternalServerError || strings.Contains(string(body), "secret") {
		t.Errorf("GET / = %d %q; want 500 without the panic's text", resp.StatusCode, body)
	}
	if !strings.Contains(logs.String(), "handler panic") || !strings.Contains(logs.String(), "secret internal state") {
		t.Errorf("panic not logged: %s", logs.String())
	}
	if resp, err := http.Get(srv.URL + "/healthz"); err != nil || resp.StatusCode != 200 {
		t.Errorf("healthz after a panic = %v, %v; want 200", resp, err)
	} else {
		resp.Body.Close()
	}
}
