// Package httpfront serves HTTP/1.1 for a net/http Server without the
// goroutine net/http starts for every request to watch its connection.
//
// For each request it serves, net/http's server starts a goroutine that
// reads the connection while the handler runs (to cancel the request's
// context when the client goes away), and stops it when the handler
// returns by setting a read deadline in the past and waiting for it. Each
// of the two wakes a goroutine, and on a machine whose processors are
// otherwise idle each wake starts a thread: at one call at a time that is
// most of the threads the gateway starts per call, and a tenth of its CPU
// (docs/mcp.md, "Performance").
//
// A Server reads each request itself, with http.ReadRequest on the
// connection's buffer, and serves the plain ones: HTTP/1.1, any method but
// HEAD, CONNECT and PRI, a body with a Content-Length or none, no Expect,
// no Upgrade, valid header names and values, one valid Host, a header
// block that fits its buffer (8 KiB) and MaxHeaderBytes. Anything else,
// and a request it cannot parse, goes to the net/http Server with the
// bytes read so far replayed, and that connection stays there: the
// standard library answers what it would have answered.
//
// What a handler sees is what net/http gives it: the request as
// http.ReadRequest parses it with RemoteAddr, a context cancelled when the
// handler returns or the client goes away (ServerContextKey and
// LocalAddrContextKey set, BaseContext and ConnContext honoured), a body
// of Content-Length bytes; a ResponseWriter that buffers the answer and
// sends it with its Content-Length in one write, or streams it chunked
// once it outgrows 64 KiB or the handler flushes (http.Flusher,
// http.ResponseController's Flush, SetReadDeadline, SetWriteDeadline);
// the Date, Content-Type sniffing, 204/304 and Connection rules of
// net/http, the header snapshot at WriteHeader, and a panic recovered and
// logged to ErrorLog. Not supported on this path: Hijack, trailers, full
// duplex, ConnState. The Server's ReadHeaderTimeout, ReadTimeout,
// WriteTimeout, IdleTimeout and MaxHeaderBytes apply, deadlines to within
// a sixteenth of their length (at most a second, never later than asked):
// a deadline is moved only when it is that far off.
//
// The client going away is noticed without a goroutine per request: while
// handlers run, one timer per Server looks every 100 ms at the
// connections whose handler has read its body and has run since the last
// look, with a peek that never waits (recv with MSG_PEEK|MSG_DONTWAIT),
// and cancels the context of those whose client closed. A handler of a
// quick call is never looked at.
package httpfront
