package loadbench

import (
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"
)

func msList(v ...int) []time.Duration {
	out := make([]time.Duration, len(v))
	for i, x := range v {
		out[i] = time.Duration(x) * time.Millisecond
	}
	return out
}

func TestPercentile(t *testing.T) {
	hundred := make([]time.Duration, 100)
	for i := range hundred {
		hundred[i] = time.Duration(i+1) * time.Millisecond // 1..100 ms
	}
	for _, tc := range []struct {
		name   string
		sorted []time.Duration
		p      float64
		want   time.Duration
	}{
		{"no values", nil, 50, 0},
		{"one value, p50", msList(7), 50, 7 * time.Millisecond},
		{"one value, p99", msList(7), 99, 7 * time.Millisecond},
		{"two values, p50 is the lower", msList(1, 9), 50, 1 * time.Millisecond},
		{"two values, p99 is the higher", msList(1, 9), 99, 9 * time.Millisecond},
		{"1..100, p50", hundred, 50, 50 * time.Millisecond},
		{"1..100, p99", hundred, 99, 99 * time.Millisecond},
		{"1..100, p100", hundred, 100, 100 * time.Millisecond},
		{"1..100, p0", hundred, 0, 1 * time.Millisecond},
		{"1..100, p99.9", hundred, 99.9, 100 * time.Millisecond},
		{"ten values, p99 is the last", msList(1, 2, 3, 4, 5, 6, 7, 8, 9, 10), 99, 10 * time.Millisecond},
		{"ten values, p50 is the fifth", msList(1, 2, 3, 4, 5, 6, 7, 8, 9, 10), 50, 5 * time.Millisecond},
		{"three values, p50 is the middle", msList(1, 2, 3), 50, 2 * time.Millisecond},
	} {
		if got := Percentile(tc.sorted, tc.p); got != tc.want {
			t.Errorf("%s: Percentile(%v, %v) = %v, want %v", tc.name, tc.sorted, tc.p, got, tc.want)
		}
	}
}

func TestCPUPerCall(t *testing.T) {
	for _, tc := range []struct {
		cpu   time.Duration
		calls int
		want  time.Duration
	}{
		{time.Second, 1000, time.Millisecond},
		{250 * time.Millisecond, 1000, 250 * time.Microsecond},
		{10 * time.Millisecond, 3, 3333333 * time.Nanosecond},
		{time.Second, 0, 0},  // no calls: nothing to share
		{0, 100, 0},          // an idle process
		{-time.Second, 4, 0}, // a restarted process reads lower: not negative
	} {
		if got := CPUPerCall(tc.cpu, tc.calls); got != tc.want {
			t.Errorf("CPUPerCall(%v, %d) = %v, want %v", tc.cpu, tc.calls, got, tc.want)
		}
	}
}

func TestShare(t *testing.T) {
	for _, tc := range []struct{ a, b, want float64 }{
		{500, 1000, 0.5}, {1000, 1000, 1}, {1200, 1000, 1.2}, {5, 0, 0},
	} {
		if got := Share(tc.a, tc.b); got != tc.want {
			t.Errorf("Share(%v, %v) = %v, want %v", tc.a, tc.b, got, tc.want)
		}
	}
}

func TestParseSwitches(t *testing.T) {
	for _, tc := range []struct {
		name, status string
		want         uint64
	}{
		{"both", "Name:\tarmoriq\nvoluntary_ctxt_switches:\t120\nnonvoluntary_ctxt_switches:\t7\n", 127},
		{"voluntary only", "voluntary_ctxt_switches:\t5\n", 5},
		{"none", "Name:\tarmoriq\nThreads:\t9\n", 0},
		{"not a number", "voluntary_ctxt_switches:\tmany\nnonvoluntary_ctxt_switches:\t3\n", 3},
	} {
		if got := parseSwitches([]byte(tc.status)); got != tc.want {
			t.Errorf("%s: parseSwitches = %d, want %d", tc.name, got, tc.want)
		}
	}
	if procSupported() {
		if n := readSwitches(os.Getpid()); n == 0 {
			t.Errorf("readSwitches(this process) = 0: its threads have switched by now")
		}
	}
}

