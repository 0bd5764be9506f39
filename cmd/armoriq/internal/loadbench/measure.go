package loadbench

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// workers are a target's callers at one concurrency.
type workers struct {
	t       *target
	callers []caller
}

// measure runs every concurrency level: workers and warmup, then the
// rounds, each target in turn within a round.
func (b *bench) measure(ctx context.Context) (*Report, error) {
	rep := &Report{
		Version: b.cfg.Version, Machine: machine(),
		Settings: Settings{
			Concurrency: b.cfg.Concurrency, Rounds: b.cfg.Rounds,
			RoundMs: b.cfg.Round.Milliseconds(), WarmupMs: b.cfg.Warmup.Milliseconds(),
			SQLiteSync: b.cfg.SQLiteSync, MCPVersion: b.cfg.MCPVersion, ProcStats: procSupported(), GatewayExe: b.cfg.GatewayExe,
			StdioProtocol: b.cfg.StdioProtocol,
		},
	}
	// The floor first, on a machine the rounds have not yet loaded, and
	// in the gateway's data directory: on the disk its audit journal is on.
	b.logf("measuring the floor: %d durable writes, %d unix-socket round trips", FloorWrites, FloorRoundTrips)
	floor, err := measureFloor(ctx, filepath.Join(b.dir, "data"), b.cfg.Exe)
	if err != nil {
		return nil, fmt.Errorf("measuring the floor: %v", err)
	}
	rep.Floor = &floor
	for _, conc := range b.cfg.Concurrency {
		ws := make([]*workers, len(b.targets))
		for i, t := range b.targets {
			w := &workers{t: t}
			for j := 0; j < conc; j++ {
				c, err := t.newCaller(ctx, j)
				if err != nil {
					return nil, fmt.Errorf("%s (%s upstream), worker %d: %v", t.name, t.upstream, j, err)
				}
				w.callers = append(w.callers, c)
			}
			ws[i] = w
		}
		b.logf("concurrency %d: warming up (%s per target)", conc, b.cfg.Warmup)
		for _, w := range ws {
			if b.cfg.Warmup > 0 {
				if _, err := b.round(ctx, w, b.cfg.Warmup, ""); err != nil {
					return nil, err
				}
			}
		}
		b.discover() // an adapter may have restarted
		sums := make([]sample, len(ws))
		for r := 0; r < b.cfg.Rounds; r++ {
			b.logf("concurrency %d: round %d of %d", conc, r+1, b.cfg.Rounds)
			for i, w := range ws {
				profile := ""
				if r == 0 && w.t.gateway && b.cfg.CPUProfileDir != "" {
					profile = fmt.Sprintf("%s-%s-c%d.pprof", w.t.upstream, w.t.name, conc)
				}
				s, err := b.round(ctx, w, b.cfg.Round, profile)
				if err != nil {
					return nil, err
				}
				sums[i].add(s)
			}
		}
		rep.Results = append(rep.Results, results(b.targets, conc, sums)...)
	}
	rep.Processes = b.processes()
	rep.Machine.LoadAvgEnd = machine().LoadAvg
	return rep, nil
}

