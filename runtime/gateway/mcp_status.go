package gateway

import (
	"fmt"
	"net/http"
	"sort"
	"strings"
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

// handleMetrics serves a few counters in the Prometheus text format.
func (s *Server) handleMetrics(w http.ResponseWriter, r *http.Request) error {
	var b strings.Builder
	m := s.mcpMetrics
	b.WriteString("# HELP armoriq_mcp_requests_total HTTP requests to /mcp.\n# TYPE armoriq_mcp_requests_total counter\n")
	fmt.Fprintf(&b, "armoriq_mcp_requests_total %d\n", m.requests.Load())
	b.WriteString("# HELP armoriq_mcp_tool_calls_total MCP tools/call by decision.\n# TYPE armoriq_mcp_tool_calls_total counter\n")
	for i, d := range decisions {
		fmt.Fprintf(&b, "armoriq_mcp_tool_calls_total{decision=%q} %d\n", d, m.calls[i].Load())
	}
	b.WriteString("# HELP armoriq_mcp_tool_call_seconds_total Time spent in MCP tools/call.\n# TYPE armoriq_mcp_tool_call_seconds_total counter\n")
	fmt.Fprintf(&b, "armoriq_mcp_tool_call_seconds_total %g\n", float64(m.nanos.Load())/1e9)
	sts := s.cfg.Upstream.Status()
	sort.Slice(sts, func(i, j int) bool { return sts[i].ID < sts[j].ID })
	b.WriteString("# HELP armoriq_upstream_up Whether the upstream MCP server's adapter is up (1) or not (0).\n# TYPE armoriq_upstream_up gauge\n")
	for _, st := range sts {
		up := 0
		if st.State == "up" {
			up = 1
		}
		fmt.Fprintf(&b, "armoriq_upstream_up{server=%q,transport=%q} %d\n", st.ID, st.Transport, up)
	}
	b.WriteString("# HELP armoriq_upstream_restarts_total Adapter restarts after a crash or failed start.\n# TYPE armoriq_upstream_restarts_total counter\n")
	for _, st := range sts {
		fmt.Fprintf(&b, "armoriq_upstream_restarts_total{server=%q} %d\n", st.ID, st.Restarts)
	}
	b.WriteString("# HELP armoriq_upstream_contract The adapter contract version the upstream's adapter speaks (0 while it is not up).\n# TYPE armoriq_upstream_contract gauge\n")
	for _, st := range sts {
		fmt.Fprintf(&b, "armoriq_upstream_contract{server=%q} %d\n", st.ID, st.Contract)
	}
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	_, err := w.Write([]byte(b.String()))
	return err
}

// MetricsHandler serves the metrics without authentication, for the
// separate admin listener (armoriq gateway --admin-addr); the main listener
// serves them at GET /metrics to viewer keys.
func (s *Server) MetricsHandler() http.Handler { return s.handle(s.handleMetrics) }

// mcpMetrics counts the MCP endpoint's traffic for GET /metrics.
type mcpMetrics struct {
	requests atomic.Uint64
	calls    [4]atomic.Uint64 // allowed, blocked, held, failed
	nanos    atomic.Uint64    // total tools/call time
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
