package testkit

import (
	"fmt"
	"net"
	"testing"
)

// FreePort returns a loopback TCP port that was free a moment ago, for a
// program that cannot be handed an open listener. Programs that can bind
// port 0 themselves and report the address (app and lb's run) should.
func FreePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// Port is FreePort for a test: it fails t if no port can be had.
func Port(t testing.TB) int {
	t.Helper()
	p, err := FreePort()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// Ports hands out free loopback ports, none twice. A port FreePort returned
// is free again until its program binds it, so a second pick for the same
// run can return it too: two programs would be given one port, one would
// fail to bind, and the other would answer for both. Use one Ports for all
// the ports of one run. The zero value is ready; not for concurrent use.
type Ports struct {
	picked map[int]bool
	next   func() (int, error) // nil: FreePort (tests replace it)
}

// Free returns a free port that p has not returned before.
func (p *Ports) Free() (int, error) {
	if p.picked == nil {
		p.picked = map[int]bool{}
	}
	next := p.next
	if next == nil {
		next = FreePort
	}
	for range 100 {
		port, err := next()
		if err != nil {
			return 0, err
		}
		if !p.picked[port] {
			p.picked[port] = true
			return port, nil
		}
	}
	return 0, fmt.Errorf("no free port distinct from the %d already picked", len(p.picked))
}
