//go:build unix

package mcpadapter

import (
	"errors"
	"net"
	"syscall"
)

// peekConn reports whether an idle connection is still open with nothing
// to read: a recv that peeks without waiting answers EAGAIN.
func peekConn(c net.Conn) bool {
	if o, ok := c.(interface{ Open() bool }); ok {
		return o.Open()
	}
	sc, ok := c.(syscall.Conn)
	if !ok {
		return true
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	var (
		buf    [1]byte
		rerr   error
		peeked bool
	)
	err = rc.Read(func(fd uintptr) bool {
		_, _, rerr = syscall.Recvfrom(int(fd), buf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		peeked = true
		return true
	})
	if err != nil || !peeked {
		return false
	}
	// EAGAIN: open, nothing sent. Else 0 bytes (closed), a byte (sent
	// unasked) or an error.
	return errors.Is(rerr, syscall.EAGAIN) || errors.Is(rerr, syscall.EWOULDBLOCK)
}
