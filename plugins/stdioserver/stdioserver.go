// Package stdioserver is the transport of the MCP servers this module
// serves on its own standard input and output (armoriq demo-server, the
// tests' stdio servers): the SDK's stdio transport, except that standard
// input is read through the Go runtime's network poller when it is a pipe
// or a socket, so that no thread waits for the client in a blocking read.
//
// Why: with Go 1.26 a goroutine entering a blocking system call at the
// moment another goroutine starts a garbage collection can be missed by
// the stop-the-world (the runtime checks for a pending stop before it
// marks the goroutine as in a system call, and the stop does not look
// again; sysmon, which would take the processor back, sleeps while a stop
// is pending). The collection, and every goroutine of the process, then
// waits until that system call returns. For a stdio server that system
// call is the read of its next request: a client that sends one request
// and waits for the answer (an adapter at concurrency 1) waits until it
// gives up, the server answering only once more input arrives. Read
// through the poller, the goroutine parks in Go instead and the stop
// proceeds. See docs/mcp.md, "Stdio servers written in Go".
package stdioserver

import (
	"io"
	"os"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// Transport returns the transport to serve MCP on standard input and
// output. Once it is used, standard input belongs to it: os.Stdin must not
// be read elsewhere (it may have been put in non-blocking mode).
func Transport() mcp.Transport {
	if in := pollableStdin(); in != nil {
		return &mcp.IOTransport{Reader: in, Writer: nopCloser{os.Stdout}}
	}
	return &mcp.StdioTransport{}
}

// nopCloser leaves standard output open when the session closes, as the
// SDK's stdio transport does.
type nopCloser struct{ io.Writer }

func (nopCloser) Close() error { return nil }
