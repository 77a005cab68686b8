package web

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"

	"hits/app/internal/hits"
)

// stdJSON is what the handler wrote before appendPageJSON: the reference.
func stdJSON(t testing.TB, p page) []byte {
	var buf bytes.Buffer
	if err := json.NewEncoder(&buf).Encode(p); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestPageJSONMatchesEncodingJSON(t *testing.T) {
	minute := time.Date(2026, 11, 29, 23, 50, 0, 0, time.UTC)
	hostile := []string{"", "hits-app-1", `a"b\c`, "<script>&amp;</script>", "tab\tnl\ncr\rbs\bff\f", "\x00\x01\x1f\x7f",
		"bad utf8 \xff\xfe", "line\u2028para\u2029", "ünïcødé 日本 🎉", "\xed\xa0\x80"}
	for _, name := range hostile {
		for _, p := range []page{
			{Instance: name, Version: name, Total: 160491, LastDay: 20311, Minute: minute,
				Instances: []hits.InstanceCount{{Instance: name, Hits: 3}, {Instance: "b", Hits: 0}}},
			{Instance: name, Version: "dev", Total: -1, LastDay: 0, Minute: minute.In(time.FixedZone("x", 3600)), Instances: []hits.InstanceCount{}},
			{Instance: name, Minute: time.Date(2026, 1, 2, 3, 4, 5, 6007, time.UTC)},
		} {
			if got, want := appendPageJSON(nil, p), stdJSON(t, p); !bytes.Equal(got, want) {
				t.Errorf("appendPageJSON(%q)\n got %s\nwant %s", name, got, want)
			}
		}
	}
}

// FuzzPageJSON checks the hand-written encoder against encoding/json on
// any instance name and version, the only strings a page carries (times
// stay in years 1970..9892: encoding/json refuses years past 9999).
func FuzzPageJSON(f *testing.F) {
	for _, s := range []string{"hits-app-1", `"\<>&`, "\xff", "\u2028", "\x00\x1f"} {
		f.Add(s, s, int64(7))
	}
	f.Fuzz(func(t *testing.T, instance, version string, total int64) {
		p := page{Instance: instance, Version: version, Total: total, LastDay: total / 2,
			Minute: time.Unix(max(total%250_000_000_000, -total%250_000_000_000), 0).UTC(), Instances: []hits.InstanceCount{{Instance: instance, Hits: total}}}
		if got, want := appendPageJSON(nil, p), stdJSON(t, p); !bytes.Equal(got, want) {
			t.Fatalf("appendPageJSON\n got %q\nwant %q", got, want)
		}
	})
}