// round runs w's callers for d and measures them. With profile set it
// takes CPU profiles of the gateway and its adapter meanwhile, and heap
// profiles at the end, and writes them to CPUProfileDir as
// gateway-PROFILE and adapter-PROFILE (profile).
func (b *bench) round(ctx context.Context, w *workers, d time.Duration, profile string) (*sample, error) {
	procs := w.t.procs()
	procs = append(procs, procRef{role: roleClient, pid: os.Getpid()})
	var audit0 auditWrites
	var auditOK bool
	if w.t.gateway {
		audit0, auditOK = b.auditWrites(ctx)
	}
	cpu0 := readCPU(procs)
	stopMem := b.sampleMemory(procs)

	var prof chan error
	if profile != "" {
		prof = make(chan error, 2)
		go func() {
			prof <- b.profile(ctx, b.adminURL, d, filepath.Join(b.cfg.CPUProfileDir, "gateway-"+profile))
		}()
		go func() {
			for _, p := range procs {
				if p.role == roleAdapter {
					if u, err := os.ReadFile(filepath.Join(b.pprofDir(), fmt.Sprintf("adapter-%d.url", p.pid))); err == nil {
						prof <- b.profile(ctx, strings.TrimSpace(string(u)), d, filepath.Join(b.cfg.CPUProfileDir, "adapter-"+profile))
						return
					}
				}
			}
			b.logf("no profiler URL from the adapter: no adapter profile")
			prof <- nil
		}()
	}
	s := &sample{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	start := time.Now()
	deadline := start.Add(d)
	for _, c := range w.callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			lat := make([]time.Duration, 0, 1024)
			var errs int
			var firstErr string
			for ctx.Err() == nil && time.Now().Before(deadline) {
				t0 := time.Now()
				if err := c.call(ctx); err != nil {
					if ctx.Err() != nil {
						break
					}
					errs++
					if firstErr == "" {
						firstErr = err.Error()
					}
					continue
				}
				lat = append(lat, time.Since(t0))
			}
			mu.Lock()
			s.lat = append(s.lat, lat...)
			s.errs += errs
			if s.firstErr == "" {
				s.firstErr = firstErr
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	s.elapsed = time.Since(start)
	s.calls = len(s.lat)
	mem := stopMem()
	s.rss, s.phys = mem.rss, mem.phys
	cpu1 := readCPU(procs)
	s.cpu, s.cpuKnown = cpuDelta(cpu0, cpu1)
	s.switches = switchesDelta(cpu0, cpu1)
	if auditOK {
		if audit1, ok := b.auditWrites(ctx); ok && audit1.batches >= audit0.batches {
			s.audit = auditWrites{audit1.batches - audit0.batches, audit1.records - audit0.records}
			s.auditKnown = true
		}
	}
	// The workers' keep-alive connections end with the round (their MCP
	// sessions stay): a server measured at concurrency N holds N
	// connections, not N for each target that ran before.
	for _, c := range w.callers {
		c.closeIdle()
	}
	if prof != nil {
		for range 2 {
			if err := <-prof; err != nil {
				return nil, err
			}
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return s, nil
}

// profile fetches a CPU profile from the profiler at base over d
// (rounded up to whole seconds, the unit of /debug/pprof/profile) and
// writes it to path (NAME.pprof); then a heap profile, the memory in use
// at the end of the round with the sessions still open, to NAME-heap.pprof.
func (b *bench) profile(ctx context.Context, base string, d time.Duration, path string) error {
	secs := int(math.Ceil(d.Seconds()))
	if err := b.fetchProfile(ctx, fmt.Sprintf("%s/debug/pprof/profile?seconds=%d", base, secs), path); err != nil {
		return err
	}
	return b.fetchProfile(ctx, base+"/debug/pprof/heap?gc=1", strings.TrimSuffix(path, ".pprof")+"-heap.pprof")
}

// fetchProfile fetches a profile from url and writes it to path.
func (b *bench) fetchProfile(ctx context.Context, url, path string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := b.hc.Do(req)
	if err != nil {
		return fmt.Errorf("profiling %s: %v", filepath.Base(path), err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("profiling %s: status %d", filepath.Base(path), resp.StatusCode)
	}
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("--cpuprofile: %v", err)
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return fmt.Errorf("writing %s: %v", path, err)
	}
	b.logf("wrote %s", path)
	return f.Close()
}

// cpuReading is the CPU time of each role's processes at one moment.
type cpuReading struct {
	cpu      map[string]time.Duration
	switches map[string]uint64 // context switches of the role's processes' threads
	ok       bool
}

// readCPU reads the CPU time used so far by procs, summed per role. A
// process that is gone (or replaced) counts as 0.
func readCPU(procs []procRef) cpuReading {
	if !procSupported() {
		return cpuReading{}
	}
	r := cpuReading{cpu: map[string]time.Duration{}, switches: map[string]uint64{}, ok: true}
	for _, p := range procs {
		if p.pid <= 0 {
			continue
		}
		st, err := readStat(p.pid)
		if err != nil || (p.start != 0 && st.startTime != p.start) {
			continue
		}
		r.cpu[p.role] += st.cpu
		r.switches[p.role] += readSwitches(p.pid)
		if p.tree {
			for pid, d := range descendants(p.pid) {
				r.cpu[p.role] += d.cpu
				r.switches[p.role] += readSwitches(pid)
			}
		}
	}
	return r
}

// cpuDelta is the CPU time each role used between two readings; a role
// whose reading went down (a process restarted) counts what is known
// after it: nothing.
func cpuDelta(a, b cpuReading) (map[string]time.Duration, bool) {
	if !a.ok || !b.ok {
		return nil, false
	}
	out := map[string]time.Duration{}
	for role, v := range b.cpu {
		out[role] = max(v-a.cpu[role], 0)
	}
	return out, true
}

// switchesDelta is the context switches each role's threads made between
// two readings (0 for a role whose count went down: a process restarted).
func switchesDelta(a, b cpuReading) map[string]uint64 {
	if !a.ok || !b.ok {
		return nil
	}
	out := map[string]uint64{}
	for role, v := range b.switches {
		if v >= a.switches[role] {
			out[role] = v - a.switches[role]
		}
	}
	return out
}

// memSample is what the memory sampler saw over a round.
type memSample struct {
	rss  map[string]int64 // role → highest resident set (VmRSS) total
	phys physReading      // the highest footprint of the gateway and its adapter
}

// physReading is the physical footprint of the gateway and its adapter
// at one moment (footprint.go).
type physReading struct {
	known  bool
	total  int64            // bytes
	anon   map[string]int64 // role → RssAnon
	shared int64            // distinct file and shared memory pages, bytes
	approx bool             // frame numbers not readable: shared is approximate
}

// sampleMemory samples the resident set of procs every 50 ms (and once
// at the end) until the function it returns is called, which returns the
// highest total per role, and the highest physical footprint of the
// gateway and its adapter. That footprint costs more to read (their
// pagemaps): it is read when the sum of their resident sets reaches a new
// high in the round, and at the end. Each process's RssAnon is sampled
// too, for its peak over the run (processes).
func (b *bench) sampleMemory(procs []procRef) func() memSample {
	peak := map[string]int64{}
	if !procSupported() {
		return func() memSample { return memSample{} }
	}
	var phys physReading
	takePhys := func() {
		var pids []int
		var roles []string
		for _, p := range procs {
			if p.role == roleGateway || p.role == roleAdapter {
				pids, roles = append(pids, p.pid), append(roles, p.role)
			}
		}
		f, err := readFootprint(pids)
		if err != nil || f.total() <= phys.total {
			return // a process is gone (restarting): no reading
		}
		phys = physReading{known: true, total: f.total(), anon: map[string]int64{}, shared: f.shared, approx: f.approx}
		for i, a := range f.anon {
			phys.anon[roles[i]] += a
		}
	}
	take := func() {
		now := map[string]int64{}
		for _, p := range procs {
			m, err := readStatusMemory(p.pid)
			if err != nil {
				continue
			}
			now[p.role] += m.rss
			b.noteAnon(p.pid, m.anon)
		}
		if gw, ok := now[roleGateway]; ok {
			now[roleGatewayAdapter] = gw + now[roleAdapter]
			if now[roleGatewayAdapter] > peak[roleGatewayAdapter] {
				takePhys()
			}
		}
		for role, v := range now {
			peak[role] = max(peak[role], v)
		}
	}
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(50 * time.Millisecond)
		defer t.Stop()
		for {
			take()
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
	}()
	return func() memSample {
		close(done)
		<-finished
		take()
		if _, ok := peak[roleGateway]; ok {
			takePhys()
		}
		return memSample{rss: peak, phys: phys}
	}
}

// noteAnon records a process's anonymous resident memory, for its peak.
func (b *bench) noteAnon(pid int, anon int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.peakAnon == nil {
		b.peakAnon = map[int]int64{}
	}
	b.peakAnon[pid] = max(b.peakAnon[pid], anon)
}

// processes lists the processes of the run with their peak resident set
// (VmHWM) so far, and the peak of their anonymous memory (RssAnon) sampled
// during the rounds.
func (b *bench) processes() []Process {
	var out []Process
	addProc := func(role string, pid int) {
		p := Process{Role: role, PID: pid}
		if procSupported() {
			if m, err := readStatusMemory(pid); err == nil {
				p.PeakRSSMiB = mib(m.peak)
			}
			p.PeakAnonMiB = mib(b.peakAnon[pid])
		}
		out = append(out, p)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, c := range b.children {
		addProc(c.role, c.pid())
	}
	for _, name := range []string{"adapter-http", "adapter-stdio", "upstream-stdio"} {
		if p, ok := b.gwProcs[name]; ok {
			addProc(map[string]string{"adapter-http": "HTTP adapter", "adapter-stdio": "stdio adapter", "upstream-stdio": "stdio upstream (under the adapter)"}[name], p.pid)
		}
	}
	return out
}

func mib(b int64) float64 { return math.Round(float64(b)/(1<<20)*10) / 10 }

// auditWrites is what the gateway's audit group commit has written: its
// batches (each one synced write of the journal) and their records.
type auditWrites struct{ batches, records int64 }

// auditWrites reads the gateway's armoriq_audit_batches_total and
// armoriq_audit_records_total from its admin listener's /metrics; ok is
// false when it cannot (another build without them, say).
func (b *bench) auditWrites(ctx context.Context) (w auditWrites, ok bool) {
	if b.adminURL == "" {
		return w, false
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, b.adminURL+"/metrics", nil)
	if err != nil {
		return w, false
	}
	resp, err := b.hc.Do(req)
	if err != nil {
		return w, false
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil || resp.StatusCode != http.StatusOK {
		return w, false
	}
	return parseAuditWrites(body)
}

// parseAuditWrites reads the two counters from a Prometheus text
// exposition; ok is false unless both are there, each once.
func parseAuditWrites(text []byte) (w auditWrites, ok bool) {
	var batches, records int
	for line := range bytes.Lines(text) {
		name, value, cut := strings.Cut(strings.TrimSpace(string(line)), " ")
		var dst *int64
		switch {
		case !cut:
			continue
		case name == "armoriq_audit_batches_total":
			dst = &w.batches
			batches++
		case name == "armoriq_audit_records_total":
			dst = &w.records
			records++
		default:
			continue
		}
		v, err := strconv.ParseFloat(value, 64)
		if err != nil || !(v >= 0 && v <= 1<<53) { // NaN too
			return auditWrites{}, false
		}
		*dst = int64(v)
	}
	return w, batches == 1 && records == 1
}
