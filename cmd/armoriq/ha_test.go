package main

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/armoriq/controlplane/runtime/client"
	"github.com/armoriq/controlplane/runtime/intent"
	"github.com/armoriq/controlplane/runtime/store"
	"github.com/armoriq/controlplane/runtime/store/storetest"
)

// roundRobin is the drill's load balancer: each request goes to the next
// replica in turn; a replica that refuses connections is skipped until it
// is replaced.
type roundRobin struct {
	mu       sync.Mutex
	backends []*url.URL
	down     []bool
	next     int
	proxy    *httputil.ReverseProxy
}

type backendKey struct{}

func newRoundRobin(urls []string) *roundRobin {
	rr := &roundRobin{}
	for _, u := range urls {
		p, _ := url.Parse(u)
		rr.backends = append(rr.backends, p)
		rr.down = append(rr.down, false)
	}
	rr.proxy = &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(rr.backends[pr.In.Context().Value(backendKey{}).(int)])
		},
		FlushInterval: -1,
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			rr.mu.Lock()
			rr.down[r.Context().Value(backendKey{}).(int)] = true
			rr.mu.Unlock()
			http.Error(w, "replica unavailable", http.StatusBadGateway)
		},
	}
	return rr
}

func (rr *roundRobin) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rr.mu.Lock()
	i := -1
	for range rr.backends {
		c := rr.next % len(rr.backends)
		rr.next++
		if !rr.down[c] {
			i = c
			break
		}
	}
	rr.mu.Unlock()
	if i < 0 {
		http.Error(w, "no replica", http.StatusBadGateway)
		return
	}
	rr.proxy.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), backendKey{}, i)))
}

func (rr *roundRobin) replace(i int, u string) {
	p, _ := url.Parse(u)
	rr.mu.Lock()
	rr.backends[i], rr.down[i] = p, false
	rr.mu.Unlock()
}

// drillCounts are what the load saw.
type drillCounts struct {
	mcpAcked, invokeAcked, failed atomic.Int64
	sessionLost                   atomic.Int64 // a legacy session refused by a replica
}

// mcpSessionLoad opens a legacy (2025-06-18) MCP session through the
// balancer and calls pay on it until stop closes; every call may land on
// another replica. afterKill counts the calls acknowledged once
// killed is closed.
func mcpSessionLoad(t *testing.T, base, key string, c *drillCounts, stop, killed <-chan struct{}, afterKill *atomic.Int64) {
	hc := &http.Client{Timeout: 5 * time.Second}
	post := func(session, body string) (*http.Response, error) {
		req, _ := http.NewRequest("POST", base+"/mcp", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+key)
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		req.Header.Set("Mcp-Protocol-Version", "2025-06-18")
		if session != "" {
			req.Header.Set("Mcp-Session-Id", session)
		}
		return hc.Do(req)
	}
	var session string
	for session == "" {
		resp, err := post("", `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"drill","version":"1"}}}`)
		if err != nil {
			t.Errorf("initialize: %v", err)
			return
		}
		resp.Body.Close()
		session = resp.Header.Get("Mcp-Session-Id")
	}
	if resp, err := post(session, `{"jsonrpc":"2.0","method":"notifications/initialized"}`); err == nil {
		resp.Body.Close()
	}
	for id := 2; ; id++ {
		select {
		case <-stop:
			return
		default:
		}
		resp, err := post(session, fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":"pay","arguments":{"amount":5}}}`, id))
		if err != nil {
			c.failed.Add(1)
			continue
		}
		ok := false
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			if strings.Contains(sc.Text(), `"paid 5"`) {
				ok = true
			}
		}
		resp.Body.Close()
		switch {
		case ok:
			c.mcpAcked.Add(1)
			select {
			case <-killed:
				afterKill.Add(1)
			default:
			}
		case resp.StatusCode == http.StatusNotFound:
			c.sessionLost.Add(1) // a replica did not know the session
		default:
			c.failed.Add(1)
		}
	}
}

// invokeLoad calls pay through /invoke with the Go SDK until stop closes.
func invokeLoad(t *testing.T, base, key string, c *drillCounts, stop <-chan struct{}) {
	cl, err := client.New(client.Options{APIKey: key, UserID: "loader", AgentID: "loader", Endpoint: base,
		Getenv: func(string) string { return "" }, HomeDir: t.TempDir(), HTTPClient: &http.Client{Timeout: 5 * time.Second}})
	if err != nil {
		t.Error(err)
		return
	}
	ctx := context.Background()
	params := map[string]any{"amount": 5.0}
	plan, err := cl.CapturePlan("pay", []intent.Step{{Action: "pay", MCP: "payments", Params: params}})
	if err != nil {
		t.Error(err)
		return
	}
	var tok *client.IntentToken
	for tok == nil {
		if tok, err = cl.GetIntentToken(ctx, plan); err != nil {
			select {
			case <-stop:
				return
			default:
			}
		}
	}
	for {
		select {
		case <-stop:
			return
		default:
		}
		if _, err := cl.Invoke(ctx, "payments", "pay", tok, params); err != nil {
			c.failed.Add(1)
			continue
		}
		c.invokeAcked.Add(1)
	}
}

