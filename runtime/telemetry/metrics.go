package telemetry

import (
	"net/http"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Other is the label value that stands for anything outside a bounded set:
// a tool that is not in the active catalogue, a server that is not in the
// active bundle. Labels never carry a user, an argument or any other value
// a caller chooses freely.
const Other = "other"

// Metrics holds the gateway's Prometheus metrics in their own registry.
// Its methods are safe for concurrent use and cheap (a map read and an
// atomic add). docs/operations.md lists every metric.
type Metrics struct {
	reg  *prometheus.Registry
	head atomic.Int64 // the highest audit sequence seen (AuditHead)

	requests       *prometheus.CounterVec
	toolCalls      *prometheus.CounterVec
	added          *prometheus.HistogramVec
	policyDecision prometheus.Histogram
	auditCommit    *prometheus.HistogramVec
	upstreamCall   *prometheus.HistogramVec
	tokens         *prometheus.CounterVec
	auditHead      prometheus.Gauge

	// The children of the vectors counted on every call, resolved once
	// (children.go).
	requestsBy     children[[2]string, prometheus.Counter]
	toolCallsBy    children[[4]string, prometheus.Counter]
	addedBy        children[string, prometheus.Observer]
	auditCommitBy  children[string, prometheus.Observer]
	upstreamCallBy children[[2]string, prometheus.Observer]

	// The audit stream (stream.go).
	sinkAcked   prometheus.Gauge
	sinkLag     prometheus.Gauge
	sinkLagAge  prometheus.Gauge
	sinkErrors  prometheus.Counter
	sinkRecords prometheus.Counter
}

// Latency buckets, in seconds: the gateway's own work is sub-millisecond
// to a few milliseconds; upstream calls run to the call timeout.
var (
	fastBuckets     = []float64{.00005, .0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25}
	upstreamBuckets = []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60}
)

