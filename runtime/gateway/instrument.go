package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/armoriq/controlplane/compiler/bundle"
	"github.com/armoriq/controlplane/runtime/store"
	"github.com/armoriq/controlplane/runtime/telemetry"
	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

// The route label of a request: a fixed set, never the raw path.
const (
	routeInvoke   = "invoke"
	routeMCP      = "mcp"
	routeToken    = "token"
	routeRegister = "register"
	routeAdmin    = "admin"
	routeProbe    = "probe"
	routeOther    = "other"
)

// routeOf names the route of a request from its path.
func routeOf(path string) string {
	switch {
	case path == "/invoke":
		return routeInvoke
	case path == "/mcp":
		return routeMCP
	case path == "/iap/sdk/token" || path == "/v1/tokens":
		return routeToken
	case path == "/iap/sdk/register":
		return routeRegister
	case path == "/health" || path == "/healthz" || path == "/readyz":
		return routeProbe
	case strings.HasPrefix(path, "/v1/") || path == "/metrics":
		return routeAdmin
	}
	return routeOther
}

// reqTiming follows one request for the metrics: its route, and the time
// spent in upstream calls, which the added-latency histogram leaves out.
type reqTiming struct {
	route    string
	upstream atomic.Int64 // nanoseconds
}

type reqTimingKey struct{}

func timingFrom(ctx context.Context) *reqTiming {
	t, _ := ctx.Value(reqTimingKey{}).(*reqTiming)
	return t
}

// instrument counts every request by route and status class, and observes
// the latency the gateway adds on the call routes.
func (s *Server) instrument(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		// The timing and the status writer live as long as the request:
		// one allocation for both.
		st := &struct {
			rt reqTiming
			sw statusWriter
		}{reqTiming{route: routeOf(r.URL.Path)}, statusWriter{ResponseWriter: w, code: http.StatusOK}}
		rt, sw := &st.rt, &st.sw
		ctx := context.WithValue(r.Context(), reqTimingKey{}, rt)
		switch rt.route {
		case routeInvoke, routeMCP, routeToken:
			var span trace.Span
			ctx, span = s.startServerSpan(ctx, r, rt.route)
			defer func() { endServerSpan(span, sw.code) }()
		}
		next.ServeHTTP(sw, r.WithContext(ctx))
		m := s.metrics
		m.Request(rt.route, sw.code)
		switch rt.route {
		case routeInvoke, routeMCP, routeToken:
			if r.Method == http.MethodPost {
				m.AddedLatency(rt.route, time.Since(start)-time.Duration(rt.upstream.Load()))
			}
		}
		if rt.route == routeToken {
			m.TokenRequest(sw.code)
		}
	})
}

// statusWriter remembers the status code written. It passes Flush and
// Unwrap through, which the MCP endpoint's event streams need.
type statusWriter struct {
	http.ResponseWriter
	code  int
	wrote bool
}

