package web

import (
	"bytes"
	"html/template"
	"testing"
)

// TestPageMatchesTheTemplateItReplaced: writePage and writeErrorPage write
// byte for byte what the html/template they replaced wrote, for ordinary
// and hostile values (markup, quotes, plus, ampersand, NUL, non-ASCII).
func TestPageMatchesTheTemplateItReplaced(t *testing.T) {
	hostile := "<script>alert('x')</script> \"q\" a+b & c\x00 Zoë"
	views := map[string]view{
		"plain":            {Instance: "hits-app-1", Version: "v1", Total: "12", LastDay: "3"},
		"no bars, sent by": {Instance: "a", Version: "dev", SentBy: "round robin", Total: "1", LastDay: "1"},
		"bars": {Instance: "a", Version: "dev", Total: "5", LastDay: "5", Bars: []bar{
			{Instance: "a", Hits: "3", Percent: 100, Self: true}, {Instance: "b", Hits: "2", Percent: 66}}},
		"hostile": {Instance: hostile, Version: hostile, SentBy: hostile, Total: hostile, LastDay: hostile, Bars: []bar{
			{Instance: hostile, Hits: hostile, Percent: 1, Self: true}}},
	}
	for name, v := range views {
		t.Run(name, func(t *testing.T) {
			var want, got bytes.Buffer
			if err := replacedPage.Execute(&want, v); err != nil {
				t.Fatal(err)
			}
			writePage(&got, v)
			if got.String() != want.String() {
				t.Errorf("writePage:\n%s\nwant (html/template):\n%s", got.String(), want.String())
			}
		})
	}
	for _, unavailable := range []bool{true, false} {
		var want, got bytes.Buffer
		if err := replacedError.Execute(&want, unavailable); err != nil {
			t.Fatal(err)
		}
		writeErrorPage(&got, unavailable)
		if got.String() != want.String() {
			t.Errorf("writeErrorPage(%v):\n%s\nwant:\n%s", unavailable, got.String(), want.String())
		}
	}
}

// replacedPage and replacedError are the templates the page was rendered
// with before; change them together with writePage.
var replacedPage = template.Must(template.New("page").Parse(`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>hits · {{.Instance}}</title>
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
<h1>APP INSTANCE: {{.Instance}}</h1>
{{if .SentBy}}<p class="via">sent here by <b>{{.SentBy}}</b></p>
{{end}}<div class="numbers">
<div class="num"><p>Hits in the last day: {{.LastDay}}</p></div>
<div class="num"><p>Total hits: {{.Total}}</p></div>
</div>
{{if .Bars}}<h2>Hits per instance, all time <small>(cached: may lag a few seconds)</small></h2>
<ul>
{{range .Bars}}<li{{if .Self}} class="self"{{end}}><span class="name" title="{{.Instance}}">{{.Instance}}</span><span class="track"><span class="fill" style="width:{{.Percent}}%;display:block"></span></span><span class="count">{{.Hits}}</span></li>
{{end}}</ul>{{end}}
<footer><span>Every load counts once, committed before you see it.</span><span class="version">version {{.Version}}</span><a href="/">Count another</a></footer>
</main>
</body>
</html>
`))

var replacedError = template.Must(template.New("error").Parse(`<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><title>hits · unavailable</title>
<style>body{font:16px/1.5 system-ui,sans-serif;max-width:30rem;margin:4rem auto;padding:0 1rem;color:#1d2230}</style></head>
<body>
{{if .}}<h1>Briefly unavailable</h1>
<p>Your visit was not counted because the counter's database is not answering. Please try again in a few seconds.</p>
{{else}}<h1>Something went wrong</h1>
<p>Your visit was not counted. Please try again.</p>
{{end}}</body>
</html>
`))
