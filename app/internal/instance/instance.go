// Package instance finds a readable, per-replica name when INSTANCE_ID is
// not set. Under Docker, the embedded DNS server answers a reverse (PTR)
// lookup of a container's own IP with its container name, for example
// "hits-app-3.hits_default."; we ask that server directly because Go's
// resolver would read /etc/hosts first, where Docker writes the container ID.
package instance

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strings"
	"time"

	"golang.org/x/net/dns/dnsmessage"
)

// Detector finds the instance name. Zero-valued fields use the real system.
type Detector struct {
	// ResolvConf is the resolver file; if empty, /etc/resolv.conf.
	ResolvConf string
	// Nameserver, if set (host:port), is asked instead of resolv.conf's first one.
	Nameserver string
	// Addrs lists this host's addresses; if nil, net.InterfaceAddrs.
	Addrs func() ([]net.Addr, error)
	// Hostname is the last resort; if nil, os.Hostname.
	Hostname func() (string, error)
	// Timeout bounds the whole PTR exchange; if zero, 1s.
	Timeout time.Duration
}

// Name returns the instance name and how it was found: "ptr", or
// "hostname" followed by why the PTR lookup gave nothing (for the log).
func (d Detector) Name(ctx context.Context) (name, source string, err error) {
	if d.Timeout <= 0 {
		d.Timeout = time.Second
	}
	n, ptrErr := d.fromPTR(ctx)
	if ptrErr == nil {
		return n, "ptr", nil
	}
	hostname := d.Hostname
	if hostname == nil {
		hostname = os.Hostname
	}
	h, err := hostname()
	if err != nil || h == "" {
		return "", "", fmt.Errorf("instance name: no PTR answer and no hostname: %v", err)
	}
	return h, "hostname (no PTR name: " + ptrErr.Error() + ")", nil
}

func (d Detector) fromPTR(ctx context.Context) (string, error) {
	ns := d.Nameserver
	if ns == "" {
		path := d.ResolvConf
		if path == "" {
			path = "/etc/resolv.conf"
		}
		f, err := os.Open(path)
		if err != nil {
			return "", err
		}
		defer f.Close()
		server, err := FirstNameserver(f)
		if err != nil {
			return "", err
		}
		ns = net.JoinHostPort(server, "53")
	}
	addrs := d.Addrs
	if addrs == nil {
		addrs = net.InterfaceAddrs
	}
	as, err := addrs()
	if err != nil {
		return "", err
	}
	ip, ok := OwnIP(as)
	if !ok {
		return "", errors.New("no non-loopback address")
	}
	ctx, cancel := context.WithTimeout(ctx, d.Timeout)
	defer cancel()
	ptr, err := LookupPTR(ctx, ns, ip)
	if err != nil {
		return "", err
	}
	return ShortName(ptr)
}

// FirstNameserver returns the first "nameserver" of a resolv.conf.
func FirstNameserver(r io.Reader) (string, error) {
	s := bufio.NewScanner(r)
	for s.Scan() {
		f := strings.Fields(s.Text())
		if len(f) >= 2 && f[0] == "nameserver" {
			if _, err := netip.ParseAddr(f[1]); err == nil {
				return f[1], nil
			}
		}
	}
	if err := s.Err(); err != nil {
		return "", err
	}
	return "", errors.New("resolv.conf: no nameserver")
}

// OwnIP picks the first global-unicast IPv4 address, else IPv6 address.
func OwnIP(addrs []net.Addr) (netip.Addr, bool) {
	var v6 netip.Addr
	for _, a := range addrs {
		pfx, err := netip.ParsePrefix(a.String())
		if err != nil {
			continue
		}
		ip := pfx.Addr()
		if !ip.IsGlobalUnicast() {
			continue
		}
		if ip.Is4() {
			return ip, true
		}
		if !v6.IsValid() {
			v6 = ip
		}
	}
	return v6, v6.IsValid()
}

// ShortName strips the network suffix: "hits-app-3.hits_default." -> "hits-app-3".
func ShortName(ptr string) (string, error) {
	name, _, _ := strings.Cut(strings.TrimSuffix(ptr, "."), ".")
	if name == "" {
		return "", fmt.Errorf("empty PTR name %q", ptr)
	}
	return name, nil
}

// LookupPTR asks server (host:port) over UDP for the PTR record of ip.
func LookupPTR(ctx context.Context, server string, ip netip.Addr) (string, error) {
	qname, err := reverseName(ip)
	if err != nil {
		return "", err
	}
	id := uint16(time.Now().UnixNano()) // not security-relevant: we only talk to the local resolver
	msg := dnsmessage.Message{
		Header:    dnsmessage.Header{ID: id, RecursionDesired: true},
		Questions: []dnsmessage.Question{{Name: qname, Type: dnsmessage.TypePTR, Class: dnsmessage.ClassINET}},
	}
	q, err := msg.Pack()
	if err != nil {
		return "", err
	}
	var dialer net.Dialer
	conn, err := dialer.DialContext(ctx, "udp", server)
	if err != nil {
		return "", fmt.Errorf("ptr: %w", err)
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	if _, err := conn.Write(q); err != nil {
		return "", fmt.Errorf("ptr: %w", err)
	}
	buf := make([]byte, 1500)
	for {
		n, err := conn.Read(buf)
		if err != nil {
			return "", fmt.Errorf("ptr: %w", err)
		}
		var p dnsmessage.Parser
		h, err := p.Start(buf[:n])
		if err != nil || h.ID != id || !h.Response {
			continue // not our answer; keep reading until the deadline
		}
		if h.RCode != dnsmessage.RCodeSuccess {
			return "", fmt.Errorf("ptr: %s", h.RCode)
		}
		if err := p.SkipAllQuestions(); err != nil {
			return "", fmt.Errorf("ptr: %w", err)
		}
		for {
			ah, err := p.AnswerHeader()
			if err != nil {
				return "", fmt.Errorf("ptr: no PTR answer: %w", err)
			}
			if ah.Type != dnsmessage.TypePTR {
				if err := p.SkipAnswer(); err != nil {
					return "", fmt.Errorf("ptr: %w", err)
				}
				continue
			}
			r, err := p.PTRResource()
			if err != nil {
				return "", fmt.Errorf("ptr: %w", err)
			}
			return r.PTR.String(), nil
		}
	}
}

func reverseName(ip netip.Addr) (dnsmessage.Name, error) {
	var b strings.Builder
	if ip.Is4() {
		a := ip.As4()
		fmt.Fprintf(&b, "%d.%d.%d.%d.in-addr.arpa.", a[3], a[2], a[1], a[0])
	} else {
		a := ip.As16()
		for i := len(a) - 1; i >= 0; i-- {
			fmt.Fprintf(&b, "%x.%x.", a[i]&0xf, a[i]>>4)
		}
		b.WriteString("ip6.arpa.")
	}
	return dnsmessage.NewName(b.String())
}
