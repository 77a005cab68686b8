package web

import (
	"bytes"
	"strconv"
	"strings"
)

// view is page shaped for the template: numbers grouped for reading, bars
// scaled to the busiest instance.
type view struct {
	Instance string
	Version  string
	SentBy   string
	Total    string
	LastDay  string
	Bars     []bar
}

type bar struct {
	Instance string
	Hits     string
	Percent  int // width relative to the busiest instance, 1..100
	Self     bool
}

func newView(p page) view {
	v := view{Instance: p.Instance, Version: p.Version, SentBy: p.SentBy, Total: group(p.Total), LastDay: group(p.LastDay)}
	var top int64
	for _, c := range p.Instances {
		top = max(top, c.Hits)
	}
	for _, c := range p.Instances {
		pct := 1
		if top > 0 {
			pct = max(1, int(c.Hits*100/top))
		}
		v.Bars = append(v.Bars, bar{Instance: c.Instance, Hits: group(c.Hits), Percent: pct, Self: c.Instance == p.Instance})
	}
	return v
}

// group formats a count. No thousands separators: the phrases
// "Total hits: N" must stay greppable by scripts and tests.
func group(n int64) string { return strconv.FormatInt(n, 10) }

// The page is written out in Go rather than with html/template: text/template
// looks fields and methods up by name at run time, which makes the linker
// keep every exported method of every type in the binary (5.5 MB of the app
// with go-redis and client_golang linked, against a 20 MB image budget).
// Every value goes through escape, which escapes as html/template does in
// text and quoted attributes; page_test.go keeps the template this replaced
// and checks that both write the same bytes, hostile names included.

// escape replaces what html/template's escaper replaces in HTML text and
// quoted attribute values.
var escape = strings.NewReplacer("\x00", "\uFFFD", `"`, "&#34;", "&", "&amp;", "'", "&#39;", "+", "&#43;", "<", "&lt;", ">", "&gt;")

// writePage writes the counted page for v.
func writePage(w *bytes.Buffer, v view) {
	w.WriteString(pageHead)
	escape.WriteString(w, v.Instance)
	w.WriteString(pageStyle)
	escape.WriteString(w, v.Instance)
	w.WriteString("</h1>\n")
	if v.SentBy != "" {
		w.WriteString(`<p class="via">sent here by <b>`)
		escape.WriteString(w, v.SentBy)
		w.WriteString("</b></p>\n")
	}
	w.WriteString("<div class=\"numbers\">\n<div class=\"num\"><p>Hits in the last day: ")
	escape.WriteString(w, v.LastDay)
	w.WriteString("</p></div>\n<div class=\"num\"><p>Total hits: ")
	escape.WriteString(w, v.Total)
	w.WriteString("</p></div>\n</div>\n")
	if len(v.Bars) > 0 {
		w.WriteString("<h2>Hits per instance, all time <small>(cached: may lag a few seconds)</small></h2>\n<ul>\n")
		for _, b := range v.Bars {
			w.WriteString("<li")
			if b.Self {
				w.WriteString(` class="self"`)
			}
			w.WriteString(`><span class="name" title="`)
			escape.WriteString(w, b.Instance)
			w.WriteString(`">`)
			escape.WriteString(w, b.Instance)
			w.WriteString(`</span><span class="track"><span class="fill" style="width:`)
			w.WriteString(strconv.Itoa(b.Percent))
			w.WriteString(`%;display:block"></span></span><span class="count">`)
			escape.WriteString(w, b.Hits)
			w.WriteString("</span></li>\n")
		}
		w.WriteString("</ul>")
	}
	w.WriteString("\n<footer><span>Every load counts once, committed before you see it.</span><span class=\"version\">version ")
	escape.WriteString(w, v.Version)
	w.WriteString("</span><a href=\"/\">Count another</a></footer>\n</main>\n</body>\n</html>\n")
}

// pageHead is the page up to the title's instance name.
const pageHead = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>hits · `

// pageStyle is the page from the title's end to the heading's instance name.
const pageStyle = `</title>
<style>
:root { color-scheme: light dark; --bg:#f5f6fa; --card:#fff; --ink:#1d2230; --muted:#6b7385; --accent:#3b5bdb; --bar:#dbe3ff; }
@media (prefers-color-scheme: dark) { :root { --bg:#12141b; --card:#1c1f2a; --ink:#e8eaf2; --muted:#9aa2b6; --accent:#7d95ff; --bar:#2b3354; } }
* { box-sizing: border-box; }
body { margin:0; min-height:100vh; display:flex; align-items:center; justify-content:center;
       font:16px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; background:var(--bg); color:var(--ink); }
main { width:min(34rem, 100% - 2rem); margin:1rem auto; background:var(--card); border-radius:18px; padding:1.6rem 1.5rem;
       box-shadow:0 10px 30px rgba(0,0,0,.08); }
.label { color:var(--muted); font-size:.8rem; letter-spacing:.08em; text-transform:uppercase; margin:0; }
h1 { margin:.1rem 0 1.2rem; font-size:clamp(1.9rem, 8vw, 3rem); line-height:1.1; color:var(--accent); overflow-wrap:anywhere; }
.numbers { display:grid; grid-template-columns:1fr 1fr; gap:.8rem; margin-bottom:1.4rem; }
.num { background:var(--bg); border-radius:12px; padding:.8rem 1rem; }
.num p { margin:0; font-size:clamp(1.05rem, 4.6vw, 1.35rem); font-weight:650; font-variant-numeric:tabular-nums; overflow-wrap:anywhere; }
.via { margin:-.8rem 0 1.2rem; color:var(--muted); font-size:.88rem; }
.via b { color:var(--ink); font-weight:600; }
h2 { font-size:.95rem; margin:0 0 .6rem; color:var(--muted); font-weight:600; }
ul { list-style:none; margin:0; padding:0; }
li { display:grid; grid-template-columns:38% 1fr 4rem; gap:.6rem; align-items:center; margin:.35rem 0; font-size:.9rem; }
li .name { overflow:hidden; text-overflow:ellipsis; white-space:nowrap; }
li.self .name { font-weight:700; color:var(--accent); }
.track { height:.7rem; background:var(--bg); border-radius:99px; overflow:hidden; }
.fill { height:100%; background:var(--bar); border-radius:99px; }
li.self .fill { background:var(--accent); }
.count { font-variant-numeric:tabular-nums; color:var(--muted); text-align:right; }
footer { margin-top:1.2rem; font-size:.8rem; color:var(--muted); display:flex; justify-content:space-between; gap:1rem; flex-wrap:wrap; }
a { color:var(--accent); }
</style>
</head>
<body>
<main>
<p class="label">served by</p>
<h1>APP INSTANCE: `

// writeErrorPage writes the short page a request that was not counted gets.
func writeErrorPage(w *bytes.Buffer, unavailable bool) {
	w.WriteString(errorHead)
	if unavailable {
		w.WriteString(`<h1>Briefly unavailable</h1>
<p>Your visit was not counted because the counter's database is not answering. Please try again in a few seconds.</p>
`)
	} else {
		w.WriteString(`<h1>Something went wrong</h1>
<p>Your visit was not counted. Please try again.</p>
`)
	}
	w.WriteString(`</body>
</html>
`)
}

// errorHead is the error page up to its message.
const errorHead = `<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><title>hits · unavailable</title>
<style>body{font:16px/1.5 system-ui,sans-serif;max-width:30rem;margin:4rem auto;padding:0 1rem;color:#1d2230}</style></head>
<body>
`
