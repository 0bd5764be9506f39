//go:build linux

package rawconn

import (
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// forceRaw wraps under the race detector too (this package's tests).
var forceRaw bool

// enabled: this system has raw reads and writes here.
const enabled = true

// Conn is a socket read and written with raw system calls. Read and
// Write behave as its net.Conn's; ReadNow and WriteBuffers are its own (a
// read that never waits, one writev), and Peek looks at it without an
// allocation; CloseWrite, SyscallConn and NetConn reach the socket; the
// rest are its net.Conn's.
type Conn struct {
	net.Conn
	fdio
}

// fdio reads and writes a descriptor of the runtime's poller with raw
// system calls.
type fdio struct {
	raw syscall.RawConn

	rmu   sync.Mutex // one Read at a time (as the descriptor allows)
	rfn   func(fd uintptr) bool
	rp    []byte
	rn    int
	rerr  syscall.Errno
	rnow  bool // ReadNow: never wait
	rwait bool // the read would have waited

	pfn    func(fd uintptr) bool // peekFD, for peek (under rmu)
	pbuf   [1]byte
	pn     uintptr
	perr   syscall.Errno
	peeked bool

	wmu  sync.Mutex // one Write at a time
	wfn  func(fd uintptr) bool
	wp   []byte
	wvec []syscall.Iovec // WriteBuffers' pieces not yet written
	vbuf [4]syscall.Iovec
	wn   int
	werr syscall.Errno
}

// Wrap returns c read and written with raw system calls when c is a TCP
// or unix-domain stream socket in non-blocking mode (as package net makes
// them), and c itself otherwise.
func Wrap(c net.Conn) net.Conn {
	switch c.(type) {
	case *net.TCPConn, *net.UnixConn:
	default:
		return c
	}
	raw, ok := rawOf(c.(syscall.Conn))
	if !ok {
		return c
	}
	rc := &Conn{Conn: c}
	rc.init(raw)
	return rc
}

// rawOf returns sc's RawConn when its reads and writes may be made raw:
// outside the race detector (race.go), on a descriptor in non-blocking
// mode.
func rawOf(sc syscall.Conn) (syscall.RawConn, bool) {
	if raceEnabled && !forceRaw {
		return nil, false
	}
	raw, err := sc.SyscallConn()
	if err != nil || !nonBlocking(raw) {
		return nil, false
	}
	return raw, true
}

func (c *fdio) init(raw syscall.RawConn) {
	c.raw = raw
	c.rfn, c.wfn, c.pfn = c.readFD, c.writeFD, c.peekFD
}

// errWouldWait is what a read without waiting fails with when there was
// nothing to read.
var errWouldWait = os.ErrDeadlineExceeded

func (c *fdio) readFD(fd uintptr) bool {
	for {
		n, _, e := syscall.RawSyscall(syscall.SYS_READ, fd, uintptr(unsafe.Pointer(unsafe.SliceData(c.rp))), uintptr(len(c.rp)))
		switch e {
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			if c.rnow {
				c.rwait = true
				return true
			}
			return false // the poller waits, with the read deadline
		}
		c.rn, c.rerr = int(n), e
		return true
	}
}

// Read reads as net.Conn's Read does.
func (c *Conn) Read(p []byte) (int, error) {
	n, err := c.read(p, false)
	return n, c.opError("read", err)
}

// ReadNow reads what the socket holds without waiting: when it holds
// nothing it fails with os.ErrDeadlineExceeded, as a read whose deadline
// passed.
func (c *Conn) ReadNow(p []byte) (int, error) {
	n, err := c.read(p, true)
	if err == errWouldWait {
		return 0, err // as such: a caller polling finds nothing often
	}
	return n, c.opError("read", err)
}

// read reads into p; with now, a read that would wait fails with
// errWouldWait. Its errors are the poller's (a deadline, a closed
// descriptor), a system call's (*os.SyscallError) or io.EOF.
func (c *fdio) read(p []byte, now bool) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	c.rmu.Lock()
	defer c.rmu.Unlock()
	c.rp, c.rn, c.rerr, c.rnow, c.rwait = p, 0, 0, now, false
	err := c.raw.Read(c.rfn)
	n, rerr, wait := c.rn, c.rerr, c.rwait
	c.rp = nil
	switch {
	case err != nil:
		return 0, err
	case wait:
		return 0, errWouldWait
	case rerr != 0:
		return 0, os.NewSyscallError("read", rerr)
	case n == 0:
		return 0, io.EOF
	}
	return n, nil
}

