package plugins_test

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/armoriq/controlplane/plugins"
)

func sha256File(t testing.TB, path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

func lookPath(name string) (string, error) { return exec.LookPath(name) }

// alive reports whether pid is a running process (a zombie is not).
func alive(pid int) bool {
	if pid <= 0 {
		return false
	}
	if runtime.GOOS == "linux" {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			return false
		}
		// pid (comm) state ...; comm may hold spaces and parentheses.
		s := string(b)
		rest := s[strings.LastIndexByte(s, ')')+1:]
		f := strings.Fields(rest)
		return len(f) > 0 && f[0] != "Z" && f[0] != "X"
	}
	return syscall.Kill(pid, 0) == nil
}

// waitGone fails the test unless every pid is gone within 10 seconds.
func waitGone(t testing.TB, pids ...int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		var left []int
		for _, pid := range pids {
			if alive(pid) {
				left = append(left, pid)
			}
		}
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("processes still running after 10s: %v", left)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// runGateway is the test binary as a gateway: it runs a host with a stdio
// adapter, prints the adapter's and the server's pids, and waits to be
// killed.
func runGateway() int {
	exe, _ := os.Executable()
	h := plugins.NewHost(plugins.WithExecutable(exe), plugins.WithEnv("ARMORIQ_TEST_ROLE=adapter"), plugins.WithLog(os.Stderr, "error"))
	ctx := context.Background()
	err := h.Sync(ctx, []plugins.ServerConfig{{
		ID: "local", Transport: plugins.TransportStdio, Command: exe,
		Env: map[string]string{"ARMORIQ_TEST_ROLE": "mcp-stdio"},
	}})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	a, _ := h.Get("local")
	child, err := callText(ctx, a, "pid", nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Printf("adapter=%d child=%s\n", h.Status()[0].PID, child)
	select {}
}

// TestNoOrphansWhenGatewayIsKilled SIGKILLs a gateway process and checks
// that its adapter and the adapter's MCP server go away on their own.
func TestNoOrphansWhenGatewayIsKilled(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("scans /proc")
	}
	cmd := exec.Command(testExe(t))
	cmd.Env = append(os.Environ(), "ARMORIQ_TEST_ROLE=gateway")
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatalf("reading the gateway's pids: %v", err)
	}
	var adapter, child int
	if _, err := fmt.Sscanf(line, "adapter=%d child=%d", &adapter, &child); err != nil {
		t.Fatalf("gateway printed %q: %v", line, err)
	}
	if !alive(adapter) || !alive(child) {
		t.Fatalf("adapter %d or server %d not running before the kill", adapter, child)
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	waitGone(t, adapter, child)
}

// TestKilledAdapterTakesItsServer SIGKILLs a stdio adapter: its MCP server
// must die with it, and the restarted adapter starts a new one.
func TestKilledAdapterTakesItsServer(t *testing.T) {
	h := newHost(t)
	a := startAdapter(t, h, stdioServer("local"))
	child, _ := strconv.Atoi(mustCall(t, a, "pid", nil))
	adapter := h.Status()[0].PID
	if err := syscall.Kill(adapter, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitGone(t, adapter, child)
	waitRestarted(t, h, 1)
	next, _ := strconv.Atoi(mustCall(t, a, "pid", nil))
	if next == child || !alive(next) {
		t.Errorf("after the restart the server pid is %d (was %d), want a new live one", next, child)
	}
}

// waitRestarted waits until the host has restarted its only adapter n times.
func waitRestarted(t testing.TB, h *plugins.Host, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		st := h.Status()[0]
		if st.Restarts >= n && st.State == plugins.StateUp {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("adapter not restarted %d times within 10s: %+v", n, st)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