func TestSwitchesDelta(t *testing.T) {
	a := cpuReading{ok: true, switches: map[string]uint64{roleGateway: 100, roleAdapter: 50}}
	b := cpuReading{ok: true, switches: map[string]uint64{roleGateway: 350, roleAdapter: 20, roleUpstream: 30}}
	got := switchesDelta(a, b)
	want := map[string]uint64{roleGateway: 250, roleUpstream: 30} // the adapter restarted: not counted
	if len(got) != len(want) || got[roleGateway] != 250 || got[roleUpstream] != 30 {
		t.Errorf("switchesDelta = %v, want %v", got, want)
	}
	if switchesDelta(cpuReading{}, b) != nil {
		t.Errorf("switchesDelta of an unreadable reading: want nil")
	}
}

func TestCPUDelta(t *testing.T) {
	a := cpuReading{ok: true, cpu: map[string]time.Duration{roleGateway: 100 * time.Millisecond, roleAdapter: 50 * time.Millisecond}}
	b := cpuReading{ok: true, cpu: map[string]time.Duration{roleGateway: 350 * time.Millisecond, roleAdapter: 20 * time.Millisecond, roleUpstream: 30 * time.Millisecond}}
	got, ok := cpuDelta(a, b)
	want := map[string]time.Duration{roleGateway: 250 * time.Millisecond, roleAdapter: 0, roleUpstream: 30 * time.Millisecond}
	if !ok || len(got) != len(want) {
		t.Fatalf("cpuDelta(%v, %v) = %v, %v; want %v", a, b, got, ok, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("cpuDelta: %s = %v, want %v (the adapter restarted: its CPU went down, counts 0)", k, got[k], v)
		}
	}
	if _, ok := cpuDelta(cpuReading{}, b); ok {
		t.Errorf("cpuDelta of an unreadable reading: ok, want not ok")
	}
}

// TestResults checks what a result derives from its samples: added
// latency, share of throughput and CPU per call, against direct of the
// same upstream.
func TestResults(t *testing.T) {
	targets := []*target{{upstream: "http", name: targetDirect}, {upstream: "http", name: targetMCP}, {upstream: "stdio", name: targetDirect}}
	sums := []sample{
		{calls: 1000, elapsed: time.Second, lat: msList(1, 1, 2, 9), cpuKnown: true, cpu: map[string]time.Duration{roleUpstream: 500 * time.Millisecond}},
		{calls: 400, errs: 100, elapsed: time.Second, lat: msList(3, 3, 4, 20), cpuKnown: true,
			cpu: map[string]time.Duration{roleGateway: 250 * time.Millisecond, roleAdapter: 100 * time.Millisecond}, rss: map[string]int64{roleGatewayAdapter: 80 << 20},
			phys: physReading{known: true, total: 60 << 20, shared: 30 << 20, anon: map[string]int64{roleGateway: 20 << 20, roleAdapter: 10 << 20}}},
		{calls: 10, elapsed: 2 * time.Second, lat: msList(5)},
	}
	res := results(targets, 16, sums)
	gw := res[1]
	if gw.P50Ms != 3 || gw.P99Ms != 20 || gw.P50AddedMs != 2 || gw.P99AddedMs != 11 {
		t.Errorf("latency: got p50 %v p99 %v added %v %v, want 3 20 added 2 11", gw.P50Ms, gw.P99Ms, gw.P50AddedMs, gw.P99AddedMs)
	}
	if gw.CallsPerSec != 400 || gw.ThroughputShare != 0.4 {
		t.Errorf("throughput: got %v (share %v), want 400 (0.4)", gw.CallsPerSec, gw.ThroughputShare)
	}
	// 250 ms over 500 calls (400 ok + 100 failed): 0.5 ms a call.
	if gw.CPUPerCallMs[roleGateway] != 0.5 || gw.CPUPerCallMs[roleAdapter] != 0.2 {
		t.Errorf("CPU per call: got %v, want gateway 0.5 adapter 0.2", gw.CPUPerCallMs)
	}
	if gw.PeakRSSMiB[roleGatewayAdapter] != 80 {
		t.Errorf("RSS: got %v, want gateway+adapter 80", gw.PeakRSSMiB)
	}
	if p := gw.Phys; p == nil || p.MiB != 60 || p.SharedMiB != 30 || p.AnonMiB[roleGateway] != 20 || p.AnonMiB[roleAdapter] != 10 || p.Approx {
		t.Errorf("physical footprint: got %+v, want 60 MiB: 30 shared, anon gateway 20 adapter 10, exact", p)
	}
	if st := res[2]; st.ThroughputShare != 1 || st.CPUPerCallMs != nil || st.CallsPerSec != 5 {
		t.Errorf("stdio direct (no /proc): got share %v cpu %v calls/s %v, want 1, none, 5", st.ThroughputShare, st.CPUPerCallMs, st.CallsPerSec)
	}
}