// NewMetrics creates the metrics, registered with the Go runtime and
// process collectors in a new registry.
func NewMetrics() *Metrics {
	m := &Metrics{reg: prometheus.NewRegistry()}
	m.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "armoriq_http_requests_total",
		Help: "HTTP requests by route (invoke, mcp, token, register, admin, probe, other) and status code class.",
	}, []string{"route", "code"})
	m.toolCalls = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "armoriq_tool_calls_total",
		Help: "Tool calls through /invoke and /mcp by final decision (allowed, blocked, held, failed); server and tool are \"other\" outside the active catalogue.",
	}, []string{"route", "server", "tool", "decision"})
	m.added = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "armoriq_added_latency_seconds",
		Help:    "Time the gateway adds to a request: its whole handling less the upstream call.",
		Buckets: fastBuckets,
	}, []string{"route"})
	m.policyDecision = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "armoriq_policy_decision_seconds",
		Help:    "Time of one policy decision.",
		Buckets: fastBuckets,
	})
	m.auditCommit = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "armoriq_audit_commit_seconds",
		Help:    "Time to commit one audit record, by phase (decision, request, outcome).",
		Buckets: fastBuckets,
	}, []string{"phase"})
	m.upstreamCall = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "armoriq_upstream_call_seconds",
		Help:    "Time of one call to an upstream MCP server through its adapter, by server and result (ok, error).",
		Buckets: upstreamBuckets,
	}, []string{"server", "result"})
	m.tokens = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "armoriq_tokens_issued_total",
		Help: "Intent token requests by result (issued, denied: refused by policy or a check, error: the gateway failed).",
	}, []string{"result"})
	m.auditHead = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "armoriq_audit_chain_length",
		Help: "The sequence number of the newest audit record this replica committed or streamed: the chain's length as it last saw it.",
	})
	m.sinkAcked = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "armoriq_audit_stream_acked_sequence",
		Help: "The sequence number of the last audit record the audit sink acknowledged.",
	})
	m.sinkLag = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "armoriq_audit_stream_lag_records",
		Help: "Committed audit records the audit sink has not acknowledged yet.",
	})
	m.sinkLagAge = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "armoriq_audit_stream_lag_seconds",
		Help: "Age of the oldest committed audit record the audit sink has not acknowledged (0 when it is caught up).",
	})
	m.sinkErrors = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "armoriq_audit_stream_errors_total",
		Help: "Failed attempts to read or deliver audit records to the audit sink (each is retried).",
	})
	m.sinkRecords = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "armoriq_audit_stream_records_total",
		Help: "Audit records delivered to the audit sink (a record delivered again after a failure counts again).",
	})
	m.reg.MustRegister(m.requests, m.toolCalls, m.added, m.policyDecision, m.auditCommit, m.upstreamCall,
		m.tokens, m.auditHead, m.sinkAcked, m.sinkLag, m.sinkLagAge, m.sinkErrors, m.sinkRecords,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Register adds a collector of the caller's (state read at scrape time).
func (m *Metrics) Register(c prometheus.Collector) error { return m.reg.Register(c) }

// Registry returns the registry, for tests and for embedding.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Handler serves the metrics in the Prometheus text (or OpenMetrics)
// format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// Request counts one HTTP request on route with status code.
func (m *Metrics) Request(route string, code int) {
	k := [2]string{route, codeClass(code)}
	c, ok := m.requestsBy.get(k)
	if !ok {
		c = m.requests.WithLabelValues(route, k[1])
		m.requestsBy.add(k, c)
	}
	c.Inc()
}

// ToolCall counts one tool call's final decision. server and tool must
// already be bounded (Other outside the active catalogue).
func (m *Metrics) ToolCall(route, server, tool, decision string) {
	k := [4]string{route, server, tool, decision}
	c, ok := m.toolCallsBy.get(k)
	if !ok {
		c = m.toolCalls.WithLabelValues(route, server, tool, decision)
		m.toolCallsBy.add(k, c)
	}
	c.Inc()
}

// AddedLatency observes the time the gateway added to a request on route.
func (m *Metrics) AddedLatency(route string, d time.Duration) {
	o, ok := m.addedBy.get(route)
	if !ok {
		o = m.added.WithLabelValues(route)
		m.addedBy.add(route, o)
	}
	o.Observe(d.Seconds())
}

// PolicyDecision observes one policy decision's time.
func (m *Metrics) PolicyDecision(d time.Duration) { m.policyDecision.Observe(d.Seconds()) }

// AuditCommit observes one audit commit of phase ("" counts as decision)
// and notes the chain's new head.
func (m *Metrics) AuditCommit(phase string, d time.Duration, seq int64) {
	if phase == "" {
		phase = "decision"
	}
	o, ok := m.auditCommitBy.get(phase)
	if !ok {
		o = m.auditCommit.WithLabelValues(phase)
		m.auditCommitBy.add(phase, o)
	}
	o.Observe(d.Seconds())
	m.AuditHead(seq)
}

// AuditHead notes that the chain has at least seq records.
func (m *Metrics) AuditHead(seq int64) {
	for {
		h := m.head.Load()
		if seq <= h {
			return
		}
		if m.head.CompareAndSwap(h, seq) {
			m.auditHead.Set(float64(seq))
			return
		}
	}
}

// UpstreamCall observes one upstream call on server (bounded by the
// caller) that failed or not.
func (m *Metrics) UpstreamCall(server string, failed bool, d time.Duration) {
	res := "ok"
	if failed {
		res = "error"
	}
	k := [2]string{server, res}
	o, ok := m.upstreamCallBy.get(k)
	if !ok {
		o = m.upstreamCall.WithLabelValues(server, res)
		m.upstreamCallBy.add(k, o)
	}
	o.Observe(d.Seconds())
}

// TokenRequest counts one intent token request answered with status code.
func (m *Metrics) TokenRequest(code int) {
	res := "issued"
	switch {
	case code >= 500:
		res = "error"
	case code >= 300:
		res = "denied"
	}
	m.tokens.WithLabelValues(res).Inc()
}

func codeClass(code int) string {
	switch {
	case code >= 500:
		return "5xx"
	case code >= 400:
		return "4xx"
	case code >= 300:
		return "3xx"
	default:
		return "2xx"
	}
}
