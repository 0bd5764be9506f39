//go:build !unix

package mcpadapter

import "net"

// peekConn cannot look without reading here: an idle connection is taken
// as open (a request on one the upstream closed fails, as with net/http).
func peekConn(net.Conn) bool { return true }
