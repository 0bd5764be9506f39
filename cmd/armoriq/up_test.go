package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestQuickstartConfigIsTheExample: what up writes is the example the
// README shows.
func TestQuickstartConfigIsTheExample(t *testing.T) {
	want, err := os.ReadFile("../../examples/quickstart/armoriq.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(quickstartConfig, want) {
		t.Error("cmd/armoriq/quickstart.yaml differs from examples/quickstart/armoriq.yaml: copy one onto the other")
	}
}

// TestUpLeavesNoProcess stops armoriq up with SIGTERM and with SIGKILL and
// checks that none of its descendants (the adapter, the demo weather
// server it spawned) outlives it.
func TestUpLeavesNoProcess(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("reads the process tree from /proc")
	}
	// testscript.Main puts this test binary on PATH as armoriq.
	exe, err := exec.LookPath("armoriq")
	if err != nil {
		t.Fatal(err)
	}
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGKILL} {
		t.Run(sig.String(), func(t *testing.T) {
			dir := t.TempDir()
			var out bytes.Buffer
			cmd := exec.Command(exe, "up", "--addr", "127.0.0.1:0", "--ready-file", "url.txt")
			cmd.Dir, cmd.Stdout, cmd.Stderr = dir, &out, &out
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			defer cmd.Process.Kill()
			deadline := time.Now().Add(30 * time.Second)
			for {
				if b, err := os.ReadFile(filepath.Join(dir, "url.txt")); err == nil && bytes.HasSuffix(b, []byte("\n")) {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("up did not get ready in 30s:\n%s", out.String())
				}
				time.Sleep(20 * time.Millisecond)
			}
			desc := descendants(t, cmd.Process.Pid)
			var cmdlines []string
			for _, p := range desc {
				cmdlines = append(cmdlines, p.cmdline)
			}
			all := strings.Join(cmdlines, "\n")
			if !strings.Contains(all, "adapter stdio") || !strings.Contains(all, "demo-server weather") {
				t.Fatalf("up's descendants: got\n%s\nwant the stdio adapter and the demo weather server", all)
			}

			if err := cmd.Process.Signal(sig); err != nil {
				t.Fatal(err)
			}
			err := cmd.Wait()
			if sig == syscall.SIGTERM && err != nil {
				t.Errorf("up after SIGTERM: %v (want a clean exit)\n%s", err, out.String())
			}
			for {
				var alive []string
				for _, p := range desc {
					if p.alive() {
						alive = append(alive, strconv.Itoa(p.pid)+" "+p.cmdline)
					}
				}
				if len(alive) == 0 {
					return
				}
				if time.Now().After(deadline.Add(10 * time.Second)) {
					t.Fatalf("after %s, up's descendants still run:\n%s", sig, strings.Join(alive, "\n"))
				}
				time.Sleep(50 * time.Millisecond)
			}
		})
	}
}

// proc is a process seen in /proc: its pid and start time (so a reused pid
// is not mistaken for it) and command line.
type proc struct {
	pid     int
	start   string
	cmdline string
}

// statFields returns /proc/PID/stat's fields after the command name:
// state is [0], ppid [1], start time [19].
func statFields(pid int) []string {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return nil
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return nil
	}
	return strings.Fields(string(b[i+1:]))
}

func (p proc) alive() bool {
	f := statFields(p.pid)
	return len(f) > 19 && f[19] == p.start && f[0] != "Z"
}

// descendants lists every live process below pid.
func descendants(t *testing.T, pid int) []proc {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	children := map[int][]proc{}
	for _, e := range entries {
		n, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		f := statFields(n)
		if len(f) <= 19 || f[0] == "Z" {
			continue
		}
		ppid, _ := strconv.Atoi(f[1])
		cl, _ := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		children[ppid] = append(children[ppid], proc{pid: n, start: f[19], cmdline: strings.TrimSpace(strings.ReplaceAll(string(cl), "\x00", " "))})
	}
	var out []proc
	var walk func(int)
	walk = func(p int) {
		for _, c := range children[p] {
			out = append(out, c)
			walk(c.pid)
		}
	}
	walk(pid)
	return out
}
