package loadbench

import (
	"fmt"
	"io"
	"math"
	"strings"
	"text/tabwriter"
	"time"
)

// Report is the outcome of a bench run; its JSON form is --json's output.
type Report struct {
	Version  string   `json:"version"`
	Settings Settings `json:"settings"`
	Machine  Machine  `json:"machine"`
	// Floor is what the machine takes for what the gateway adds to a
	// call beyond a proxy's work (nil in reports that predate it).
	Floor     *Floor    `json:"floor,omitempty"`
	Processes []Process `json:"processes"`
	Results   []Result  `json:"results"`
}

// Settings are the run's parameters.
type Settings struct {
	Concurrency []int  `json:"concurrency"`
	Rounds      int    `json:"rounds"`
	RoundMs     int64  `json:"round_ms"`
	WarmupMs    int64  `json:"warmup_ms"`
	SQLiteSync  string `json:"sqlite_sync"`
	MCPVersion  string `json:"mcp_version"`
	// GatewayExe is the other build the gateway ran from (--gateway-exe);
	// empty: the bench's own.
	GatewayExe string `json:"gateway_exe,omitempty"`
	// StdioProtocol is the protocol pin of the gateway's stdio server
	// (--stdio-protocol); empty: none.
	StdioProtocol string `json:"stdio_protocol,omitempty"`
	// ProcStats says whether CPU and memory were read (Linux's /proc).
	ProcStats bool `json:"proc_stats"`
}

// Machine is where the run took place: figures from a loaded machine are
// worth less.
type Machine struct {
	OS      string `json:"os"`
	Arch    string `json:"arch"`
	CPUs    int    `json:"cpus"`
	LoadAvg string `json:"loadavg_start,omitempty"`
	// LoadAvgEnd is the load average when the run ended.
	LoadAvgEnd string `json:"loadavg_end,omitempty"`
}

// Process is one process of the run.
type Process struct {
	Role       string  `json:"role"`
	PID        int     `json:"pid"`
	PeakRSSMiB float64 `json:"peak_rss_mib,omitempty"` // VmHWM at the end of the run
	// PeakAnonMiB is the highest anonymous resident memory (RssAnon)
	// sampled while it was measured: the process's own memory, without
	// the pages of the executable it shares with the others.
	PeakAnonMiB float64 `json:"peak_rss_anon_mib,omitempty"`
}

// Result is one target at one concurrency, over all rounds.
type Result struct {
	Upstream    string `json:"upstream"` // http or stdio
	Target      string `json:"target"`   // direct, proxy, armoriq-mcp, armoriq-invoke or a peer's name
	Concurrency int    `json:"concurrency"`
	Calls       int    `json:"calls"`  // successful
	Errors      int    `json:"errors"` // failed
	FirstError  string `json:"first_error,omitempty"`
	// CallsPerSec is the throughput of successful calls, and
	// ThroughputShare its ratio to direct's in the same run.
	CallsPerSec     float64 `json:"calls_per_sec"`
	ThroughputShare float64 `json:"throughput_share"`
	P50Ms           float64 `json:"p50_ms"`
	P99Ms           float64 `json:"p99_ms"`
	// P50AddedMs and P99AddedMs are the latency added over direct.
	P50AddedMs float64 `json:"p50_added_ms"`
	P99AddedMs float64 `json:"p99_added_ms"`
	// CPUPerCallMs is the CPU time per call of each process role (gateway,
	// adapter, upstream, proxy, peer, client); absent where /proc is not
	// readable.
	CPUPerCallMs map[string]float64 `json:"cpu_per_call_ms,omitempty"`
	// SwitchesPerCall is the context switches per call of each process
	// role, voluntary and not, summed over its threads
	// (/proc/<pid>/task/*/status): each is a thread stopping, mostly a
	// goroutine hand-off or a wait for I/O.
	SwitchesPerCall map[string]float64 `json:"switches_per_call,omitempty"`
	// PeakRSSMiB is the highest resident set sampled per role during the
	// target's rounds (gateway+adapter: both at the same moment).
	PeakRSSMiB map[string]float64 `json:"peak_rss_mib,omitempty"`
	// Phys is the highest physical footprint of the gateway and its
	// adapter together (gateway targets, on Linux).
	Phys *Footprint `json:"phys,omitempty"`
	// CPUVsProxy is the CPU per call of what the target adds (gateway and
	// adapter, or a peer) over the plain reverse proxy's, in the same run
	// at the same concurrency: issue 15's CPU target is 1.5. Set for the
	// gateway's targets and peers over the HTTP upstream (the one the
	// proxy fronts), where /proc is read.
	CPUVsProxy float64 `json:"cpu_vs_proxy,omitempty"`
	// AuditSyncsPerCall is the gateway's audit batches per call (from its
	// /metrics: armoriq_audit_batches_total): each one synced write of its
	// audit journal. A call has two records, its request and its outcome:
	// 1 means every call paid one sync, less that calls shared them.
	// AuditRecordsPerSync is the records per batch. Gateway targets only.
	AuditSyncsPerCall   float64 `json:"audit_syncs_per_call,omitempty"`
	AuditRecordsPerSync float64 `json:"audit_records_per_sync,omitempty"`
}

