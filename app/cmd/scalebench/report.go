package main

import (
	"cmp"
	"fmt"
	"html"
	"io"
	"runtime"
	"slices"
	"strings"
	"time"
)

// cell is every round of one mode at one N, and the median round.
type cell struct {
	mode   string
	n      int
	rounds []result
	med    result // the round with the median hits/s
}

type report struct {
	cells []cell // in mode order, then N order
}

func summarize(o options, results []result) report {
	var rep report
	for _, m := range o.modes {
		for _, n := range o.ns {
			c := cell{mode: m, n: n}
			for _, r := range results {
				if r.mode == m && r.n == n {
					c.rounds = append(c.rounds, r)
				}
			}
			if len(c.rounds) == 0 {
				continue
			}
			sorted := slices.Clone(c.rounds)
			slices.SortFunc(sorted, func(a, b result) int {
				return cmp.Compare(a.res.PerSecond(), b.res.PerSecond())
			})
			c.med = sorted[len(sorted)/2]
			rep.cells = append(rep.cells, c)
		}
	}
	return rep
}

func (rep report) get(mode string, n int) (cell, bool) {
	for _, c := range rep.cells {
		if c.mode == mode && c.n == n {
			return c, true
		}
	}
	return cell{}, false
}

// base is the mode's figure at its smallest N, the unit of its ideal line.
func (rep report) base(mode string) (cell, bool) {
	for _, c := range rep.cells {
		if c.mode == mode {
			return c, true
		}
	}
	return cell{}, false
}

func (rep report) print(w io.Writer, o options) {
	fmt.Fprintf(w, "\nlb + N app replicas + PostgreSQL (fsync on) + Redis on this machine (%d CPUs); %d keep-alive connections through lb, JSON GET /,\n"+
		"%s warm-up then %s measured; median of %d interleaved rounds (range of hits/s in brackets); budget = %g CPU per replica.\n\n",
		runtime.NumCPU(), o.concurrency, o.warmup, o.duration, o.rounds, o.budget)
	fmt.Fprintln(w, "| mode | N | hits/s | × N=1 | ideal | p50 | p99 | errors | PostgreSQL holds the 200s | hits per batch | CPU per hit: replicas | lb | PostgreSQL | Redis | engine | load gen | other work |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---:|---:|---:|---:|:---|---:|---:|---:|---:|---:|---:|---:|---:|")
	for _, c := range rep.cells {
		b, _ := rep.base(c.mode)
		r := c.med
		exact := "yes, all rounds"
		for _, x := range c.rounds {
			if !x.exact() {
				exact = fmt.Sprintf("NO: round %d stored %d for %d×200, %d errors", x.round, x.stored, x.answered, x.errors)
			}
		}
		ok := r.res.OK
		engine := "-"
		if strings.HasPrefix(c.mode, "compose") {
			engine = perHit(r.cpu.engine, ok)
		}
		fmt.Fprintf(w, "| %s | %d | %.0f %s | %.2f× | %.0f | %s | %s | %d | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n",
			c.mode, c.n, r.res.PerSecond(), spread(c.rounds), r.res.PerSecond()/b.med.res.PerSecond(),
			b.med.res.PerSecond()*float64(c.n)/float64(b.n), ms(r.res.P50), ms(r.res.P99), r.errors, exact, perBatch(r.hitsPerBatch),
			perHit(r.cpu.replicas, ok), perHit(r.cpu.lb, ok), perHit(r.cpu.postgres, ok), perHit(r.cpu.redis, ok),
			engine, perHit(r.cpu.load, ok), othersShare(r.cpu, r.res.Elapsed))
	}
	rep.targets(w)
}

