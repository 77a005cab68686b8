package instance

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"
)

// dnsServer is a tiny real UDP DNS server: it answers PTR questions from
// names and NXDOMAIN otherwise, like Docker's embedded DNS would.
func dnsServer(t *testing.T, names map[string]string) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { pc.Close(); wg.Wait() })
	wg.Go(func() {
		buf := make([]byte, 1500)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return // closed
			}
			var req dnsmessage.Message
			if err := req.Unpack(buf[:n]); err != nil || len(req.Questions) != 1 {
				continue
			}
			q := req.Questions[0]
			resp := dnsmessage.Message{
				Header:    dnsmessage.Header{ID: req.ID, Response: true, RCode: dnsmessage.RCodeNameError},
				Questions: req.Questions,
			}
			if ptr, ok := names[q.Name.String()]; ok && q.Type == dnsmessage.TypePTR {
				resp.RCode = dnsmessage.RCodeSuccess
				resp.Answers = []dnsmessage.Resource{{
					Header: dnsmessage.ResourceHeader{Name: q.Name, Type: dnsmessage.TypePTR, Class: dnsmessage.ClassINET, TTL: 600},
					Body:   &dnsmessage.PTRResource{PTR: dnsmessage.MustNewName(ptr)},
				}}
			}
			out, err := resp.Pack()
			if err != nil {
				continue
			}
			pc.WriteTo(out, from)
		}
	})
	return pc.LocalAddr().String()
}

func addrs(cidrs ...string) func() ([]net.Addr, error) {
	return func() ([]net.Addr, error) {
		var as []net.Addr
		for _, c := range cidrs {
			ip, n, err := net.ParseCIDR(c)
			if err != nil {
				return nil, err
			}
			n.IP = ip
			as = append(as, n)
		}
		return as, nil
	}
}

func TestNameFromDockerPTR(t *testing.T) {
	ns := dnsServer(t, map[string]string{
		"3.0.18.172.in-addr.arpa.": "hits-app-3.hits_default.",
		"4.0.18.172.in-addr.arpa.": "hits_app_4.hits_default.",
	})
	tests := []struct {
		addr, want, source string
	}{
		{"172.18.0.3/16", "hits-app-3", "ptr"},
		{"172.18.0.4/16", "hits_app_4", "ptr"},
		{"172.18.0.9/16", "fallback-host", "hostname"}, // NXDOMAIN
	}
	for _, tt := range tests {
		t.Run(tt.addr, func(t *testing.T) {
			d := Detector{
				Nameserver: ns,
				Addrs:      addrs("127.0.0.1/8", "::1/128", tt.addr),
				Hostname:   func() (string, error) { return "fallback-host", nil },
				Timeout:    2 * time.Second,
			}
			name, source, err := d.Name(context.Background())
			if err != nil || name != tt.want || !strings.HasPrefix(source, tt.source) {
				t.Fatalf("Name = %q, %q, %v; want %q, %q", name, source, err, tt.want, tt.source)
			}
		})
	}
}

func TestNameFallsBackWhenNoResolver(t *testing.T) {
	d := Detector{
		ResolvConf: t.TempDir() + "/missing",
		Addrs:      addrs("10.0.0.5/24"),
		Hostname:   func() (string, error) { return "laptop", nil },
	}
	name, source, err := d.Name(context.Background())
	if err != nil || name != "laptop" || !strings.HasPrefix(source, "hostname (no PTR name: ") {
		t.Fatalf("Name = %q, %q, %v; want laptop from hostname", name, source, err)
	}
	d.Hostname = func() (string, error) { return "", errors.New("no hostname") }
	if _, _, err := d.Name(context.Background()); err == nil {
		t.Fatal("Name with neither PTR nor hostname = nil error, want one")
	}
}

func TestNameDoesNotHangOnSilentServer(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0") // never answers
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	d := Detector{Nameserver: pc.LocalAddr().String(), Addrs: addrs("172.18.0.3/16"),
		Hostname: func() (string, error) { return "h", nil }, Timeout: 200 * time.Millisecond}
	start := time.Now()
	name, _, _ := d.Name(context.Background())
	if name != "h" || time.Since(start) > 2*time.Second {
		t.Fatalf("Name = %q after %s; want the hostname within the timeout", name, time.Since(start))
	}
}

func TestFirstNameserver(t *testing.T) {
	got, err := FirstNameserver(strings.NewReader("# docker\nsearch x\nnameserver 127.0.0.11\nnameserver 8.8.8.8\noptions ndots:0\n"))
	if err != nil || got != "127.0.0.11" {
		t.Fatalf("FirstNameserver = %q, %v; want 127.0.0.11", got, err)
	}
	if _, err := FirstNameserver(strings.NewReader("search x\n")); err == nil {
		t.Fatal("FirstNameserver without one = nil error, want one")
	}
}

func TestOwnIP(t *testing.T) {
	as, _ := addrs("127.0.0.1/8", "fe80::1/64", "2001:db8::5/64", "172.18.0.3/16")()
	if ip, ok := OwnIP(as); !ok || ip != netip.MustParseAddr("172.18.0.3") {
		t.Errorf("OwnIP = %v, %v; want 172.18.0.3 (IPv4 first)", ip, ok)
	}
	as, _ = addrs("127.0.0.1/8", "2001:db8::5/64")()
	if ip, ok := OwnIP(as); !ok || ip != netip.MustParseAddr("2001:db8::5") {
		t.Errorf("OwnIP = %v, %v; want 2001:db8::5", ip, ok)
	}
}

func TestReverseNameIPv6(t *testing.T) {
	n, err := reverseName(netip.MustParseAddr("2001:db8::567:89ab"))
	want := "b.a.9.8.7.6.5.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa."
	if err != nil || n.String() != want {
		t.Fatalf("reverseName = %q, %v; want %q", n, err, want)
	}
}

func TestShortName(t *testing.T) {
	for in, want := range map[string]string{"hits-app-3.hits_default.": "hits-app-3", "solo.": "solo", "x": "x"} {
		if got, err := ShortName(in); err != nil || got != want {
			t.Errorf("ShortName(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	if _, err := ShortName("."); err == nil {
		t.Error("ShortName(\".\") = nil error, want one")
	}
}
