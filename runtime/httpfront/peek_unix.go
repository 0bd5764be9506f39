//go:build unix

package httpfront

import "syscall"

// peekClosed peeks at one byte of the socket fd without waiting: none and
// no error is the peer's end of stream; an error other than "would wait"
// is a reset.
func peekClosed(fd uintptr) bool {
	var b [1]byte
	for {
		n, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		switch err {
		case nil:
			return n == 0
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return false
		}
		return true
	}
}