func (c *fdio) writeFD(fd uintptr) bool {
	for len(c.wp) > 0 || len(c.wvec) > 0 {
		var n uintptr
		var e syscall.Errno
		if len(c.wvec) > 0 {
			n, _, e = syscall.RawSyscall(syscall.SYS_WRITEV, fd, uintptr(unsafe.Pointer(&c.wvec[0])), uintptr(len(c.wvec)))
		} else {
			n, _, e = syscall.RawSyscall(syscall.SYS_WRITE, fd, uintptr(unsafe.Pointer(unsafe.SliceData(c.wp))), uintptr(len(c.wp)))
		}
		switch e {
		case 0:
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return false // the poller waits, with the write deadline
		default:
			c.werr = e
			return true
		}
		c.wn += int(n)
		if len(c.wvec) > 0 {
			c.consumeVec(int(n))
		} else {
			c.wp = c.wp[n:]
		}
	}
	return true
}

// consumeVec drops the first n bytes written from c.wvec.
func (c *fdio) consumeVec(n int) {
	for n > 0 && len(c.wvec) > 0 {
		v := &c.wvec[0]
		if uint64(n) < v.Len {
			v.Base = (*byte)(unsafe.Add(unsafe.Pointer(v.Base), n))
			v.Len -= uint64(n)
			return
		}
		n -= int(v.Len)
		c.wvec = c.wvec[1:]
	}
	for len(c.wvec) > 0 && c.wvec[0].Len == 0 {
		c.wvec = c.wvec[1:]
	}
}

// Write writes as net.Conn's Write does: all of p, or an error.
func (c *Conn) Write(p []byte) (int, error) {
	n, err := c.write(p)
	return n, c.opError("write", err)
}

// WriteBuffers writes bufs in order with as few system calls as it can
// (writev), as net.Buffers' WriteTo does on a socket.
func (c *Conn) WriteBuffers(bufs ...[]byte) (int64, error) {
	n, err := c.writev(bufs)
	return n, c.opError("write", err)
}

// write writes all of p. Its errors are the poller's or a system call's.
func (c *fdio) write(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.wp, c.wn, c.werr = p, 0, 0
	return c.finishWrite(c.raw.Write(c.wfn))
}

// writev writes bufs in order, with writev.
func (c *fdio) writev(bufs [][]byte) (int64, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.wvec = c.vbuf[:0]
	for _, b := range bufs {
		if len(b) > 0 {
			c.wvec = append(c.wvec, syscall.Iovec{Base: unsafe.SliceData(b), Len: uint64(len(b))})
		}
	}
	if len(c.wvec) == 0 {
		return 0, nil
	}
	c.wn, c.werr = 0, 0
	n, err := c.finishWrite(c.raw.Write(c.wfn))
	c.wvec = nil
	clear(c.vbuf[:]) // keep no buffer alive
	return int64(n), err
}

func (c *fdio) finishWrite(err error) (int, error) {
	n, werr := c.wn, c.werr
	c.wp = nil
	switch {
	case err != nil:
		return n, err
	case werr != 0:
		return n, os.NewSyscallError("write", werr)
	}
	return n, nil
}

// opError says err of op as the wrapped connection's own methods do: a
// *net.OpError whose Err is os.ErrDeadlineExceeded, net.ErrClosed or a
// system call's error.
func (c *Conn) opError(op string, err error) error {
	if err == nil || err == io.EOF {
		return err
	}
	var oe *net.OpError
	if errors.As(err, &oe) {
		err = oe.Err
	}
	return &net.OpError{Op: op, Net: c.LocalAddr().Network(), Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: err}
}

