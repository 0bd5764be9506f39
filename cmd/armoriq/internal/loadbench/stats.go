package loadbench

import (
	"slices"
	"time"
)

// Percentile is the p-th percentile (0..100) of sorted, by the
// nearest-rank method: the smallest value such that at least p% of the
// values are at most it. It is 0 for no values.
func Percentile(sorted []time.Duration, p float64) time.Duration {
	n := len(sorted)
	if n == 0 {
		return 0
	}
	switch {
	case p <= 0:
		return sorted[0]
	case p >= 100:
		return sorted[n-1]
	}
	// rank = ceil(p/100 × n), 1-based; computed in integers of
	// hundredths of a percent so that 99% of 100 is exactly 99.
	rank := (int64(p*100+0.5)*int64(n) + 9999) / 10000
	return sorted[max(rank, 1)-1]
}

// CPUPerCall is the CPU time per call of a process that used cpu over
// calls calls (0 calls: 0).
func CPUPerCall(cpu time.Duration, calls int) time.Duration {
	if calls <= 0 || cpu <= 0 {
		return 0
	}
	return cpu / time.Duration(calls)
}

// Share is a's share of b (a/b), 0 when b is 0.
func Share(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}

// sample is what one target did over one or more rounds.
type sample struct {
	calls, errs int
	elapsed     time.Duration
	lat         []time.Duration // of successful calls
	firstErr    string
	cpu         map[string]time.Duration // role → CPU time used
	cpuKnown    bool                     // /proc was readable
	switches    map[string]uint64        // role → context switches of all its threads
	rss         map[string]int64         // role → highest resident set seen (bytes)
	phys        physReading              // highest footprint of gateway + adapter
	// audit is what the gateway's audit group commit wrote over the
	// rounds (its /metrics before and after each), auditKnown whether
	// every round could read it.
	audit      auditWrites
	auditKnown bool
}

// add merges o into s.
func (s *sample) add(o *sample) {
	s.calls += o.calls
	s.errs += o.errs
	s.elapsed += o.elapsed
	s.lat = append(s.lat, o.lat...)
	if s.firstErr == "" {
		s.firstErr = o.firstErr
	}
	if s.cpu == nil {
		s.cpu, s.rss, s.switches = map[string]time.Duration{}, map[string]int64{}, map[string]uint64{}
		s.cpuKnown, s.auditKnown = o.cpuKnown, o.auditKnown
	}
	s.cpuKnown = s.cpuKnown && o.cpuKnown
	s.auditKnown = s.auditKnown && o.auditKnown
	s.audit.batches += o.audit.batches
	s.audit.records += o.audit.records
	for k, v := range o.cpu {
		s.cpu[k] += v
	}
	for k, v := range o.switches {
		s.switches[k] += v
	}
	for k, v := range o.rss {
		s.rss[k] = max(s.rss[k], v)
	}
	if o.phys.known && o.phys.total > s.phys.total {
		s.phys = o.phys
	}
}

// throughput is successful calls per second.
func (s *sample) throughput() float64 {
	if s.elapsed <= 0 {
		return 0
	}
	return float64(s.calls) / s.elapsed.Seconds()
}

// percentiles sorts the latencies and returns p50 and p99.
func (s *sample) percentiles() (p50, p99 time.Duration) {
	slices.Sort(s.lat)
	return Percentile(s.lat, 50), Percentile(s.lat, 99)
}
