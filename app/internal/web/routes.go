package web

import (
	"net/http"

	"github.com/go-chi/chi/v5"
)

// routes lists every path the public port answers. Only GET / counts a hit.
// /metrics and /debug/pprof are on the operations listener (OPS_ADDR):
// here they are 404 like any unknown path, so the balancer never exposes them.
func (s *server) routes() http.Handler {
	r := chi.NewRouter()
	r.Use(s.identityHeaders, s.recoverPanics)
	r.Get("/", s.instrument("/", s.handleIndex()))
	r.Head("/", s.instrument("/", s.handleIndexHead()))
	r.Get("/healthz", s.instrument("/healthz", s.handleHealthz()))
	r.Get("/readyz", s.instrument("/readyz", s.handleReadyz()))
	r.Get("/favicon.ico", s.instrument("/favicon.ico", s.handleFavicon()))
	r.NotFound(s.instrument("other", s.handleNotFound()))
	r.MethodNotAllowed(s.instrument("other", s.handleMethodNotAllowed()))
	return r
}
