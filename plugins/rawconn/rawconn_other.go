//go:build !linux

package rawconn

import (
	"io"
	"net"
	"os"
)

// forceRaw has no effect here.
var forceRaw bool

// enabled: this system has no raw reads and writes here.
const enabled = false

// Wrap returns c: only Linux has raw reads and writes here.
func Wrap(c net.Conn) net.Conn { return c }

// Listen returns l.
func Listen(l net.Listener) net.Listener { return l }

// WrapFile returns f.
func WrapFile(f *os.File) io.ReadWriteCloser { return f }

// peekRaw: no Conn here.
func peekRaw(c net.Conn) (Peeked, bool) { return 0, false }
