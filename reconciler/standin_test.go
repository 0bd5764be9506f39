package reconciler

import (
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/armoriq/controlplane/compiler/bundle"
)

// standinGateway is a STAND-IN for the real gateway (runtime.NewServer),
// implementing only PUT /v1/bundle and GET /v1/bundle/status as docs/api.md
// describes them: bundle.Verify against pinned keys, rollback refusal by
// sequence, the documented error shapes. Unit tests of the loop use it so
// they can inject failures; the end-to-end test runs real gateways.
type standinGateway struct {
	*httptest.Server
	keys map[string]ed25519.PublicKey

	mu        sync.Mutex
	revision  string
	sequence  int64
	activated time.Time
	lastErr   string
	pushes    int
	statuses  int // GET /v1/bundle/status requests
	failNext  int // answer the next n requests with 503
	failPut   int // answer the next n pushes with 503
	pushedAt  map[string]time.Time
}

func newStandinGateway(t *testing.T, keys map[string]ed25519.PublicKey) *standinGateway {
	g := &standinGateway{keys: keys, pushedAt: map[string]time.Time{}}
	g.Server = httptest.NewServer(http.HandlerFunc(g.serve))
	t.Cleanup(g.Close)
	return g
}

func (g *standinGateway) serve(w http.ResponseWriter, r *http.Request) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.failNext > 0 {
		g.failNext--
		writeAPIError(w, 503, "unavailable", "store unreachable")
		return
	}
	switch {
	case r.Method == http.MethodPut && r.URL.Path == "/v1/bundle" && g.failPut > 0:
		g.failPut--
		writeAPIError(w, 503, "unavailable", "store unreachable")
	case r.Method == http.MethodPut && r.URL.Path == "/v1/bundle":
		g.pushes++
		data, _ := io.ReadAll(r.Body)
		b, err := bundle.Verify(data, g.keys)
		if err != nil {
			g.lastErr = err.Error()
			writeAPIError(w, 422, "verification_failed", err.Error())
			return
		}
		m := b.Manifest
		if m.Revision == g.revision {
			json.NewEncoder(w).Encode(map[string]any{"revision": m.Revision, "sequence": m.Sequence, "changed": false})
			return
		}
		if m.Sequence < g.sequence && r.URL.Query().Get("force") != "rollback" {
			msg := fmt.Sprintf("bundle revision %s (sequence %d) is older than the active revision %s (sequence %d)", m.Revision, m.Sequence, g.revision, g.sequence)
			g.lastErr = msg
			writeAPIError(w, 409, "stale_bundle", msg)
			return
		}
		prev := g.revision
		g.revision, g.sequence, g.activated = m.Revision, m.Sequence, time.Now().UTC()
		g.pushedAt[m.Revision] = time.Now()
		json.NewEncoder(w).Encode(map[string]any{"revision": m.Revision, "sequence": m.Sequence, "activated_at": g.activated, "previous_revision": prev, "changed": true})
	case r.Method == http.MethodGet && r.URL.Path == "/v1/bundle/status":
		g.statuses++
		json.NewEncoder(w).Encode(map[string]any{"revision": g.revision, "sequence": g.sequence, "last_error": g.lastErr})
	default:
		writeAPIError(w, 404, "not_found", "no such route")
	}
}

func writeAPIError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]any{"error": map[string]string{"code": code, "message": msg}})
}

// reset forgets the active bundle, like a gateway restarted on an empty store.
func (g *standinGateway) reset() {
	g.mu.Lock()
	g.revision, g.sequence = "", 0
	g.mu.Unlock()
}

func (g *standinGateway) state() (rev string, pushes int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.revision, g.pushes
}

func (g *standinGateway) fail(n int) {
	g.mu.Lock()
	g.failNext = n
	g.mu.Unlock()
}

func (g *standinGateway) statusReads() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.statuses
}

func (g *standinGateway) failPuts(n int) {
	g.mu.Lock()
	g.failPut = n
	g.mu.Unlock()
}
