package metrics

import (
	"strings"
	"sync"
	"testing"
)

func TestWrite(t *testing.T) {
	r := NewRegistry()
	c := r.NewCounter("jobs_total", "Jobs done.")
	v := r.NewCounterVec("requests_total", "Requests.", "route", "code")
	h := r.NewHistogram("size", "Sizes.", 1, 10)
	var wg sync.WaitGroup
	for range 100 {
		wg.Go(func() { c.Inc(); v.Inc("/", "200"); h.Observe(5) })
	}
	wg.Wait()
	v.Inc("/x", "404")
	h.Observe(1)
	h.Observe(50)
	var (
		nilC *Counter
		nilH *Histogram
	)
	nilC.Inc() // optional instruments may be nil
	nilH.Observe(1)

	var b strings.Builder
	r.Write(&b)
	want := `# HELP jobs_total Jobs done.
# TYPE jobs_total counter
jobs_total 100
# HELP requests_total Requests.
# TYPE requests_total counter
requests_total{route="/",code="200"} 100
requests_total{route="/x",code="404"} 1
# HELP size Sizes.
# TYPE size histogram
size_bucket{le="1"} 1
size_bucket{le="10"} 101
size_bucket{le="+Inf"} 102
size_sum 551
size_count 102
`
	if b.String() != want {
		t.Errorf("Write =\n%s\nwant\n%s", b.String(), want)
	}
}
