package web

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"testing"

	"hits/app/internal/hits"
)

func TestStatus(t *testing.T) {
	tests := []struct {
		err  error
		want int
	}{
		{fmt.Errorf("%w: dial tcp: refused", hits.ErrUnavailable), http.StatusServiceUnavailable},
		{hits.ErrStopped, http.StatusServiceUnavailable},
		{fmt.Errorf("wait: %w", context.DeadlineExceeded), http.StatusServiceUnavailable},
		{errors.New("template: boom"), http.StatusInternalServerError},
	}
	for _, tt := range tests {
		if got := status(tt.err); got != tt.want {
			t.Errorf("status(%v) = %d, want %d", tt.err, got, tt.want)
		}
	}
}
