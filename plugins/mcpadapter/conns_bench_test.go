//go:build unix

package mcpadapter

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/armoriq/controlplane/plugins"
	"github.com/armoriq/controlplane/runtime/telemetry/cputime"
)

// BenchmarkRawHTTP measures one raw tools/call from the http adapter to an
// upstream answering with a small event stream at once, on the raw path's
// own connections and on net/http's transport: the adapter's side of the
// call, with the upstream's (the same in both) in the same process. Besides
// ns/op it reports cpu-µs/op, the process's CPU time per call, and allocs.
//
//	go test ./plugins/mcpadapter -run '^$' -bench RawHTTP -benchmem
func BenchmarkRawHTTP(b *testing.B) {
	srv := mcp.NewServer(&mcp.Implementation{Name: "bench", Version: "1"}, nil)
	up := httptest.NewServer(intercepting(srv, func(w http.ResponseWriter, method string, id json.RawMessage) bool {
		if method != "tools/call" {
			return false
		}
		w.Header().Set("Content-Type", "text/event-stream")
		_, _ = io.WriteString(w, "event: message\ndata: "+`{"jsonrpc":"2.0","id":`+string(id)+`,"result":{"content":[{"type":"text","text":"hello"}]}}`+"\n\n")
		return true
	}))
	defer up.Close()
	for _, tc := range []struct {
		name string
		tr   func() http.RoundTripper
	}{
		{"own", func() http.RoundTripper { return newRawTransport(up.URL) }},
		{"net-http", func() http.RoundTripper { return newHTTPTransport() }},
	} {
		b.Run(tc.name, func(b *testing.B) {
			a := NewHTTP()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := a.Configure(ctx, plugins.ServerConfig{ID: "b", Transport: plugins.TransportHTTP, URL: up.URL}); err != nil {
				b.Fatal(err)
			}
			defer a.Close()
			a.rawClient.Transport = tc.tr()
			pv := protocolVersion(a.currentSession())
			call := rawCall(b, "echo", pv, "")
			for range 20 {
				if _, err := a.CallRaw(context.Background(), call, nil); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportAllocs()
			cpu0, _ := cputime.Process()
			b.ResetTimer()
			for b.Loop() {
				if _, err := a.CallRaw(context.Background(), call, nil); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			cpu1, _ := cputime.Process()
			b.ReportMetric(float64((cpu1-cpu0).Microseconds())/float64(b.N), "cpu-µs/op")
		})
	}
}
