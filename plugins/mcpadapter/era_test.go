package mcpadapter

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/armoriq/controlplane/plugins"
)

// eraServer is a go-sdk server whose tool "era" says which era served the
// request: the protocol version in its _meta (2026-07-28), or "handshake"
// when there is none (the initialize handshake).
func eraServer() *mcp.Server {
	srv := mcp.NewServer(&mcp.Implementation{Name: "era", Version: "1"}, nil)
	mcp.AddTool(srv, &mcp.Tool{Name: "era", Description: "the era of the request"}, func(ctx context.Context, req *mcp.CallToolRequest, _ struct{}) (*mcp.CallToolResult, any, error) {
		v, _ := req.Params.Meta[plugins.MetaProtocolVersion].(string)
		if v == "" {
			v = "handshake"
		}
		return text(v), nil, nil
	})
	return srv
}

// eraUpstream is a real go-sdk server (stateless, both protocol eras) whose
// tool "era" says which era served the request: the protocol version in
// its _meta (2026-07-28), or "handshake" when there is none (the
// initialize handshake). With refuse set it answers every initialize
// request with a JSON-RPC error, as a server of 2026-07-28 only would;
// inits counts the initialize requests it saw.
func eraUpstream(t *testing.T, refuse bool) (url string, inits *atomic.Int64) {
	srv := eraServer()
	inits = new(atomic.Int64)
	ts := httptest.NewServer(intercepting(srv, func(w http.ResponseWriter, method string, id json.RawMessage) bool {
		if method != "initialize" {
			return false
		}
		inits.Add(1)
		if !refuse {
			return false
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		_, _ = w.Write([]byte(`{"jsonrpc":"2.0","id":` + string(id) + `,"error":{"code":-32022,"message":"unsupported protocol version","data":{"supported":["2026-07-28"]}}}`))
		return true
	}))
	t.Cleanup(ts.Close)
	return ts.URL + "/", inits
}

// intercepting serves srv statelessly (both protocol eras), but for the
// requests answer answers itself (it reports true), given their method
// and id.
func intercepting(srv *mcp.Server, answer func(w http.ResponseWriter, method string, id json.RawMessage) bool) http.Handler {
	h := mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return srv }, &mcp.StreamableHTTPOptions{Stateless: true})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var m struct {
			ID     json.RawMessage `json:"id"`
			Method string          `json:"method"`
		}
		_ = json.Unmarshal(body, &m)
		if answer(w, m.Method, m.ID) {
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		h.ServeHTTP(w, r)
	})
}

// eraOf calls the era tool as the host would for a client of that era and
// returns what the upstream saw and the version the adapter reported.
func eraOf(t *testing.T, a *Adapter, legacy bool) (seen, reported string) {
	t.Helper()
	pv := plugins.FirstStatelessVersion
	if legacy {
		pv = plugins.LegacyVersion
	}
	call := rawCall(t, "era", pv, "")
	call.Params, _ = plugins.AppendToolCallParams(nil, "era", json.RawMessage(`{}`), plugins.UpstreamMeta(nil, pv), nil, "")
	call.Legacy = legacy
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := a.CallRaw(ctx, call, nil)
	if err != nil {
		t.Fatalf("legacy=%v: %v", legacy, err)
	}
	var r struct {
		Content []struct {
			Text string `json:"text"`
		} `json:"content"`
	}
	if err := json.Unmarshal(res.Result, &r); err != nil || len(r.Content) != 1 {
		t.Fatalf("legacy=%v: result %s (%v)", legacy, res.Result, err)
	}
	if res.Path != plugins.PathRaw {
		t.Errorf("legacy=%v: path %q, want raw", legacy, res.Path)
	}
	return r.Content[0].Text, res.ProtocolVersion
}

