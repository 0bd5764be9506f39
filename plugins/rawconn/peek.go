package rawconn

// Peeked is what Peek found on a socket.
type Peeked int

const (
	// PeekUnknown: Peek cannot look at this connection (not a socket, or
	// not a system with MSG_PEEK).
	PeekUnknown Peeked = iota
	// PeekEmpty: open, nothing to read.
	PeekEmpty
	// PeekData: open, with bytes to read.
	PeekData
	// PeekClosed: the peer ended its side or reset the connection, or the
	// socket is closed.
	PeekClosed
)
