package web

import (
	"net/http"

	"github.com/go-chi/chi/v5"
)

// routes lists every path the app answers. Only GET / counts a hit.
func (s *server) routes() http.Handler {
	r := chi.NewRouter()
	r.Use(s.identityHeaders, s.recoverPanics)
	r.Get("/", s.instrument("/", s.handleIndex()))
	r.Head("/", s.instrument("/", s.handleIndexHead()))
	r.Get("/healthz", s.instrument("/healthz", s.handleHealthz()))
	r.Get("/readyz", s.instrument("/readyz", s.handleReadyz()))
	r.Get("/metrics", s.instrument("/metrics", s.handleMetrics()))
	r.Get("/favicon.ico", s.instrument("/favicon.ico", s.handleFavicon()))
	r.NotFound(s.instrument("other", s.handleNotFound()))
	r.MethodNotAllowed(s.instrument("other", s.handleMethodNotAllowed()))
	return r
}
