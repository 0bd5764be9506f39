//go:build unix

package rawconn

import (
	"net"
	"syscall"
)

// Peek says what a socket holds, without waiting and without consuming a
// byte (recv with MSG_PEEK|MSG_DONTWAIT, under the descriptor's Control:
// a Read in progress neither blocks it nor is disturbed). A pool checks
// an idle connection with it (reusable when PeekEmpty); a server, the
// connection of a request in progress (its client gone when PeekClosed).
func Peek(c net.Conn) Peeked {
	if p, ok := peekRaw(c); ok {
		return p
	}
	sc, ok := c.(syscall.Conn)
	if !ok {
		return PeekUnknown
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return PeekUnknown
	}
	p := PeekUnknown
	if raw.Control(func(fd uintptr) { p = peekFD(fd) }) != nil {
		return PeekClosed // the descriptor is closed
	}
	return p
}

func peekFD(fd uintptr) Peeked {
	var b [1]byte
	for {
		n, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		if err == syscall.EINTR {
			continue
		}
		var e syscall.Errno
		if err != nil {
			e, _ = err.(syscall.Errno)
			if e == 0 {
				return PeekClosed
			}
		}
		return peekedOf(n, e)
	}
}

// peekedOf says what a peek of n bytes, or its error e, found.
func peekedOf(n int, e syscall.Errno) Peeked {
	switch {
	case e == syscall.EAGAIN || e == syscall.EWOULDBLOCK:
		return PeekEmpty
	case e != 0:
		return PeekClosed // reset, or another error: not usable
	case n == 0:
		return PeekClosed // the peer's end of stream
	}
	return PeekData
}
