package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/armoriq/controlplane/runtime/store"
	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// BenchmarkTokenIssue measures POST /iap/sdk/token for 5-step plans through
// HTTP, with the policy check, signing and the token record on SQLite.
func BenchmarkTokenIssue(b *testing.B) {
	for _, conc := range []int{1, 16} {
		b.Run(fmt.Sprintf("steps=5/conc=%d", conc), func(b *testing.B) {
			g := newTestGateway(b, nil)
			g.pushBundle("rev1", 100, testPolicy())
			steps := make([]any, 5)
			for i := range steps {
				steps[i] = map[string]any{"action": "echo", "mcp": "tools", "params": map[string]any{"text": fmt.Sprint("step ", i)}}
			}
			body, _ := json.Marshal(map[string]any{
				"user_id": "alice@example.com", "agent_id": "bench", "context_id": "default",
				"plan": map[string]any{"goal": "bench", "steps": steps}, "expires_in": 60.0,
			})
			hc := benchClient()
			b.ResetTimer()
			start := time.Now()
			runConcurrent(b, conc, func() {
				benchPost(b, hc, g.http.URL+"/iap/sdk/token", g.agentKey, body, nil)
			}, nil)
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "tokens/s")
		})
	}
}

// BenchmarkInvokeOverhead calls the same upstream tool directly (an MCP
// client session) and through the gateway's /invoke (auth, token and proof
// checks, policy, audit committed to SQLite before the answer), and reports
// p50/p99 of each and the latency the gateway adds.
//
// sync=full commits each audit record with an fsync (the default);
// sync=normal (--sqlite-sync normal) survives a gateway crash but not a
// power loss, and shows what the fsync costs.
func BenchmarkInvokeOverhead(b *testing.B) {
	for _, sync := range []string{store.SyncFull, store.SyncNormal} {
		for _, conc := range []int{1, 16} {
			b.Run(fmt.Sprintf("sync=%s/conc=%d", sync, conc), func(b *testing.B) {
				benchInvoke(b, sync, conc)
			})
		}
	}
}

func benchInvoke(b *testing.B, sync string, conc int) {
	{
		{
			st, err := store.OpenSQLiteSync(context.Background(), filepath.Join(b.TempDir(), "armoriq.db"), sync)
			if err != nil {
				b.Fatal(err)
			}
			defer st.Close()
			g := newTestGateway(b, st)
			g.pushBundle("rev1", 100, testPolicy())
			tok := g.issue("alice@example.com", step("tools", "echo", map[string]any{"text": "hi"}))
			body, hdr := invokeRequestFor(tok, "tools", "echo", map[string]any{"text": "hi"})
			hc := benchClient()

			cs, err := mcp.NewClient(&mcp.Implementation{Name: "bench", Version: "1"}, nil).Connect(context.Background(), &mcp.StreamableClientTransport{Endpoint: g.upstream, HTTPClient: hc}, nil)
			if err != nil {
				b.Fatal(err)
			}
			defer cs.Close()
			direct := func() {
				if _, err := cs.CallTool(context.Background(), &mcp.CallToolParams{Name: "echo", Arguments: map[string]any{"text": "hi"}}); err != nil {
					b.Error(err)
				}
			}
			viaGateway := func() {
				benchPost(b, hc, g.http.URL+"/invoke", g.agentKey, body, hdr)
			}
			// Warm both paths (sessions, connections, caches).
			for i := 0; i < 20; i++ {
				direct()
				viaGateway()
			}
			b.ResetTimer()
			// Alternate rounds so both paths see the same machine load.
			var dl, gl latencies
			rounds := 4
			per := b.N/rounds + 1
			for r := 0; r < rounds; r++ {
				runConcurrentN(per, conc, direct, &dl)
				runConcurrentN(per, conc, viaGateway, &gl)
			}
			b.StopTimer()
			dp50, dp99 := dl.percentiles()
			gp50, gp99 := gl.percentiles()
			b.ReportMetric(float64(dp50.Microseconds()), "direct-p50-µs")
			b.ReportMetric(float64(dp99.Microseconds()), "direct-p99-µs")
			b.ReportMetric(float64(gp50.Microseconds()), "gateway-p50-µs")
			b.ReportMetric(float64(gp99.Microseconds()), "gateway-p99-µs")
			b.ReportMetric(float64((gp50 - dp50).Microseconds()), "added-p50-µs")
			b.ReportMetric(float64((gp99 - dp99).Microseconds()), "added-p99-µs")
		}
	}
}

// invokeRequestFor builds the SDK's /invoke body and headers for a token.
func invokeRequestFor(tok map[string]any, mcpName, action string, params map[string]any) ([]byte, map[string]string) {
	plan := tok["plan_echo"]
	raw := map[string]any{"plan": plan, "token": tok["token"], "plan_hash": tok["plan_hash"], "merkle_root": tok["merkle_root"], "intent_reference": tok["intent_reference"], "step_proofs": tok["step_proofs"]}
	body, _ := json.Marshal(map[string]any{"mcp": mcpName, "action": action, "tool": action, "params": params, "arguments": params, "intent_token": raw, "plan": plan, "token": tok["token"]})
	proof, _ := json.Marshal(tok["step_proofs"].([]any)[0])
	return body, map[string]string{"X-CSRG-Proof": string(proof), "X-CSRG-Path": "/steps/[0]/action", "Content-Type": "application/json"}
}

// benchPost sends one request and expects 200.
func benchPost(b *testing.B, hc *http.Client, url, key string, body []byte, hdr map[string]string) {
	req, _ := http.NewRequest("POST", url, bytes.NewReader(body))
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	req.Header.Set("X-API-Key", key)
	resp, err := hc.Do(req)
	if err != nil {
		b.Error(err)
		return
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		b.Errorf("POST %s: status %d", url, resp.StatusCode)
	}
}

func benchClient() *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 128
	return &http.Client{Transport: tr}
}

type latencies struct {
	mu sync.Mutex
	d  []time.Duration
}

func (l *latencies) add(d time.Duration) {
	l.mu.Lock()
	l.d = append(l.d, d)
	l.mu.Unlock()
}

func (l *latencies) percentiles() (p50, p99 time.Duration) {
	if len(l.d) == 0 {
		return 0, 0
	}
	sort.Slice(l.d, func(i, j int) bool { return l.d[i] < l.d[j] })
	return l.d[len(l.d)*50/100], l.d[min(len(l.d)-1, len(l.d)*99/100)]
}

// runConcurrent runs fn b.N times over conc goroutines.
func runConcurrent(b *testing.B, conc int, fn func(), lat *latencies) {
	runConcurrentN(b.N, conc, fn, lat)
}

func runConcurrentN(n, conc int, fn func(), lat *latencies) {
	var wg sync.WaitGroup
	work := make(chan struct{}, n)
	for i := 0; i < n; i++ {
		work <- struct{}{}
	}
	close(work)
	for w := 0; w < conc; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range work {
				start := time.Now()
				fn()
				if lat != nil {
					lat.add(time.Since(start))
				}
			}
		}()
	}
	wg.Wait()
}