// TestCPUVsProxy: what a target adds, as a multiple of the proxy's CPU per
// call in the same run, for each kind of result.
func TestCPUVsProxy(t *testing.T) {
	cpu := func(kv ...any) map[string]float64 {
		m := map[string]float64{}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i].(string)] = kv[i+1].(float64)
		}
		return m
	}
	res := []Result{
		{Upstream: "http", Target: targetDirect, CPUPerCallMs: cpu(roleUpstream, 0.5)},
		{Upstream: "http", Target: targetProxy, CPUPerCallMs: cpu(roleProxy, 0.4, roleUpstream, 0.5)},
		{Upstream: "http", Target: targetMCP, CPUPerCallMs: cpu(roleGateway, 0.45, roleAdapter, 0.15, roleUpstream, 0.5)},
		{Upstream: "http", Target: "mcp-proxy", CPUPerCallMs: cpu(rolePeer, 0.5, roleUpstream, 0.5)},
		{Upstream: "http", Target: targetInvoke}, // /proc not read
		{Upstream: "stdio", Target: targetMCP, CPUPerCallMs: cpu(roleGateway, 0.3, roleAdapter, 0.1)},
	}
	vsProxy(res)
	for _, tc := range []struct {
		i    int
		what string
		want float64
	}{
		{0, "direct", 0},
		{1, "the proxy itself", 0},
		{2, "the gateway (0.45 + 0.15 against 0.4)", 1.5},
		{3, "a peer (0.5 against 0.4)", 1.25},
		{4, "a target with no CPU read", 0},
		{5, "the gateway over stdio (no proxy there)", 0},
	} {
		if got := res[tc.i].CPUVsProxy; got != tc.want {
			t.Errorf("%s: CPUVsProxy = %v, want %v", tc.what, got, tc.want)
		}
	}
}

func TestParseStat(t *testing.T) {
	// A command name with spaces and parentheses; utime 1234, stime 566,
	// starttime 98765.
	line := "4242 (armoriq (x) y) S 1 4242 4242 0 -1 4194560 100 0 0 0 1234 566 0 0 20 0 9 0 98765 1000000 2000 18446744073709551615"
	st, err := parseStat([]byte(line))
	if err != nil {
		t.Fatal(err)
	}
	if st.ppid != 1 || st.cpu != 18*time.Second || st.startTime != 98765 {
		t.Errorf("parseStat(%q) = %+v, want ppid 1, cpu 18s (1800 ticks), start 98765", line, st)
	}
	for _, bad := range []string{"", "4242 armoriq S 1", "4242 (x) S 1 2 3", "4242 (x) S one 4242 4242 0 -1 4194560 100 0 0 0 1234 566 0 0 20 0 9 0 98765 1"} {
		if _, err := parseStat([]byte(bad)); err == nil {
			t.Errorf("parseStat(%q): no error, want one", bad)
		}
	}
}

func TestParseStatusKB(t *testing.T) {
	status := "Name:\tarmoriq\nVmHWM:\t   51200 kB\nVmRSS:\t   40960 kB\nThreads:\t9\n"
	for _, tc := range []struct {
		name string
		want int64
		ok   bool
	}{{"VmRSS", 40 << 20, true}, {"VmHWM", 50 << 20, true}, {"VmSwap", 0, false}, {"Name", 0, false}} {
		got, ok := parseStatusKB([]byte(status), tc.name)
		if got != tc.want || ok != tc.ok {
			t.Errorf("parseStatusKB(%s) = %d, %v; want %d, %v", tc.name, got, ok, tc.want, tc.ok)
		}
	}
}

func TestReadEventAnswer(t *testing.T) {
	for _, tc := range []struct {
		name, stream, want string
	}{
		{"one event", "event: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}\n\n", `{"jsonrpc":"2.0","id":1,"result":{}}`},
		{"a notification first", "data: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/message\"}\n\ndata: {\"id\":2,\"error\":{\"code\":1}}\n\n", `{"id":2,"error":{"code":1}}`},
		{"no final blank line", "data: {\"id\":3,\"result\":{}}", `{"id":3,"result":{}}`},
		{"data over two lines", "data: {\"id\":4,\ndata: \"result\":{}}\n\n", "{\"id\":4,\n\"result\":{}}"},
	} {
		got, err := readEventAnswer(strings.NewReader(tc.stream))
		if err != nil || string(got) != tc.want {
			t.Errorf("%s: readEventAnswer(%q) = %q, %v; want %q", tc.name, tc.stream, got, err, tc.want)
		}
	}
	if _, err := readEventAnswer(strings.NewReader("data: {\"method\":\"x\"}\n\n")); err == nil {
		t.Errorf("a stream of notifications only: no error, want one")
	}
}

