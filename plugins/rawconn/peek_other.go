//go:build !unix

package rawconn

import "net"

// Peek cannot look here.
func Peek(c net.Conn) Peeked { return PeekUnknown }
