package gateway

import (
	"net/http"
	"sync/atomic"
	"time"

	"github.com/armoriq/controlplane/runtime/store"
)

// serverState is one upstream server's condition for GET /v1/bundle/status.
type serverState struct {
	State     string `json:"state"`                // starting, up, down, failed
	LastError string `json:"last_error,omitempty"` // why it last went down
	Restarts  int    `json:"restarts,omitempty"`
	Contract  int    `json:"contract,omitempty"` // adapter contract version, while up
}

// serverStates reports the state of every configured upstream server, by
// server id, for the bundle status handler.
func (s *Server) serverStates() map[string]serverState {
	sts := s.cfg.Upstream.Status()
	out := make(map[string]serverState, len(sts))
	for _, st := range sts {
		out[st.ID] = serverState{State: st.State, LastError: st.LastError, Restarts: st.Restarts, Contract: st.Contract}
	}
	return out
}

// handleMetrics serves the metrics (client_golang; docs/operations.md
// lists them) to viewer keys.
func (s *Server) handleMetrics(w http.ResponseWriter, r *http.Request) error {
	s.metrics.Handler().ServeHTTP(w, r)
	return nil
}

// MetricsHandler serves the metrics without authentication, for the
// separate admin listener (armoriq gateway --admin-addr); the main listener
// serves them at GET /metrics to viewer keys.
func (s *Server) MetricsHandler() http.Handler { return s.metrics.Handler() }

// mcpMetrics counts the MCP endpoint's traffic under the metric names it
// had before client_golang (stateCollector reports them).
type mcpMetrics struct {
	requests atomic.Uint64
	calls    [4]atomic.Uint64 // allowed, blocked, held, failed
	nanos    atomic.Uint64    // total tools/call time
	fast     atomic.Uint64    // tools/call answered by the fast path
}

func newMCPMetrics() *mcpMetrics { return &mcpMetrics{} }

var decisions = [4]store.Decision{store.Allowed, store.Blocked, store.Held, store.Failed}

func (m *mcpMetrics) call(d store.Decision, took time.Duration) {
	for i, x := range decisions {
		if x == d {
			m.calls[i].Add(1)
		}
	}
	m.nanos.Add(uint64(took))
}
