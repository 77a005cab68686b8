package web

import (
	"context"
	"errors"
	"net/http"

	"hits/app/internal/hits"
)

// status maps an error from counting to the status the client gets. It is
// the only place that decides; the body never shows the error itself.
func status(err error) int {
	switch {
	case errors.Is(err, hits.ErrUnavailable), errors.Is(err, hits.ErrStopped),
		errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return http.StatusServiceUnavailable
	default:
		return http.StatusInternalServerError
	}
}