// targets prints the targets that this run's modes and Ns allow.
func (rep report) targets(w io.Writer) {
	var lines []string
	check := func(ok bool, format string, args ...any) {
		mark := "MET"
		if !ok {
			mark = "MISSED"
		}
		lines = append(lines, fmt.Sprintf("- %s: %s", mark, fmt.Sprintf(format, args...)))
	}
	rate := func(m string, n int) (float64, bool) {
		c, ok := rep.get(m, n)
		return c.med.res.PerSecond(), ok
	}
	perHitUS := func(m string, n int, f func(cpuSample) time.Duration) (float64, bool) {
		c, ok := rep.get(m, n)
		if !ok || c.med.res.OK == 0 {
			return 0, false
		}
		return float64(f(c.med.cpu).Microseconds()) / float64(c.med.res.OK), true
	}
	replicas := func(c cpuSample) time.Duration { return c.replicas }
	pg := func(c cpuSample) time.Duration { return c.postgres }
	if b1, ok := rate(modeBudget, 1); ok {
		for _, t := range []struct {
			n    int
			want float64
		}{{2, 1.9}, {4, 3.6}} {
			if v, ok := rate(modeBudget, t.n); ok {
				check(v/b1 >= t.want, "budget N=%d is %.2f× N=1 (want ≥ %.1f×)", t.n, v/b1, t.want)
			}
		}
		if us, ok := perHitUS(modeBudget, 1, replicas); ok {
			check(us <= 40, "a replica in its budget spends %.0f µs of CPU per hit (want ≤ 40)", us)
		}
	}
	for _, m := range []string{modeNative, modeCompose} {
		if v1, ok := rate(m, 1); ok {
			if v8, ok := rate(m, 8); ok {
				check(v8/v1 >= 0.85, "%s N=8 is %.2f× N=1 (want ≥ 0.85×)", m, v8/v1)
			}
		}
	}
	for _, t := range []struct {
		name string
		f    func(cpuSample) time.Duration
		want float64
	}{{"replicas", replicas, 1.3}, {"PostgreSQL", pg, 1.5}} {
		a, ok1 := perHitUS(modeNative, 1, t.f)
		b, ok8 := perHitUS(modeNative, 8, t.f)
		if ok1 && ok8 && a > 0 {
			check(b/a <= t.want, "native CPU per hit of %s at N=8 is %.2f× N=1 (%.0f vs %.0f µs; want ≤ %.1f×)", t.name, b/a, b, a, t.want)
		}
	}
	if c4, ok := rate(modeCompose, 4); ok {
		if n4, ok := rate(modeNative, 4); ok {
			check(c4/n4 >= 0.6, "compose N=4 is %.2f× native N=4 (want ≥ 0.6×)", c4/n4)
		}
	}
	for _, c := range rep.cells {
		if strings.HasPrefix(c.mode, "native") && c.med.res.P99 > 20*time.Millisecond {
			check(false, "native N=%d p99 %s (want ≤ 20 ms)", c.n, ms(c.med.res.P99))
		}
	}
	if len(lines) > 0 {
		fmt.Fprintln(w, "\nTargets (issue 7), from this run's medians:")
		fmt.Fprintln(w, strings.Join(lines, "\n"))
	}
}

// svg draws one panel per mode: hits/s against replicas, the measured
// medians (with each round's figure as a dot) and the ideal line N × the
// mode's N=1 figure.
func (rep report) svg(o options) []byte {
	const pw, ph, cols = 400, 280, 2
	var modes []string
	for _, c := range rep.cells {
		if !slices.Contains(modes, c.mode) {
			modes = append(modes, c.mode)
		}
	}
	rows := (len(modes) + cols - 1) / cols
	W, H := pw*min(cols, len(modes)), ph*rows+40
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">`+"\n", W, H, W, H)
	fmt.Fprintf(&b, `<rect width="%d" height="%d" fill="white"/>`+"\n", W, H)
	fmt.Fprintf(&b, `<text x="10" y="20" font-size="14" font-weight="bold">hits/s through lb vs app replicas (median of %d rounds; dots: each round; dashed: ideal N × N=1)</text>`+"\n", o.rounds)
	for i, m := range modes {
		x0, y0 := float64((i%cols)*pw), float64(40+(i/cols)*ph)
		rep.panel(&b, m, x0, y0, pw, ph)
	}
	b.WriteString("</svg>\n")
	return []byte(b.String())
}