// TestRawLegacyCallsKeepTheirEra: a legacy call (RawCall.Legacy) goes on a
// session of the initialize handshake, beside the adapter's 2026-07-28
// session, which the other calls keep; the second session is opened once.
func TestRawLegacyCallsKeepTheirEra(t *testing.T) {
	url, inits := eraUpstream(t, false)
	a := configured(t, url)
	if pv := protocolVersion(a.currentSession()); pv != plugins.FirstStatelessVersion {
		t.Fatalf("the adapter's session speaks %s, want %s", pv, plugins.FirstStatelessVersion)
	}
	for i := range 3 {
		if seen, pv := eraOf(t, a, true); seen != "handshake" || pv != plugins.LegacyVersion {
			t.Errorf("legacy call %d: upstream saw %q, adapter reported %q; want handshake, %s", i, seen, pv, plugins.LegacyVersion)
		}
		if seen, pv := eraOf(t, a, false); seen != plugins.FirstStatelessVersion || pv != plugins.FirstStatelessVersion {
			t.Errorf("2026-07-28 call %d: upstream saw %q, adapter reported %q; want %s twice", i, seen, pv, plugins.FirstStatelessVersion)
		}
	}
	if n := inits.Load(); n != 1 {
		t.Errorf("the upstream saw %d initialize requests, want 1 (one legacy session, kept)", n)
	}

	// The legacy session is closed with the adapter.
	a.mu.Lock()
	legacy := a.legacy
	a.mu.Unlock()
	if legacy == nil {
		t.Fatal("no legacy session kept")
	}
	a.Close()
	done := make(chan error, 1)
	go func() { done <- legacy.Wait() }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the legacy session outlived Close")
	}
}

// TestRawLegacySlowHandshake: while the upstream takes its time answering
// the handshake of the legacy session, the adapter's other calls are
// served, legacy ones on its 2026-07-28 session; the call that opens it
// gets it once the upstream answers.
func TestRawLegacySlowHandshake(t *testing.T) {
	srv := eraServer()
	entered, release := make(chan struct{}, 1), make(chan struct{})
	ts := httptest.NewServer(intercepting(srv, func(w http.ResponseWriter, method string, id json.RawMessage) bool {
		if method == "initialize" {
			entered <- struct{}{}
			<-release
		}
		return false
	}))
	defer ts.Close()
	defer close(release)
	a := configured(t, ts.URL+"/")

	type answer struct{ seen, pv string }
	first := make(chan answer, 1)
	go func() {
		seen, pv := eraOf(t, a, true)
		first <- answer{seen, pv}
	}()
	<-entered // the legacy session's handshake is under way, and stuck
	if seen, pv := eraOf(t, a, false); seen != plugins.FirstStatelessVersion || pv != plugins.FirstStatelessVersion {
		t.Errorf("a 2026-07-28 call during the handshake: %q at %q", seen, pv)
	}
	if seen, pv := eraOf(t, a, true); seen != plugins.FirstStatelessVersion || pv != plugins.FirstStatelessVersion {
		t.Errorf("another legacy call during the handshake: %q at %q, want it on the 2026-07-28 session", seen, pv)
	}
	release <- struct{}{}
	if got := <-first; got.seen != "handshake" || got.pv != plugins.LegacyVersion {
		t.Errorf("the call that opened the legacy session: %q at %q, want handshake at %s", got.seen, got.pv, plugins.LegacyVersion)
	}
}

// TestRawLegacyFallsBack: an upstream that refuses the initialize
// handshake serves legacy calls on the adapter's 2026-07-28 session, their
// _meta rebuilt for it, and is not asked again at every call.
func TestRawLegacyFallsBack(t *testing.T) {
	url, inits := eraUpstream(t, true)
	a := configured(t, url)
	for i := range 3 {
		if seen, pv := eraOf(t, a, true); seen != plugins.FirstStatelessVersion || pv != plugins.FirstStatelessVersion {
			t.Errorf("legacy call %d: upstream saw %q, adapter reported %q; want %s twice", i, seen, pv, plugins.FirstStatelessVersion)
		}
	}
	if n := inits.Load(); n != 1 {
		t.Errorf("the upstream saw %d initialize requests, want 1 (refused, then not asked for %s)", n, legacyRetryAfter)
	}
}
