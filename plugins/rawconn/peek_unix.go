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
		switch {
		case err == syscall.EINTR:
			continue
		case err == syscall.EAGAIN || err == syscall.EWOULDBLOCK:
			return PeekEmpty
		case err != nil:
			return PeekClosed // reset, or another error: not usable
		case n == 0:
			return PeekClosed // the peer's end of stream
		}
		return PeekData
	}
}