func (w *statusWriter) WriteHeader(code int) {
	if !w.wrote {
		w.code, w.wrote = code, true
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	w.wrote = true
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Flush() {
	w.wrote = true
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// maxToolLabels bounds the tools of one server that get their own label.
const maxToolLabels = 512

// toolLabels bounds the server and tool labels to the active catalogue:
// servers of the active bundle, and tools an upstream listed or a rule of
// the active bundle names exactly. Anything else is telemetry.Other, so a
// caller inventing tool names cannot grow the metrics.
type toolLabels struct {
	mu     sync.RWMutex
	ab     *activeBundle
	policy map[string]bool            // "server/tool" named exactly by a rule
	listed map[string]map[string]bool // server → tools it listed
}

func (tl *toolLabels) labels(ab *activeBundle, server, tool string) (string, string) {
	if ab == nil {
		return telemetry.Other, telemetry.Other
	}
	if _, ok := ab.servers[server]; !ok {
		return telemetry.Other, telemetry.Other
	}
	tl.mu.RLock()
	if tl.ab != ab {
		tl.mu.RUnlock()
		tl.mu.Lock()
		if tl.ab != ab {
			tl.ab, tl.policy = ab, exactRefs(ab.b)
		}
		tl.mu.Unlock()
		tl.mu.RLock()
	}
	ok := tl.policy[server+"/"+tool] || tl.listed[server][tool]
	tl.mu.RUnlock()
	if !ok {
		return server, telemetry.Other
	}
	return server, tool
}

// listedTools records what an upstream listed.
func (tl *toolLabels) listedTools(server string, tools []*mcp.Tool) {
	set := make(map[string]bool, len(tools))
	for _, t := range tools {
		if len(set) == maxToolLabels {
			break
		}
		set[t.Name] = true
	}
	tl.mu.Lock()
	if tl.listed == nil {
		tl.listed = make(map[string]map[string]bool)
	}
	tl.listed[server] = set
	tl.mu.Unlock()
}

// exactRefs returns the "server/tool" patterns of b's rules without globs.
func exactRefs(b *bundle.Bundle) map[string]bool {
	out := make(map[string]bool)
	for _, r := range b.Policy.Rules {
		for _, p := range r.Tools {
			if !strings.ContainsAny(p, "*?[") && strings.Contains(p, "/") {
				out[p] = true
			}
		}
	}
	return out
}

// callDone counts a call's final decision with bounded labels and puts it
// on the request's span.
func (s *Server) callDone(ctx context.Context, rec *store.AuditRecord, decision store.Decision) {
	s.traceCall(ctx, rec, decision)
	s.countCall(ctx, rec.Server, rec.Tool, string(decision))
}

// countCall counts a call's final decision with bounded labels.
func (s *Server) countCall(ctx context.Context, server, tool, decision string) {
	route := routeOther
	if t := timingFrom(ctx); t != nil {
		route = t.route
	}
	srv, tl := s.tools.labels(s.active.Load(), server, tool)
	s.metrics.ToolCall(route, srv, tl, decision)
}

// meteredUpstream times the calls to each upstream, for the upstream
// histogram and for the added latency, which leaves them out; and notes
// the tools each upstream lists, which bound the tool label.
type meteredUpstream struct {
	Upstream
	s *Server
}

func (u meteredUpstream) observe(ctx context.Context, srv bundle.Server, start time.Time, err error) {
	d := time.Since(start)
	if t := timingFrom(ctx); t != nil {
		t.upstream.Add(int64(d))
	}
	label := srv.ID
	if ab := u.s.active.Load(); ab == nil || ab.servers[srv.ID].ID == "" {
		label = telemetry.Other
	}
	u.s.metrics.UpstreamCall(label, err != nil, d)
}

// recoverCall turns a panic of an upstream call (an adapter's code in this
// process) into the call's error, so that the call ends as failed, with
// its outcome recorded after its request record, instead of taking the
// connection, or, on a goroutine of the MCP SDK, the process with it.
// The call is named by method and, for a tool, its name (joined only on a
// panic: not a string built per call).
func (u meteredUpstream) recoverCall(srv bundle.Server, method, name string, err *error) {
	p := recover()
	if p == nil {
		return
	}
	if p == http.ErrAbortHandler {
		panic(p)
	}
	what := method
	if name != "" {
		what += " " + name
	}
	u.s.log.Error("upstream call panicked", "server", srv.ID, "call", what, "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
	*err = &Error{Kind: KindInternal, Message: fmt.Sprintf("the call to MCP server %q failed inside the gateway", srv.ID), Err: fmt.Errorf("panic: %v", p)}
}

func (u meteredUpstream) CallTool(ctx context.Context, srv bundle.Server, tool string, args map[string]any) (res json.RawMessage, err error) {
	defer u.recoverCall(srv, methodToolsCall, tool, &err)
	start := time.Now()
	sctx, span := u.s.startUpstreamSpan(ctx, srv, tool)
	defer span.End()
	res, err = u.Upstream.CallTool(sctx, srv, tool, args)
	if err != nil && span.IsRecording() {
		span.SetStatus(codes.Error, "the upstream call failed")
	}
	u.observe(ctx, srv, start, err)
	return res, err
}

func (u meteredUpstream) ReadResource(ctx context.Context, srv bundle.Server, uri string) (res json.RawMessage, err error) {
	defer u.recoverCall(srv, "resources/read", "", &err)
	start := time.Now()
	res, err = u.Upstream.ReadResource(ctx, srv, uri)
	u.observe(ctx, srv, start, err)
	return res, err
}

func (u meteredUpstream) GetPrompt(ctx context.Context, srv bundle.Server, name string, args map[string]string) (res json.RawMessage, err error) {
	defer u.recoverCall(srv, "prompts/get", "", &err)
	start := time.Now()
	res, err = u.Upstream.GetPrompt(ctx, srv, name, args)
	u.observe(ctx, srv, start, err)
	return res, err
}

func (u meteredUpstream) ListTools(ctx context.Context, srv bundle.Server) ([]*mcp.Tool, error) {
	tools, err := u.Upstream.ListTools(ctx, srv)
	if err == nil {
		u.s.tools.listedTools(srv.ID, tools)
	}
	return tools, err
}

// stateCollector reports, at scrape time, what the gateway holds rather
// than counts: the upstream adapters' states, the active bundle, and the
// MCP endpoint's counters under the names they had before client_golang.
type stateCollector struct{ s *Server }

var (
	descUp       = prometheus.NewDesc("armoriq_upstream_up", "Whether the upstream MCP server's adapter is up (1) or not (0).", []string{"server", "transport"}, nil)
	descState    = prometheus.NewDesc("armoriq_upstream_state", "The upstream adapter's state: 1 for the state it is in (starting, up, down, failed).", []string{"server", "state"}, nil)
	descRestarts = prometheus.NewDesc("armoriq_upstream_restarts_total", "Adapter restarts after a crash or failed start.", []string{"server"}, nil)
	descContract = prometheus.NewDesc("armoriq_upstream_contract", "The adapter contract version the upstream's adapter speaks (0 while it is not up).", []string{"server"}, nil)
	descPath     = prometheus.NewDesc("armoriq_upstream_calls_total", "tools/call forwarded through the upstream's adapter, by the path they took in it: raw (bytes, contract 3) or sdk (its MCP client).", []string{"server", "path"}, nil)
	descBundle   = prometheus.NewDesc("armoriq_bundle_info", "The active policy bundle: always 1, its revision and sequence as labels.", []string{"revision", "sequence"}, nil)
	descBundleAt = prometheus.NewDesc("armoriq_bundle_activated_timestamp_seconds", "When the active bundle was activated on this replica.", nil, nil)
	descMCPReqs  = prometheus.NewDesc("armoriq_mcp_requests_total", "HTTP requests to /mcp.", nil, nil)
	descMCPCalls = prometheus.NewDesc("armoriq_mcp_tool_calls_total", "MCP tools/call by decision.", []string{"decision"}, nil)
	descMCPSecs  = prometheus.NewDesc("armoriq_mcp_tool_call_seconds_total", "Time spent in MCP tools/call.", nil, nil)
	descMCPFast  = prometheus.NewDesc("armoriq_mcp_fast_tool_calls_total", "MCP tools/call answered by the gateway's fast path (the others went through the MCP SDK's server).", nil, nil)

	descAuditBatches = prometheus.NewDesc("armoriq_audit_batches_total", "Batches of audit records the store's group commit wrote: each one synced write of the audit journal (SQLite) or one transaction (PostgreSQL).", nil, nil)
	descAuditRecords = prometheus.NewDesc("armoriq_audit_records_total", "Audit records in those batches (records over batches: how many records shared one sync).", nil, nil)
	descJournalWait  = prometheus.NewDesc("armoriq_audit_journal_pending_records", "Audit records durable in the journal and not yet applied to the SQLite database.", nil, nil)
)

func (c stateCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descUp, descState, descRestarts, descContract, descPath, descBundle, descBundleAt, descMCPReqs, descMCPCalls, descMCPSecs, descMCPFast, descAuditBatches, descAuditRecords, descJournalWait} {
		ch <- d
	}
}

func (c stateCollector) Collect(ch chan<- prometheus.Metric) {
	for _, st := range c.s.cfg.Upstream.Status() {
		up := 0.0
		if st.State == "up" {
			up = 1
		}
		ch <- prometheus.MustNewConstMetric(descUp, prometheus.GaugeValue, up, st.ID, st.Transport)
		for _, state := range []string{"starting", "up", "down", "failed"} {
			v := 0.0
			if st.State == state {
				v = 1
			}
			ch <- prometheus.MustNewConstMetric(descState, prometheus.GaugeValue, v, st.ID, state)
		}
		ch <- prometheus.MustNewConstMetric(descRestarts, prometheus.CounterValue, float64(st.Restarts), st.ID)
		ch <- prometheus.MustNewConstMetric(descContract, prometheus.GaugeValue, float64(st.Contract), st.ID)
		ch <- prometheus.MustNewConstMetric(descPath, prometheus.CounterValue, float64(st.RawCalls), st.ID, "raw")
		ch <- prometheus.MustNewConstMetric(descPath, prometheus.CounterValue, float64(st.SDKCalls), st.ID, "sdk")
	}
	if ab := c.s.active.Load(); ab != nil {
		ch <- prometheus.MustNewConstMetric(descBundle, prometheus.GaugeValue, 1, ab.b.Manifest.Revision, strconv.FormatInt(ab.b.Manifest.Sequence, 10))
		ch <- prometheus.MustNewConstMetric(descBundleAt, prometheus.GaugeValue, float64(ab.activatedAt.UnixNano())/1e9)
	}
	m := c.s.mcpMetrics
	ch <- prometheus.MustNewConstMetric(descMCPReqs, prometheus.CounterValue, float64(m.requests.Load()))
	for i, d := range decisions {
		ch <- prometheus.MustNewConstMetric(descMCPCalls, prometheus.CounterValue, float64(m.calls[i].Load()), string(d))
	}
	ch <- prometheus.MustNewConstMetric(descMCPSecs, prometheus.CounterValue, float64(m.nanos.Load())/1e9)
	ch <- prometheus.MustNewConstMetric(descMCPFast, prometheus.CounterValue, float64(m.fast.Load()))
	if w, ok := store.AuditWriteCounts(c.s.store); ok {
		ch <- prometheus.MustNewConstMetric(descAuditBatches, prometheus.CounterValue, float64(w.Batches))
		ch <- prometheus.MustNewConstMetric(descAuditRecords, prometheus.CounterValue, float64(w.Records))
	}
	if js, ok := store.JournalState(c.s.store); ok {
		ch <- prometheus.MustNewConstMetric(descJournalWait, prometheus.GaugeValue, float64(js.Pending))
	}
}