// peek says what the socket holds, as Peek, with no allocation: the
// pool's check of an idle connection runs before every call. A Read in
// progress holds rmu: then it answers PeekUnknown at once, rather than
// wait for that Read (its reader sees what the socket holds itself).
func (c *fdio) peek() Peeked {
	if !c.rmu.TryLock() {
		return PeekUnknown
	}
	defer c.rmu.Unlock()
	c.pn, c.perr, c.peeked = 0, 0, false
	if err := c.raw.Read(c.pfn); err != nil {
		return PeekClosed // the descriptor is closed
	}
	if !c.peeked {
		return PeekUnknown
	}
	return peekedOf(int(c.pn), c.perr)
}

func (c *fdio) peekFD(fd uintptr) bool {
	for {
		n, _, e := syscall.RawSyscall6(syscall.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&c.pbuf[0])), 1, syscall.MSG_PEEK|syscall.MSG_DONTWAIT, 0, 0)
		if e == syscall.EINTR {
			continue
		}
		c.pn, c.perr, c.peeked = n, e, true
		return true
	}
}

// CloseWrite shuts down the writing side, where the wrapped connection can.
func (c *Conn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return c.Conn.Close()
}

// SyscallConn returns the wrapped connection's.
func (c *Conn) SyscallConn() (syscall.RawConn, error) { return c.raw, nil }

// NetConn returns the wrapped connection.
func (c *Conn) NetConn() net.Conn { return c.Conn }

type listener struct{ net.Listener }

// Listen returns l, its accepted connections wrapped.
func Listen(l net.Listener) net.Listener { return listener{l} }

func (l listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return Wrap(c), nil
}

// nonBlocking reports whether raw's descriptor is in non-blocking mode. A
// raw read or write of a descriptor in blocking mode would block its
// thread, and the processor with it, until the peer acts.
func nonBlocking(raw syscall.RawConn) bool {
	nonblock := false
	err := raw.Control(func(fd uintptr) {
		fl, err := unix.FcntlInt(fd, unix.F_GETFL, 0)
		nonblock = err == nil && fl&unix.O_NONBLOCK != 0
	})
	return err == nil && nonblock
}

// File is a pipe's end read and written with raw system calls.
type File struct {
	f *os.File
	fdio
}

// WrapFile returns f read and written with raw system calls when f is in
// non-blocking mode (the ends os.Pipe returns are, as long as their Fd
// method was not called), and f itself otherwise.
func WrapFile(f *os.File) io.ReadWriteCloser {
	raw, ok := rawOf(f)
	if !ok {
		return f
	}
	rf := &File{f: f}
	rf.init(raw)
	return rf
}

// Read reads as os.File's Read does.
func (f *File) Read(p []byte) (int, error) {
	n, err := f.read(p, false)
	return n, f.pathError("read", err)
}

// Write writes as os.File's Write does: all of p, or an error.
func (f *File) Write(p []byte) (int, error) {
	n, err := f.write(p)
	return n, f.pathError("write", err)
}

// Close closes the file, waking a read or write that waits.
func (f *File) Close() error { return f.f.Close() }

// pathError says err as os.File's methods do.
func (f *File) pathError(op string, err error) error {
	if err == nil || err == io.EOF {
		return err
	}
	var se *os.SyscallError
	if errors.As(err, &se) {
		err = se.Err
	}
	if err.Error() == "use of closed file" { // internal/poll.ErrFileClosing
		err = os.ErrClosed
	}
	return &os.PathError{Op: op, Path: f.f.Name(), Err: err}
}

// peekRaw peeks at c without an allocation when it is a Conn.
func peekRaw(c net.Conn) (Peeked, bool) {
	rc, ok := c.(*Conn)
	if !ok {
		return 0, false
	}
	return rc.peek(), true
}
