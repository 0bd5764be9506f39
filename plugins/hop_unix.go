//go:build unix

package plugins

import (
	"io"
	"os"
	"syscall"
)

// hopSupported says whether adapters offer the hop here: where unix
// sockets and their directory permissions are what the hop relies on.
const hopSupported = true

// nowReader reads from a connection what it holds, without waiting: a read
// that would wait fails with os.ErrDeadlineExceeded, as one whose deadline
// passed. One goroutine at a time uses it.
type nowReader struct {
	raw  syscall.RawConn
	fn   func(fd uintptr) bool // r.readFD, made once
	p    []byte
	n    int
	rerr error
}

func newNowReader(raw syscall.RawConn) *nowReader {
	r := &nowReader{raw: raw}
	r.fn = r.readFD
	return r
}

func (r *nowReader) readFD(fd uintptr) bool {
	for {
		r.n, r.rerr = syscall.Read(int(fd), r.p)
		if r.rerr != syscall.EINTR {
			return true // never wait
		}
	}
}

func (r *nowReader) read(p []byte) (int, error) {
	r.p = p
	err := r.raw.Read(r.fn)
	n, rerr := r.n, r.rerr
	r.p, r.rerr = nil, nil
	switch {
	case err != nil:
		return 0, err
	case rerr == syscall.EAGAIN:
		return 0, os.ErrDeadlineExceeded
	case rerr != nil:
		return 0, os.NewSyscallError("read", rerr)
	case n == 0 && len(p) > 0:
		return 0, io.EOF
	}
	return n, nil
}
