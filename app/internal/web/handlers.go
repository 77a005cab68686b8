package web

import (
	"bytes"
	"context"
	_ "embed"
	"net/http"
	"strconv"
	"strings"
	"time"

	"hits/app/internal/hits"
)

//go:embed static/favicon.ico
var favicon []byte

// page is what the JSON answer and the HTML template show.
type page struct {
	Instance  string               `json:"instance"`
	Version   string               `json:"version"`
	Total     int64                `json:"total"`
	LastDay   int64                `json:"last_day"`
	Minute    time.Time            `json:"minute"`
	Instances []hits.InstanceCount `json:"instances"`
	// SentBy is why the balancer sent the request here, from its
	// X-LB-Reason header ("round robin"); empty without one.
	SentBy string `json:"-"`
}

// sentBy turns the balancer's X-LB-Reason (round_robin, sticky,
// retry-after-dial-error) into words for the page. Only the balancer sets
// the header (lb drops a client's own), but it is checked anyway: lower
// case letters, '_' and '-', at most 64 bytes.
func sentBy(r *http.Request) string {
	v := r.Header.Get("X-LB-Reason")
	if v == "" || len(v) > 64 {
		return ""
	}
	for _, c := range v {
		if !(c >= 'a' && c <= 'z' || c == '_' || c == '-') {
			return ""
		}
	}
	if v == "sticky" {
		return "your sticky-session cookie"
	}
	return reasonWords.Replace(v)
}

var reasonWords = strings.NewReplacer("_", " ", "-", " ")

// Shared header values (see handleIndex).
var (
	noStore     = []string{"no-store"}
	contentJSON = []string{"application/json"}
	contentHTML = []string{"text/html; charset=utf-8"}
)

func wantsJSON(r *http.Request) bool {
	a := r.Header.Get("Accept")
	return strings.Contains(a, "application/json") && !strings.Contains(a, "text/html")
}

func (s *server) handleIndex() http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		// The Counter bounds the wait (HIT_TIMEOUT, longer once the hit's
		// batch may have committed) and each query; ctx ends early only
		// when the client is gone.
		ctx := r.Context()
		h, err := s.Counter.Hit(ctx)
		if err != nil {
			s.failed.Inc()
			code := status(err)
			// Debug only: an outage would log every request; the batcher
			// logs the cause once and hits_page_failures_total counts them.
			s.Log.Debug("hit not counted", "status", code, "err", err)
			s.writeError(w, r, code)
			return
		}
		p := page{Instance: h.Instance, Version: s.Version, Total: h.Total, LastDay: h.LastDay, Minute: h.Minute}
		// The breakdown is decoration: without it the page still answers.
		if b, err := s.Counter.Breakdown(ctx); err == nil {
			p.Instances = b
		} else {
			s.Log.Debug("breakdown unavailable", "err", err)
		}
		if p.Instances == nil {
			p.Instances = []hits.InstanceCount{}
		}
		// Header values are shared, never modified slices: assigning them
		// skips Set's key canonicalization and an allocation per header.
		hdr := w.Header()
		hdr["Cache-Control"] = noStore
		var body []byte
		if wantsJSON(r) {
			hdr["Content-Type"] = contentJSON
			body = appendPageJSON(make([]byte, 0, 512), p)
		} else {
			p.SentBy = sentBy(r)
			var buf bytes.Buffer
			writePage(&buf, newView(p))
			hdr["Content-Type"] = contentHTML
			body = buf.Bytes()
		}
		writeBody(w, http.StatusOK, body)
		s.counted.Inc()
		s.duration.Observe(time.Since(start).Seconds())
	}
}

// handleIndexHead answers HEAD / without counting: monitors and link
// checkers are not page views.
func (s *server) handleIndexHead() http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(http.StatusOK)
	}
}

func (s *server) handleHealthz() http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		writeBody(w, http.StatusOK, []byte("ok\n"))
	}
}

func (s *server) handleReadyz() http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		if s.Draining() {
			// Tells lb this replica is leaving, not broken: its dashboard
			// shows it draining rather than down.
			w.Header().Set("X-App-State", "draining")
			writeBody(w, http.StatusServiceUnavailable, []byte("draining\n"))
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), time.Second)
		defer cancel()
		if err := s.Ready(ctx); err != nil {
			writeBody(w, http.StatusServiceUnavailable, []byte("database unavailable\n"))
			return
		}
		writeBody(w, http.StatusOK, []byte("ready\n"))
	}
}

func (s *server) handleFavicon() http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "image/x-icon")
		w.Header().Set("Cache-Control", "public, max-age=86400")
		writeBody(w, http.StatusOK, favicon)
	}
}

func (s *server) handleNotFound() http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "not found", http.StatusNotFound)
	}
}

func (s *server) handleMethodNotAllowed() http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
	}
}

// The JSON error bodies, as encoding/json writes them.
var (
	errorJSONUnavailable = []byte(`{"error":"unavailable"}` + "\n")
	errorJSONInternal    = []byte(`{"error":"internal error"}` + "\n")
)

// writeError answers a short page (or JSON) that says what the user can do,
// never why internally.
func (s *server) writeError(w http.ResponseWriter, r *http.Request, code int) {
	w.Header().Set("Cache-Control", "no-store")
	if code == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", "2")
	}
	if wantsJSON(r) {
		w.Header().Set("Content-Type", "application/json")
		body := errorJSONUnavailable
		if code != http.StatusServiceUnavailable {
			body = errorJSONInternal
		}
		writeBody(w, code, body)
		return
	}
	var buf bytes.Buffer
	writeErrorPage(&buf, code == http.StatusServiceUnavailable)
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	writeBody(w, code, buf.Bytes())
}

// writeBody answers code with body, framed by its length: for a body
// already in hand. h1/front, which serves the public port, measures a
// small answer itself (as net/http's server does, so http.Error's are
// framed too), but only by copying it once more, and chunks one over 2 KiB;
// saying the length spares both.
func writeBody(w http.ResponseWriter, code int, body []byte) {
	w.Header()["Content-Length"] = []string{strconv.Itoa(len(body))}
	w.WriteHeader(code)
	w.Write(body)
}