// TestHADrill runs three gateway processes on one PostgreSQL (a fresh
// schema) behind a round-robin balancer, under load through /mcp (legacy
// sessions) and /invoke (the Go SDK), against a real MCP server. One
// replica is killed with SIGKILL, another restarted. Then: every call the
// upstream executed and every call acknowledged has a committed request
// record, the legacy sessions went on through the other replicas, a
// revocation reached every replica in under a second, and the audit chain
// verifies. The figures are logged (go test -run TestHADrill -v).
func TestHADrill(t *testing.T) {
	dsn := storetest.PostgresDSN(t)
	bin := armoriqBinary(t)
	upURL, execs := countingUpstream(t)
	root := t.TempDir()
	cfg := filepath.Join(root, "armoriq.yaml")
	os.WriteFile(cfg, []byte(fmt.Sprintf(crashConfig, upURL)), 0o644)
	adminKey, _, _ := store.GenerateAPIKey()
	adminFile := filepath.Join(root, "admin.key")
	os.WriteFile(adminFile, []byte(adminKey+"\n"), 0o600)
	args := []string{"--config", cfg, "--local-key", filepath.Join(root, "local-signing.key"), "--store", dsn, "--admin-key-file", adminFile, "--sqlite-sync", "normal"}

	replicas := make([]*gatewayProc, 3)
	urls := make([]string, 3)
	for i := range replicas {
		replicas[i] = startGateway(t, bin, filepath.Join(root, fmt.Sprint("replica", i)), args...)
		urls[i] = replicas[i].url
	}
	rr := newRoundRobin(urls)
	lb := httptest.NewServer(rr)
	t.Cleanup(lb.Close)
	agentKey := (&gatewayProc{url: lb.URL}).createAgentKey(t, adminKey)

	// Load: 6 legacy MCP sessions and 4 SDK clients.
	var c drillCounts
	stop, killed := make(chan struct{}), make(chan struct{})
	var wg sync.WaitGroup
	const sessions = 6
	perSession := make([]atomic.Int64, sessions)
	for i := 0; i < sessions; i++ {
		wg.Add(1)
		go func() { defer wg.Done(); mcpSessionLoad(t, lb.URL, agentKey, &c, stop, killed, &perSession[i]) }()
	}
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() { defer wg.Done(); invokeLoad(t, lb.URL, agentKey, &c, stop) }()
	}
	start := time.Now()
	time.Sleep(1500 * time.Millisecond)
	replicas[0].kill() // SIGKILL, mid-load
	close(killed)
	killedAt := time.Now()
	time.Sleep(1500 * time.Millisecond)
	replicas[1].stop(t) // a rolling restart of another
	replicas[1] = startGateway(t, bin, filepath.Join(root, "replica1"), args...)
	rr.replace(1, replicas[1].url)
	time.Sleep(1500 * time.Millisecond)
	close(stop)
	wg.Wait()
	elapsed := time.Since(start)

	// A revocation on one replica reaches the others: each has the key
	// cached (it answered), then refuses it.
	victim := (&gatewayProc{url: lb.URL}).createAgentKey(t, adminKey)
	victimID, _, _ := store.ParseAPIKey(victim)
	live := []*gatewayProc{replicas[1], replicas[2]}
	health := func(g *gatewayProc) int {
		req, _ := http.NewRequest("GET", g.url+"/health", nil)
		req.Header.Set("X-API-Key", victim)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for _, g := range live {
		if code := health(g); code != 200 {
			t.Fatalf("replica %s: the new key answered %d before revocation", g.url, code)
		}
	}
	reached := make([]time.Duration, len(live))
	var rwg sync.WaitGroup
	req, _ := http.NewRequest("DELETE", replicas[2].url+"/v1/keys/"+victimID, nil)
	req.Header.Set("Authorization", "Bearer "+adminKey)
	t0 := time.Now()
	for i, g := range live {
		rwg.Add(1)
		go func() {
			defer rwg.Done()
			for time.Since(t0) < 5*time.Second {
				if health(g) == http.StatusUnauthorized {
					reached[i] = time.Since(t0)
					return
				}
				time.Sleep(time.Millisecond)
			}
			reached[i] = -1
		}()
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("revoking the key: %v %v", resp, err)
	}
	resp.Body.Close()
	rwg.Wait()
	for i, d := range reached {
		if d < 0 || d >= time.Second {
			t.Errorf("the revocation reached replica %d after %v, want under 1s", i, d)
		}
	}

	// Every executed and every acknowledged call has a committed request
	// record; the chain verifies.
	st, err := store.Open(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	acked := c.mcpAcked.Load() + c.invokeAcked.Load()
	checkAudited(t, st, execs.Load(), acked)
	rep, err := st.VerifyAudit(context.Background())
	if err != nil || !rep.OK() {
		t.Fatalf("audit verify = %+v, %v", rep, err)
	}

	// Legacy sessions went on through the other replicas after the kill.
	var after []int64
	for i := range perSession {
		n := perSession[i].Load()
		after = append(after, n)
		if n == 0 {
			t.Errorf("legacy session %d acknowledged no call after the kill", i)
		}
	}
	if n := c.sessionLost.Load(); n > 0 {
		t.Errorf("%d calls were refused for an unknown session: sealed sessions must survive a replica change", n)
	}
	sort.Slice(reached, func(i, j int) bool { return reached[i] < reached[j] })
	t.Logf("HA drill: %v of load, %d calls acknowledged (%.0f/s: %d via /mcp legacy sessions, %d via /invoke), %d failed (in flight on the killed replica or during the restart), upstream executed %d",
		elapsed.Round(time.Millisecond), acked, float64(acked)/elapsed.Seconds(), c.mcpAcked.Load(), c.invokeAcked.Load(), c.failed.Load(), execs.Load())
	t.Logf("HA drill: audit chain %d records verified, %d requests without an outcome (cut off by the SIGKILL)", rep.Records, rep.PendingOutcomes)
	t.Logf("HA drill: legacy sessions' calls acknowledged after the kill %v (killed at +%v); revocation reached the other replicas after %v", after, killedAt.Sub(start).Round(time.Millisecond), reached)
}