// Footprint is the physical memory of the gateway and its adapter at one
// moment: the anonymous memory of each, plus the resident pages of files
// (the armoriq executable above all) and shared memory that either maps,
// each page counted once. Summing their VmRSS counts the executable's
// pages twice, once per process.
type Footprint struct {
	MiB float64 `json:"mib"`
	// AnonMiB is the RssAnon of each (gateway, adapter).
	AnonMiB map[string]float64 `json:"anon_mib"`
	// SharedMiB is the distinct resident file and shared memory pages.
	SharedMiB float64 `json:"shared_mib"`
	// Approx says the page frame numbers were not readable (they need
	// CAP_SYS_ADMIN): SharedMiB is then the larger RssFile of the two
	// plus their RssShmem, as if one's file pages held the other's.
	Approx bool `json:"approx,omitempty"`
}

func ms(d time.Duration) float64 { return math.Round(float64(d)/1e3) / 1e3 }

// results turns the sums of a concurrency level into results, each
// compared with the direct target of its upstream.
func results(targets []*target, conc int, sums []sample) []Result {
	type base struct {
		p50, p99 time.Duration
		tput     float64
	}
	direct := map[string]base{}
	for i, t := range targets {
		if t.name == targetDirect {
			s := &sums[i]
			p50, p99 := s.percentiles()
			direct[t.upstream] = base{p50, p99, s.throughput()}
		}
	}
	var out []Result
	for i, t := range targets {
		s := &sums[i]
		p50, p99 := s.percentiles()
		d := direct[t.upstream]
		r := Result{
			Upstream: t.upstream, Target: t.name, Concurrency: conc,
			Calls: s.calls, Errors: s.errs, FirstError: s.firstErr,
			CallsPerSec:     math.Round(s.throughput()*10) / 10,
			ThroughputShare: math.Round(Share(s.throughput(), d.tput)*1000) / 1000,
			P50Ms:           ms(p50), P99Ms: ms(p99),
			P50AddedMs: ms(p50 - d.p50), P99AddedMs: ms(p99 - d.p99),
		}
		if s.cpuKnown {
			r.CPUPerCallMs = map[string]float64{}
			for role, cpu := range s.cpu {
				r.CPUPerCallMs[role] = ms(CPUPerCall(cpu, s.calls+s.errs))
			}
			if n := s.calls + s.errs; n > 0 && len(s.switches) > 0 {
				r.SwitchesPerCall = map[string]float64{}
				for role, sw := range s.switches {
					r.SwitchesPerCall[role] = math.Round(float64(sw)/float64(n)*10) / 10
				}
			}
			r.PeakRSSMiB = map[string]float64{}
			for role, v := range s.rss {
				r.PeakRSSMiB[role] = mib(v)
			}
			if s.phys.known {
				r.Phys = &Footprint{MiB: mib(s.phys.total), SharedMiB: mib(s.phys.shared), Approx: s.phys.approx, AnonMiB: map[string]float64{}}
				for role, v := range s.phys.anon {
					r.Phys.AnonMiB[role] = mib(v)
				}
			}
		}
		if t.gateway && s.auditKnown && s.audit.batches > 0 && s.calls+s.errs > 0 {
			r.AuditSyncsPerCall = math.Round(float64(s.audit.batches)/float64(s.calls+s.errs)*1000) / 1000
			r.AuditRecordsPerSync = math.Round(float64(s.audit.records)/float64(s.audit.batches)*10) / 10
		}
		out = append(out, r)
	}
	vsProxy(out)
	return out
}