func TestAnswerCheck(t *testing.T) {
	for _, tc := range []struct {
		body string
		ok   bool
	}{
		{`{"result":{"content":[{"type":"text","text":"` + callText + `"}]}}`, true},
		{`{"result":{"content":[{"type":"text","text":"other"}]}}`, false},
		{`{"result":{"isError":true,"content":[{"type":"text","text":"` + callText + `"}]}}`, false},
		{`{"error":{"code":-32030,"message":"denied"}}`, false},
		{`{}`, false},
	} {
		var a rpcAnswer
		if err := json.Unmarshal([]byte(tc.body), &a); err != nil {
			t.Fatal(err)
		}
		if err := a.check(); (err == nil) != tc.ok {
			t.Errorf("check(%s) = %v, want ok %v", tc.body, err, tc.ok)
		}
	}
}

func FuzzParseStat(f *testing.F) {
	f.Add([]byte("4242 (armoriq) S 1 4242 4242 0 -1 4194560 100 0 0 0 1234 566 0 0 20 0 9 0 98765 1000000 2000"))
	f.Add([]byte("1 ()) ) R"))
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = parseStat(b) // no panic
	})
}

func FuzzReadEventAnswer(f *testing.F) {
	f.Add("data: {\"id\":1,\"result\":{}}\n\n")
	f.Add("data:\n\ndata: x\n")
	f.Fuzz(func(t *testing.T, s string) {
		_, _ = readEventAnswer(strings.NewReader(s)) // no panic
	})
}

// TestSampleAddKeepsHighestFootprint checks that rounds merge into the
// highest physical footprint, and that a round without one changes
// nothing.
func TestSampleAddKeepsHighestFootprint(t *testing.T) {
	var s sample
	for _, total := range []int64{50, 70, 0, 60} {
		s.add(&sample{phys: physReading{known: total > 0, total: total}})
	}
	if !s.phys.known || s.phys.total != 70 {
		t.Errorf("after rounds of 50, 70, none, 60: got %+v, want the 70", s.phys)
	}
}

func TestParseAuditWrites(t *testing.T) {
	for _, tt := range []struct {
		name string
		text string
		want auditWrites
		ok   bool
	}{
		{"both", "# HELP armoriq_audit_batches_total x\n# TYPE armoriq_audit_batches_total counter\narmoriq_audit_batches_total 1234\narmoriq_audit_records_total 4567\n", auditWrites{1234, 4567}, true},
		{"exponent form, as client_golang writes large counters", "armoriq_audit_batches_total 1.5e+06\narmoriq_audit_records_total 3e+06\n", auditWrites{1500000, 3000000}, true},
		{"no trailing newline, CRLF before it", "armoriq_audit_records_total 2\r\narmoriq_audit_batches_total 1", auditWrites{1, 2}, true},
		{"a similar name is not the counter", "armoriq_audit_batches_total_created 5\narmoriq_audit_batches_total 1\narmoriq_audit_records_total 2\n", auditWrites{1, 2}, true},
		{"records missing (a build without them)", "armoriq_audit_batches_total 1\n", auditWrites{}, false},
		{"empty", "", auditWrites{}, false},
		{"twice", "armoriq_audit_batches_total 1\narmoriq_audit_batches_total 2\narmoriq_audit_records_total 2\n", auditWrites{}, false},
		{"not a number", "armoriq_audit_batches_total 5,000\narmoriq_audit_records_total 2\n", auditWrites{}, false},
		{"negative", "armoriq_audit_batches_total -1\narmoriq_audit_records_total 2\n", auditWrites{}, false},
		{"NaN", "armoriq_audit_batches_total NaN\narmoriq_audit_records_total 2\n", auditWrites{}, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := parseAuditWrites([]byte(tt.text))
			if ok != tt.ok || (ok && got != tt.want) {
				t.Errorf("parseAuditWrites(%q) = %+v, %v; want %+v, %v", tt.text, got, ok, tt.want, tt.ok)
			}
		})
	}
}
