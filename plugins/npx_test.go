package plugins_test

import (
	"context"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/armoriq/controlplane/plugins"
)

// descendants returns the pids of pid's children, grandchildren and so on.
func descendants(pid int) []int {
	children := map[int][]int{}
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, f := range stats {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		s := string(b)
		fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		if len(fields) < 2 {
			continue
		}
		self, _ := strconv.Atoi(filepath.Base(filepath.Dir(f)))
		ppid, _ := strconv.Atoi(fields[1])
		children[ppid] = append(children[ppid], self)
	}
	var out []int
	queue := []int{pid}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		for _, c := range children[p] {
			out = append(out, c)
			queue = append(queue, c)
		}
	}
	return out
}

// TestNpxEverythingServer runs the reference MCP server through npx, as the
// docs' example does, and checks that stopping or killing the adapter takes
// npx's whole process tree with it. It needs npx and the network, so it
// runs only with ARMORIQ_TEST_NPX=1.
func TestNpxEverythingServer(t *testing.T) {
	if os.Getenv("ARMORIQ_TEST_NPX") != "1" {
		t.Skip("set ARMORIQ_TEST_NPX=1 to run @modelcontextprotocol/server-everything through npx (needs the network)")
	}
	if runtime.GOOS != "linux" {
		t.Skip("scans /proc")
	}
	npx, err := lookPath("npx")
	if err != nil {
		t.Skip("npx not on PATH")
	}
	cfg := plugins.ServerConfig{
		ID: "everything", Transport: plugins.TransportStdio, Command: npx,
		Args: []string{"-y", "@modelcontextprotocol/server-everything", "stdio"},
	}
	for _, stop := range []string{"close", "sigkill-adapter"} {
		t.Run(stop, func(t *testing.T) {
			h := newHost(t, plugins.WithStartTimeout(2*time.Minute))
			a := startAdapter(t, h, cfg)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			raw, err := a.ListTools(ctx, "")
			if err != nil || !strings.Contains(string(raw), `"echo"`) {
				t.Fatalf("ListTools = %.300s, %v; want echo listed", raw, err)
			}
			if got := mustCall(t, a, "echo", map[string]any{"message": "hi"}); !strings.Contains(got, "hi") {
				t.Errorf("echo(hi) = %q", got)
			}
			adapter := h.Status()[0].PID
			tree := append(descendants(adapter), adapter)
			t.Logf("adapter %d and its tree: %v", adapter, tree)
			if len(tree) < 3 {
				t.Fatalf("expected npx to have started a process tree, got %v", tree)
			}
			switch stop {
			case "close":
				h.Close()
			case "sigkill-adapter":
				if err := syscall.Kill(adapter, syscall.SIGKILL); err != nil {
					t.Fatal(err)
				}
			}
			waitGone(t, tree...)
		})
	}
}
