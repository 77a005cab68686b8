//go:build unix

package balancer

import (
	"net"
	"syscall"
)

// alive peeks one byte without blocking. An idle HTTP/1.1 conn has nothing
// to read; EOF or an error means the backend closed it, and data means it
// is out of sync. Either way it must not carry a request that cannot be
// retried.
func alive(c net.Conn) bool {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return true
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	ok = false
	var buf [1]byte
	err = rc.Read(func(fd uintptr) bool {
		_, _, rerr := syscall.Recvfrom(int(fd), buf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		ok = (rerr == syscall.EAGAIN || rerr == syscall.EWOULDBLOCK)
		return true
	})
	return err == nil && ok
}
