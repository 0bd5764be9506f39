package httpfront_test

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"testing"
)

// BenchmarkServe is one keep-alive client posting a small JSON-RPC call and
// reading the answer, one at a time, to net/http's server and to a Front
// with the same handler (over raw sockets, as the gateway serves): the
// time and allocations of a round trip, both processes' halves in one.
func BenchmarkServe(b *testing.B) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"ok"}]}}`)
	})
	s := startServers(b, h, true, nil)
	req := post("/mcp", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"text":"ok"}}}`,
		"Content-Type: application/json\r\nAccept: application/json, text/event-stream\r\nAuthorization: Bearer 0123456789abcdef0123456789abcdef\r\n")
	for _, tc := range []struct{ name, addr string }{{"net-http", s.stdAddr}, {"front", s.frontAddr}} {
		b.Run(tc.name, func(b *testing.B) {
			c, err := net.Dial("tcp", tc.addr)
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			br := bufio.NewReader(c)
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				if _, err := io.WriteString(c, req); err != nil {
					b.Fatal(err)
				}
				res, err := http.ReadResponse(br, nil)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := io.Copy(io.Discard, res.Body); err != nil || res.StatusCode != 200 {
					b.Fatal(res.Status, err)
				}
				res.Body.Close()
			}
		})
	}
}
