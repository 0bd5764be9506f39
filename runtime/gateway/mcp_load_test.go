package gateway

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/armoriq/controlplane/compiler/bundle"
	"github.com/armoriq/controlplane/runtime/store"
	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// TestMCPLoad measures tools/call through /mcp against the same call made
// directly to the upstream, in alternating rounds, at concurrency 1, 16 and
// 64. The gateway runs with auth, policy and a durable SQLite audit log,
// and reaches the upstream (a separate process) through the http adapter
// (another process). It reports throughput, p50, p99, RSS and CPU time per
// call of the gateway, the adapter and the upstream. Opt in:
//
//	ARMORIQ_LOAD=1 go test ./runtime/gateway -run TestMCPLoad -v
//
// ARMORIQ_LOAD_ROUND sets a round's length (default 2s), ARMORIQ_LOAD_SYNC
// the SQLite durability (full, the default, or normal).
func TestMCPLoad(t *testing.T) {
	if os.Getenv("ARMORIQ_LOAD") == "" {
		t.Skip("set ARMORIQ_LOAD=1 to run the load measurement")
	}
	round := 2 * time.Second
	if d, err := time.ParseDuration(os.Getenv("ARMORIQ_LOAD_ROUND")); err == nil {
		round = d
	}
	upURL, upPID := startHTTPUpstream(t)
	// ARMORIQ_LOAD_SYNC=normal measures with --sqlite-sync normal.
	var st store.Store
	if sync := os.Getenv("ARMORIQ_LOAD_SYNC"); sync != "" {
		var err error
		if st, err = store.OpenSQLiteSync(context.Background(), filepath.Join(t.TempDir(), "armoriq.db"), sync); err != nil {
			t.Fatal(err)
		}
		defer st.Close()
	}
	g := adapterGateway(t, "1", st)
	g.pushServers("load", 1, allowAll(), bundle.Server{ID: "web", Transport: "http", URL: upURL, ToolPrefix: "never"})
	adapterPID := 0
	for _, st := range g.srv.cfg.Upstream.Status() {
		adapterPID = st.PID
	}
	if adapterPID == 0 {
		t.Fatal("no adapter process")
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 256
	viaGateway := &http.Client{Transport: headerRT{map[string]string{"Authorization": "Bearer " + g.agentKey}, tr}}
	direct := &http.Client{Transport: tr}

	fmt.Fprintf(os.Stderr, "\n%-4s %-8s %10s %9s %9s %12s %12s %12s %12s\n", "conc", "path", "calls/s", "p50", "p99", "self cpu/op", "adapter cpu", "upstream cpu", "rss MiB")
	concs := []int{1, 16, 64}
	if v := os.Getenv("ARMORIQ_LOAD_CONC"); v != "" {
		n, _ := strconv.Atoi(v)
		concs = []int{n}
	}
	for _, conc := range concs {
		var sums [2]loadStats
		for r := 0; r < 3; r++ {
			for i, target := range []struct {
				url string
				hc  *http.Client
			}{{upURL, direct}, {g.http.URL + "/mcp", viaGateway}} {
				st := runLoad(t, target.url, target.hc, conc, round, upPID, adapterPID)
				sums[i].add(st)
			}
		}
		for i, name := range []string{"direct", "gateway"} {
			s := sums[i]
			fmt.Fprintf(os.Stderr, "%-4d %-8s %10.0f %9s %9s %12s %12s %12s %12.1f\n", conc, name, s.throughput(), s.pct(50), s.pct(99),
				s.perOp(s.selfCPU), s.perOp(s.adapterCPU), s.perOp(s.upCPU), float64(s.rss)/(1<<20))
		}
		d, gw := sums[0], sums[1]
		gwCPU := gw.perOp(gw.selfCPU) - d.perOp(d.selfCPU) // the client's share is the same in both
		fmt.Fprintf(os.Stderr, "%-4d summary: p50 added %s, throughput %.0f%% of direct, gateway cpu/op %s + adapter %s = %.2fx upstream %s\n",
			conc, gw.pct(50)-d.pct(50), 100*gw.throughput()/d.throughput(), gwCPU, gw.perOp(gw.adapterCPU),
			float64(gwCPU+gw.perOp(gw.adapterCPU))/float64(gw.perOp(gw.upCPU)), gw.perOp(gw.upCPU))
	}
}

type loadStats struct {
	calls, errs                int
	elapsed                    time.Duration
	lat                        []time.Duration
	selfCPU, adapterCPU, upCPU time.Duration
	rss                        int64
}

func (s *loadStats) add(o loadStats) {
	s.calls += o.calls
	s.errs += o.errs
	s.elapsed += o.elapsed
	s.lat = append(s.lat, o.lat...)
	s.selfCPU += o.selfCPU
	s.adapterCPU += o.adapterCPU
	s.upCPU += o.upCPU
	s.rss = max(s.rss, o.rss)
}

func (s *loadStats) throughput() float64 { return float64(s.calls) / s.elapsed.Seconds() }

func (s *loadStats) perOp(d time.Duration) time.Duration {
	if s.calls == 0 {
		return 0
	}
	return d / time.Duration(s.calls)
}

func (s *loadStats) pct(p int) time.Duration {
	if len(s.lat) == 0 {
		return 0
	}
	slices.Sort(s.lat)
	return s.lat[(len(s.lat)-1)*p/100].Round(time.Microsecond)
}

// runLoad runs conc MCP clients calling echo on url for d.
func runLoad(t *testing.T, url string, hc *http.Client, conc int, d time.Duration, upPID, adapterPID int) loadStats {
	t.Helper()
	ctx := context.Background()
	sessions := make([]*mcp.ClientSession, conc)
	for i := range sessions {
		c := mcp.NewClient(&mcp.Implementation{Name: "load", Version: "1"}, nil)
		cs, err := c.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: url, HTTPClient: hc, DisableStandaloneSSE: true}, nil)
		if err != nil {
			t.Fatalf("connecting to %s: %v", url, err)
		}
		sessions[i] = cs
		// Warm up.
		if _, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "echo", Arguments: map[string]any{"text": "warm"}}); err != nil {
			t.Fatalf("calling echo on %s: %v", url, err)
		}
	}
	defer func() {
		for _, cs := range sessions {
			cs.Close()
		}
	}()
	self0, ad0, up0 := procCPU(0), procCPU(adapterPID), procCPU(upPID)
	start := time.Now()
	deadline := start.Add(d)
	var mu sync.Mutex
	var st loadStats
	var errs atomic.Int64
	var wg sync.WaitGroup
	for _, cs := range sessions {
		wg.Add(1)
		go func() {
			defer wg.Done()
			lat := make([]time.Duration, 0, 4096)
			for time.Now().Before(deadline) {
				t0 := time.Now()
				res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "echo", Arguments: map[string]any{"text": "hello"}})
				if err != nil || res.IsError {
					errs.Add(1)
					continue
				}
				lat = append(lat, time.Since(t0))
			}
			mu.Lock()
			st.lat = append(st.lat, lat...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	st.elapsed = time.Since(start)
	st.calls, st.errs = len(st.lat), int(errs.Load())
	st.selfCPU, st.adapterCPU, st.upCPU = procCPU(0)-self0, procCPU(adapterPID)-ad0, procCPU(upPID)-up0
	st.rss = procRSS()
	if st.errs > 0 {
		t.Errorf("%s at concurrency %d: %d failed calls", url, conc, st.errs)
	}
	return st
}

// startHTTPUpstream runs the test MCP server in a process of its own.
func startHTTPUpstream(t *testing.T) (string, int) {
	t.Helper()
	exe, _ := os.Executable()
	addrFile := filepath.Join(t.TempDir(), "addr")
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), "ARMORIQ_TEST_HTTP_SERVER="+addrFile)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stdin.Close()
		cmd.Process.Kill()
		cmd.Wait()
	})
	for i := 0; ; i++ {
		if b, err := os.ReadFile(addrFile); err == nil && len(b) > 0 {
			return "http://" + string(b) + "/", cmd.Process.Pid
		}
		if i > 100 {
			t.Fatal("the upstream did not start")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// procCPU is the user+system CPU time of pid (0: this process), from
// /proc/<pid>/stat.
func procCPU(pid int) time.Duration {
	path := "/proc/self/stat"
	if pid > 0 {
		path = "/proc/" + strconv.Itoa(pid) + "/stat"
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	// Fields after the command name, which is in parentheses.
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	const clkTck = 100 // USER_HZ on Linux
	return time.Duration(ut+st) * time.Second / clkTck
}

// procRSS is this process's resident set size, from /proc/self/status.
func procRSS() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}
