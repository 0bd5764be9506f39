package main

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/armoriq/controlplane/runtime/client"
	"github.com/armoriq/controlplane/runtime/intent"
	"github.com/armoriq/controlplane/runtime/store"
	"github.com/armoriq/controlplane/runtime/store/storetest"
	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// roundRobin is the small load balancer of the HA drill: each request goes
// to the next live replica.
type roundRobin struct {
	mu       sync.Mutex
	backends []*url.URL
	next     int
	failed   atomic.Int64 // requests a dead replica could not answer (502)
}

func (rr *roundRobin) set(urls ...string) {
	rr.mu.Lock()
	defer rr.mu.Unlock()
	rr.backends = rr.backends[:0]
	for _, u := range urls {
		p, _ := url.Parse(u)
		rr.backends = append(rr.backends, p)
	}
}

func (rr *roundRobin) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rr.mu.Lock()
	target := rr.backends[rr.next%len(rr.backends)]
	rr.next++
	rr.mu.Unlock()
	p := httputil.NewSingleHostReverseProxy(target)
	p.FlushInterval = -1
	p.ErrorHandler = func(w http.ResponseWriter, r *http.Request, err error) {
		rr.failed.Add(1)
		http.Error(w, "replica unavailable", http.StatusBadGateway)
	}
	p.ServeHTTP(w, r)
}

