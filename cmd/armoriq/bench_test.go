package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rogpeppe/go-internal/testscript"
)

// TestBenchBadFlags checks that each bad flag of armoriq bench is a usage
// error (exit 2) saying what is wrong, before any process starts.
func TestBenchBadFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--concurrency", ""}, `--concurrency: "" is not a number of workers`},
		{[]string{"--concurrency", "1,x"}, `--concurrency: "x" is not a number of workers`},
		{[]string{"--concurrency", "2000"}, `"2000" is not a number of workers from 1 to 1024`},
		{[]string{"--rounds", "0"}, "--rounds must be at least 1"},
		{[]string{"--round", "1ms"}, "--round 1ms is too short"},
		{[]string{"--warmup", "-2s"}, "--warmup must not be negative"},
		{[]string{"--sqlite-sync", "off"}, `--sqlite-sync must be full or normal, got "off"`},
		{[]string{"--mcp-version", "2024-01-01"}, "--mcp-version must be 2025-11-25 or 2026-07-28"},
		{[]string{"--gateway-exe", "/nonexistent/armoriq"}, `--gateway-exe "/nonexistent/armoriq": not an executable file`},
		{[]string{"--gateway-exe", "."}, `--gateway-exe ".": not an executable file`},
		{[]string{"--peer", "p"}, `--peer "p": want NAME=URL`},
		{[]string{"--peer", "p=ftp://x"}, "the URL must be http:// or https://"},
		{[]string{"--peer", "a b=http://x"}, `peer name "a b" must be`},
		{[]string{"--peer", "proxy=http://x"}, `peer name "proxy" is one of the bench's own targets`},
		{[]string{"--peer", "p=http://x", "--stdio-peer", "p=http://y"}, "--peer p is given twice"},
		{[]string{"--peer", "p=http://x", "--peer-pid", "q=1"}, `--peer-pid "q=1": want NAME=PID`},
		{[]string{"--peer", "p=http://x", "--peer-pid", "p=0"}, `"0" is not a process id`},
		{[]string{"--peer-tool", ""}, "--peer-tool must not be empty"},
		{[]string{"extra"}, "takes at most 0 argument(s)"},
		{[]string{"--bogus"}, "unknown flag: --bogus"},
	} {
		var stdout, stderr bytes.Buffer
		e := &env{Stdin: strings.NewReader(""), Stdout: &stdout, Stderr: &stderr, Getenv: func(string) string { return "" }}
		// Cancelled: flags that pass would stop the bench before it
		// starts anything (in a test, its children would be this binary).
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		code := run(ctx, append([]string{"bench"}, tc.args...), e)
		if code != exitUsage || !strings.Contains(stderr.String(), tc.want) {
			t.Errorf("bench %q: exit %d, stderr %q; want exit %d and %q", tc.args, code, stderr.String(), exitUsage, tc.want)
		}
	}
}

// cmdProcsGone checks that no process listed in a bench --ready-file
// (lines "role pid") still runs, waiting up to 10 s for them to exit:
// procsgone FILE.
func cmdProcsGone(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: procsgone FILE")
	}
	deadline := time.Now().Add(10 * time.Second)
	for _, line := range strings.Split(strings.TrimSpace(ts.ReadFile(args[0])), "\n") {
		f := strings.Fields(line)
		if len(f) != 2 {
			ts.Fatalf("%s: line %q is not ROLE PID", args[0], line)
		}
		pid, err := strconv.Atoi(f[1])
		ts.Check(err)
		for running(pid) {
			if time.Now().After(deadline) {
				ts.Fatalf("the %s (pid %d) still runs", f[0], pid)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}

// running says whether pid is a live process (not a zombie).
func running(pid int) bool {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return false
	}
	i := bytes.LastIndexByte(b, ')')
	f := strings.Fields(string(b[i+1:]))
	return len(f) > 0 && f[0] != "Z" && f[0] != "X"
}