// vsProxy sets CPUVsProxy on the results of one concurrency level. Each
// ratio is taken within a run: the proxy's CPU per call moves by a tenth
// from one run to the next on a virtual machine, so a ratio of medians
// over runs says less than the median of the runs' ratios.
func vsProxy(res []Result) {
	proxy := map[string]float64{}
	for _, r := range res {
		if r.Target == targetProxy && r.CPUPerCallMs != nil {
			proxy[r.Upstream] = r.CPUPerCallMs[roleProxy]
		}
	}
	for i := range res {
		r := &res[i]
		p := proxy[r.Upstream]
		if p <= 0 || r.CPUPerCallMs == nil {
			continue
		}
		var own float64
		if gw, ok := r.CPUPerCallMs[roleGateway]; ok {
			own = gw + r.CPUPerCallMs[roleAdapter]
		} else if peer, ok := r.CPUPerCallMs[rolePeer]; ok {
			own = peer
		} else {
			continue // direct or the proxy itself
		}
		r.CPUVsProxy = math.Round(own/p*100) / 100
	}
}

// Errors is the number of failed calls over the run.
func (r *Report) Errors() int {
	n := 0
	for _, res := range r.Results {
		n += res.Errors
	}
	return n
}

// WriteTable writes the report for people: a table per concurrency and
// upstream, each target beside direct.
func (r *Report) WriteTable(w io.Writer) error {
	fmt.Fprintf(w, "armoriq bench %s: %d round(s) of %s per target, alternating; audit --sqlite-sync %s; MCP %s\n",
		r.Version, r.Settings.Rounds, time.Duration(r.Settings.RoundMs)*time.Millisecond, r.Settings.SQLiteSync, r.Settings.MCPVersion)
	if r.Settings.GatewayExe != "" {
		fmt.Fprintf(w, "the gateway ran from another build: %s\n", r.Settings.GatewayExe)
	}
	if r.Settings.StdioProtocol != "" {
		fmt.Fprintf(w, "the gateway's stdio server is pinned to MCP protocol %s\n", r.Settings.StdioProtocol)
	}
	fmt.Fprintf(w, "machine: %s/%s, %d CPUs", r.Machine.OS, r.Machine.Arch, r.Machine.CPUs)
	if r.Machine.LoadAvg != "" {
		fmt.Fprintf(w, ", load average %s at the start, %s at the end", r.Machine.LoadAvg, r.Machine.LoadAvgEnd)
	}
	fmt.Fprintln(w)
	if f := r.Floor; f != nil {
		fmt.Fprintf(w, "floor: a durable write of a record %.3f ms at p50, %.3f at p99; a unix-socket round trip %.3f ms at p50, %.3f at p99\n",
			f.DurableWriteP50Ms, f.DurableWriteP99Ms, f.UnixRoundTripP50Ms, f.UnixRoundTripP99Ms)
		if f.DurableWriteCPUMs > 0 && f.UnixRoundTripCPUMs > 0 {
			fmt.Fprintf(w, "  CPU time: a durable write %.3f ms; a round trip %.3f ms (both processes)\n", f.DurableWriteCPUMs, f.UnixRoundTripCPUMs)
		}
		for _, res := range r.Results {
			if res.Target == targetProxy && res.Concurrency == 1 {
				fmt.Fprintf(w, "  the least the gateway can add at concurrency 1 (%s upstream): the proxy's +p50 and both: %+.3f ms\n",
					res.Upstream, res.P50AddedMs+f.DurableWriteP50Ms+f.UnixRoundTripP50Ms)
				if p, ok := res.CPUPerCallMs[roleProxy]; ok && f.DurableWriteCPUMs > 0 && f.UnixRoundTripCPUMs > 0 {
					least := p + f.DurableWriteCPUMs + f.UnixRoundTripCPUMs
					fmt.Fprintf(w, "  the least CPU per call gateway + adapter can take at concurrency 1 (%s upstream): the proxy's and both: %.3f ms, %.2f× the proxy's\n",
						res.Upstream, least, least/p)
				}
			}
		}
	}
	if !r.Settings.ProcStats {
		fmt.Fprintln(w, "CPU and memory: n/a (read from /proc, on Linux only)")
	}
	approx := false
	key := func(res Result) string { return fmt.Sprintf("%d/%s", res.Concurrency, res.Upstream) }
	for i := 0; i < len(r.Results); {
		k := key(r.Results[i])
		fmt.Fprintf(w, "\nconcurrency %d, %s upstream (latency and CPU in ms; CPU per call of each process)\n", r.Results[i].Concurrency, r.Results[i].Upstream)
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "target        \tcalls/s\tshare\tp50\tp99\t+p50\t+p99\terrors\tgateway\tadapter\tupstream\tproxy/peer\tclient\tCPU ×proxy\tgw+ad MiB\tgw+ad phys MiB\tgw+ad cs/call\tsyncs/call\t")
		for ; i < len(r.Results) && key(r.Results[i]) == k; i++ {
			res := r.Results[i]
			cpu := func(role string) string {
				if res.CPUPerCallMs == nil {
					return "n/a"
				}
				v, ok := res.CPUPerCallMs[role]
				if !ok {
					return "-"
				}
				return fmt.Sprintf("%.3f", v)
			}
			hop := cpu(roleProxy)
			if hop == "-" {
				hop = cpu(rolePeer)
			}
			rss := "-"
			if res.PeakRSSMiB == nil {
				rss = "n/a"
			} else if v, ok := res.PeakRSSMiB[roleGatewayAdapter]; ok {
				rss = fmt.Sprintf("%.1f", v)
			}
			phys := "-"
			switch {
			case res.PeakRSSMiB == nil:
				phys = "n/a"
			case res.Phys != nil && res.Phys.Approx:
				phys = fmt.Sprintf("~%.1f", res.Phys.MiB)
				approx = true
			case res.Phys != nil:
				phys = fmt.Sprintf("%.1f", res.Phys.MiB)
			}
			cs := "-"
			if res.SwitchesPerCall == nil {
				if res.CPUPerCallMs == nil {
					cs = "n/a"
				}
			} else if g, ok := res.SwitchesPerCall[roleGateway]; ok {
				cs = fmt.Sprintf("%.1f", g+res.SwitchesPerCall[roleAdapter])
			}
			added := func(v float64) string {
				if res.Target == targetDirect {
					return ""
				}
				return fmt.Sprintf("%+.3f", v)
			}
			syncs := "-"
			if res.AuditSyncsPerCall > 0 {
				syncs = fmt.Sprintf("%.2f", res.AuditSyncsPerCall)
			}
			vs := "-"
			if res.CPUVsProxy > 0 {
				vs = fmt.Sprintf("%.2f×", res.CPUVsProxy)
			}
			fmt.Fprintf(tw, "%-14s\t%.0f\t%.2f\t%.3f\t%.3f\t%s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n",
				res.Target, res.CallsPerSec, res.ThroughputShare, res.P50Ms, res.P99Ms, added(res.P50AddedMs), added(res.P99AddedMs),
				res.Errors, cpu(roleGateway), cpu(roleAdapter), cpu(roleUpstream), hop, cpu(roleClient), vs, rss, phys, cs, syncs)
		}
		tw.Flush()
	}
	if approx {
		fmt.Fprintln(w, "\n~: approximate: the page frame numbers are not readable (it takes CAP_SYS_ADMIN, root); the file pages the two processes share are taken as the larger RssFile of the two")
	}
	var errs []string
	for _, res := range r.Results {
		if res.FirstError != "" {
			errs = append(errs, fmt.Sprintf("  %s (%s upstream, concurrency %d): %d failed, first: %s", res.Target, res.Upstream, res.Concurrency, res.Errors, res.FirstError))
		}
	}
	if len(errs) > 0 {
		fmt.Fprintf(w, "\nfailed calls:\n%s\n", strings.Join(errs, "\n"))
	}
	fmt.Fprintln(w, "\nprocesses (peak resident set over the run, VmHWM; peak anonymous memory sampled in the rounds, RssAnon):")
	for _, p := range r.Processes {
		rss := "n/a"
		if p.PeakRSSMiB > 0 {
			rss = fmt.Sprintf("%5.1f MiB", p.PeakRSSMiB)
		}
		if p.PeakAnonMiB > 0 {
			rss += fmt.Sprintf("   anon %5.1f MiB", p.PeakAnonMiB)
		}
		fmt.Fprintf(w, "  %-36s pid %-8d %s\n", p.Role, p.PID, rss)
	}
	return nil
}