func (rep report) panel(b *strings.Builder, mode string, x0, y0, w, h float64) {
	const left, right, top, bottom = 60, 15, 25, 40
	var cells []cell
	for _, c := range rep.cells {
		if c.mode == mode {
			cells = append(cells, c)
		}
	}
	base := cells[0]
	ideal := func(n int) float64 { return base.med.res.PerSecond() * float64(n) / float64(base.n) }
	ymax := 0.0
	for _, c := range cells {
		ymax = max(ymax, ideal(c.n))
		for _, r := range c.rounds {
			ymax = max(ymax, r.res.PerSecond())
		}
	}
	ymax = niceCeil(ymax)
	// x: replicas on a log2 scale, so 1, 2, 4, 8 are evenly spaced.
	lo, hi := log2(cells[0].n), log2(cells[len(cells)-1].n)
	if hi == lo {
		hi = lo + 1
	}
	px := func(n int) float64 { return x0 + left + (log2(n)-lo)/(hi-lo)*(w-left-right) }
	py := func(v float64) float64 { return y0 + h - bottom - v/ymax*(h-top-bottom) }
	fmt.Fprintf(b, `<text x="%.0f" y="%.0f" font-weight="bold">%s</text>`+"\n", x0+left, y0+top-8, html.EscapeString(modeTitle(mode)))
	for i := 0; i <= 4; i++ {
		v := ymax * float64(i) / 4
		fmt.Fprintf(b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#ddd"/>`+"\n", x0+left, py(v), x0+w-right, py(v))
		fmt.Fprintf(b, `<text x="%.1f" y="%.1f" text-anchor="end">%s</text>`+"\n", x0+left-5, py(v)+4, kilo(v))
	}
	for _, c := range cells {
		fmt.Fprintf(b, `<text x="%.1f" y="%.1f" text-anchor="middle">%d</text>`+"\n", px(c.n), y0+h-bottom+15, c.n)
	}
	fmt.Fprintf(b, `<text x="%.1f" y="%.1f" text-anchor="middle">replicas</text>`+"\n", x0+left+(w-left-right)/2, y0+h-8)
	var idealPts, medPts []string
	for _, c := range cells {
		idealPts = append(idealPts, fmt.Sprintf("%.1f,%.1f", px(c.n), py(ideal(c.n))))
		medPts = append(medPts, fmt.Sprintf("%.1f,%.1f", px(c.n), py(c.med.res.PerSecond())))
	}
	fmt.Fprintf(b, `<polyline points="%s" fill="none" stroke="#888" stroke-width="1.5" stroke-dasharray="6 4"/>`+"\n", strings.Join(idealPts, " "))
	fmt.Fprintf(b, `<polyline points="%s" fill="none" stroke="#1f77b4" stroke-width="2.5"/>`+"\n", strings.Join(medPts, " "))
	for _, c := range cells {
		for _, r := range c.rounds {
			fmt.Fprintf(b, `<circle cx="%.1f" cy="%.1f" r="2.5" fill="#1f77b4" fill-opacity="0.5"/>`+"\n", px(c.n), py(r.res.PerSecond()))
		}
		fmt.Fprintf(b, `<text x="%.1f" y="%.1f" text-anchor="middle" fill="#1f77b4">%s</text>`+"\n", px(c.n), py(c.med.res.PerSecond())-8, kilo(c.med.res.PerSecond()))
	}
}

func modeTitle(m string) string {
	switch m {
	case modeNative:
		return "native processes, sharing 2 CPUs"
	case modeBudget:
		return "native, each replica in its own CPU budget"
	case modeCompose:
		return "docker compose --scale app=N, sharing 2 CPUs"
	case modeComposeBudget:
		return "docker compose, APP_CPUS budget per replica"
	}
	return m
}

func log2(n int) float64 {
	v := 0.0
	for f := float64(n); f > 1; f /= 2 {
		v++
	}
	return v
}

// niceCeil rounds v up to 1, 2 or 5 times a power of ten (times 1.05 headroom).
func niceCeil(v float64) float64 {
	if v <= 0 {
		return 1
	}
	v *= 1.05
	p := 1.0
	for p*10 <= v {
		p *= 10
	}
	for _, m := range []float64{1, 2, 2.5, 5, 10} {
		if m*p >= v {
			return m * p
		}
	}
	return 10 * p
}

func kilo(v float64) string {
	if v >= 1000 {
		return fmt.Sprintf("%.1fk", v/1000)
	}
	return fmt.Sprintf("%.0f", v)
}

func spread(rs []result) string {
	if len(rs) < 2 {
		return ""
	}
	lo, hi := rs[0].res.PerSecond(), rs[0].res.PerSecond()
	for _, r := range rs {
		lo, hi = min(lo, r.res.PerSecond()), max(hi, r.res.PerSecond())
	}
	return fmt.Sprintf("(%.0f–%.0f)", lo, hi)
}

func ms(d time.Duration) string {
	return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000)
}

func perHit(d time.Duration, ok int) string {
	if ok == 0 {
		return "-"
	}
	return fmt.Sprintf("%.0f µs", float64(d.Microseconds())/float64(ok))
}

// perBatch formats a mean batch size; "-" when it could not be read.
func perBatch(v float64) string {
	if v <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.1f", v)
}

// othersShare is the part of the machine's CPUs used during the run but not
// by its processes: other work on a shared machine, plus kernel time not
// charged to any process (some of it the run's own loopback networking).
func othersShare(c cpuSample, elapsed time.Duration) string {
	if elapsed <= 0 {
		return "-"
	}
	own := c.replicas + c.lb + c.postgres + c.redis + c.engine + c.load
	return fmt.Sprintf("%.0f%%", 100*max(0, (c.machine-own).Seconds())/(elapsed.Seconds()*float64(runtime.NumCPU())))
}