// TestHADrill runs three gateway processes on one PostgreSQL behind a
// round-robin proxy, under load through /mcp (legacy sessions) and /invoke
// (the Go SDK). One replica is killed with SIGKILL and another restarted.
// It checks: no acknowledged call without an audit record, the legacy
// sessions carry on through the other replicas, a revocation reaches every
// replica within a second, the audit chain verifies.
func TestHADrill(t *testing.T) {
	dsn := storetest.PostgresDSN(t)
	bin := armoriqBinary(t)
	upURL, execs := countingUpstream(t)
	root := t.TempDir()
	cfg := filepath.Join(root, "armoriq.yaml")
	os.WriteFile(cfg, []byte(fmt.Sprintf(crashConfig, upURL)), 0o644)
	ctx := context.Background()

	// The replicas sign the config with one shared key, as a deployment
	// would mount it from a Secret.
	key := filepath.Join(root, "signing.key")
	if out, err := exec.Command(bin, "keygen", "-o", key).CombinedOutput(); err != nil {
		t.Fatalf("keygen: %v: %s", err, out)
	}
	start := func(name string) *gatewayProc {
		dir := filepath.Join(root, name)
		os.MkdirAll(dir, 0o755)
		return startGateway(t, bin, dir, "--config", cfg, "--store", dsn, "--local-key", key)
	}
	// The first replica bootstraps the shared store's admin key.
	reps := []*gatewayProc{start("a")}
	reps = append(reps, start("b"), start("c"))
	admin, err := os.ReadFile(filepath.Join(root, "a", "data", "admin.key"))
	if err != nil {
		t.Fatal(err)
	}
	adminKey := strings.TrimSpace(string(admin))
	agentKey := reps[0].createAgentKey(t, adminKey)

	rr := &roundRobin{}
	rr.set(reps[0].url, reps[1].url, reps[2].url)
	lb := httptest.NewServer(rr)
	defer lb.Close()

	stop := make(chan struct{})
	var wg sync.WaitGroup
	var acked, mcpErrs, invokeErrs atomic.Int64
	lateOK := make([]atomic.Int64, 4) // per MCP session: calls answered after the failover

	var failedOver atomic.Bool
	// /mcp: legacy sessions (2025-06-18, a sealed session id), each kept
	// for the whole drill while its requests hop between replicas.
	for w := 0; w < 4; w++ {
		c := mcp.NewClient(&mcp.Implementation{Name: fmt.Sprintf("ha-%d", w), Version: "1"}, nil)
		hc := &http.Client{Transport: headerTransport{"Authorization": "Bearer " + agentKey}, Timeout: 10 * time.Second}
		cs, err := c.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: lb.URL + "/mcp", HTTPClient: hc, DisableStandaloneSSE: true, MaxRetries: -1}, &mcp.ClientSessionOptions{ProtocolVersion: "2025-11-25"})
		if err != nil {
			t.Fatalf("MCP session %d: %v", w, err)
		}
		if cs.ID() == "" {
			t.Fatalf("MCP session %d has no session id: not a legacy session", w)
		}
		wg.Add(1)
		go func(w int, cs *mcp.ClientSession) {
			defer wg.Done()
			defer cs.Close()
			for {
				select {
				case <-stop:
					return
				default:
				}
				res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "pay", Arguments: map[string]any{"amount": 5}})
				if err != nil || res.IsError {
					mcpErrs.Add(1)
					continue
				}
				acked.Add(1)
				if failedOver.Load() {
					lateOK[w].Add(1)
				}
			}
		}(w, cs)
	}
	// /invoke: the Go SDK, one token per worker, used again and again.
	for w := 0; w < 4; w++ {
		c, err := client.New(client.Options{Endpoint: lb.URL, APIKey: agentKey, UserID: "ha@example.com", AgentID: "loader"})
		if err != nil {
			t.Fatal(err)
		}
		params := map[string]any{"amount": 5}
		plan, err := c.CapturePlan("pay", []intent.Step{{Action: "pay", MCP: "payments", Params: params}})
		if err != nil {
			t.Fatal(err)
		}
		tok, err := c.GetIntentToken(ctx, plan, client.Validity(5*time.Minute))
		if err != nil {
			t.Fatalf("token through the balancer: %v", err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := c.Invoke(ctx, "payments", "pay", tok, params); err != nil {
					invokeErrs.Add(1)
					time.Sleep(2 * time.Millisecond)
					continue
				}
				acked.Add(1)
			}
		}()
	}

	time.Sleep(1 * time.Second)
	// SIGKILL replica b, and take it out of the balancer a moment later,
	// as a health check would.
	reps[1].kill()
	killedAt := acked.Load()
	time.Sleep(300 * time.Millisecond)
	rr.set(reps[0].url, reps[2].url)
	failedOver.Store(true)
	time.Sleep(700 * time.Millisecond)
	// Restart replica c (a rolling restart): out, stopped, started, in.
	rr.set(reps[0].url)
	reps[2].stop(t)
	reps[2] = start("c")
	rr.set(reps[0].url, reps[2].url)
	time.Sleep(1 * time.Second)
	close(stop)
	wg.Wait()

	// Revocation reaches every live replica within a second.
	victim := reps[0].createAgentKey(t, adminKey)
	for _, g := range []*gatewayProc{reps[0], reps[2]} {
		if code := healthStatus(g.url, victim); code != 200 {
			t.Fatalf("the new key on %s: %d", g.url, code)
		}
	}
	id, _, _ := store.ParseAPIKey(victim)
	req, _ := http.NewRequest("DELETE", reps[0].url+"/v1/keys/"+id, nil)
	req.Header.Set("Authorization", "Bearer "+adminKey)
	revokedAt := time.Now()
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("revoking: %v %v", err, resp)
	}
	resp.Body.Close()
	var worst time.Duration
	for _, g := range []*gatewayProc{reps[0], reps[2]} {
		for healthStatus(g.url, victim) != 401 {
			if time.Since(revokedAt) > 5*time.Second {
				t.Fatalf("%s still accepts the revoked key after 5s", g.url)
			}
			time.Sleep(2 * time.Millisecond)
		}
		if d := time.Since(revokedAt); d > worst {
			worst = d
		}
	}
	if worst > time.Second {
		t.Errorf("the revocation took %v to reach every replica, want under 1s", worst)
	}

	for w := range lateOK {
		if lateOK[w].Load() == 0 {
			t.Errorf("MCP session %d made no call after the failover: sealed sessions must carry on on the other replicas", w)
		}
	}
	for _, g := range []*gatewayProc{reps[0], reps[2]} {
		g.stop(t)
	}
	st, err := store.Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	t.Logf("HA drill: %d calls acknowledged (%d before the SIGKILL), %d MCP and %d /invoke errors during the failover, %d requests the balancer could not place; revocation reached every replica in %v",
		acked.Load(), killedAt, mcpErrs.Load(), invokeErrs.Load(), rr.failed.Load(), worst.Round(time.Millisecond))
	checkAudited(t, st, execs.Load(), acked.Load())
}

func healthStatus(base, key string) int {
	req, _ := http.NewRequest("GET", base+"/health", nil)
	req.Header.Set("X-API-Key", key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// headerTransport adds fixed headers to every request.
type headerTransport map[string]string

func (h headerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	for k, v := range h {
		r.Header.Set(k, v)
	}
	return http.DefaultTransport.RoundTrip(r)
}
