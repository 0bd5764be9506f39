package stdioserver

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// The test binary plays the child of these tests when ARMORIQ_TEST_ROLE
// says which.
func TestMain(m *testing.M) {
	switch os.Getenv("ARMORIQ_TEST_ROLE") {
	case "pollable":
		// Reports whether standard input is read through the poller: only
		// a pollable file takes a read deadline.
		in := pollableStdin()
		fmt.Println(in != nil && in.SetReadDeadline(time.Time{}) == nil)
		os.Exit(0)
	case "server":
		// An MCP server with no tools (ping answers), collecting garbage
		// without pause so that stops of the world are frequent.
		go func() {
			for {
				runtime.GC()
			}
		}()
		s := mcp.NewServer(&mcp.Implementation{Name: "stdioserver-test", Version: "1"}, nil)
		if err := s.Run(context.Background(), Transport()); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func child(t *testing.T, role string) *exec.Cmd {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), "ARMORIQ_TEST_ROLE="+role)
	cmd.Stderr = os.Stderr
	return cmd
}

// TestPollableStdin: standard input is read through the poller when it is
// a pipe, and left alone when it is not (here a character device).
func TestPollableStdin(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("the poller does not serve pipes on Windows: the SDK's stdio transport is kept")
	}
	devNull, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer devNull.Close()
	for _, tc := range []struct {
		name  string
		stdin func(cmd *exec.Cmd) // nil: a pipe
		want  string
	}{
		{"pipe", nil, "true"},
		{"character device", func(cmd *exec.Cmd) { cmd.Stdin = devNull }, "false"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd := child(t, "pollable")
			if tc.stdin != nil {
				tc.stdin(cmd)
			} else {
				w, err := cmd.StdinPipe()
				if err != nil {
					t.Fatal(err)
				}
				defer w.Close()
			}
			out, err := cmd.Output()
			if err != nil {
				t.Fatal(err)
			}
			if got := string(out); got != tc.want+"\n" {
				t.Errorf("stdin read through the poller: %q, want %s", got, tc.want)
			}
		})
	}
}

// stressCalls is how many requests TestNoStall sends: ARMORIQ_STRESS_CALLS,
// or a number that keeps the test short. With the SDK's stdio transport a
// server stalled about once in 100,000 requests of this test.
func stressCalls(t *testing.T) int {
	if s := os.Getenv("ARMORIQ_STRESS_CALLS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n <= 0 {
			t.Fatalf("ARMORIQ_STRESS_CALLS=%q: want a positive number", s)
		}
		return n
	}
	if testing.Short() {
		return 500
	}
	return 2000
}

// TestNoStall sends requests one at a time, each after the answer to the
// previous one, to a server over Transport that collects garbage without
// pause: every request is answered. A request left waiting past the
// (generous) deadline is the stall of a stop of the world waiting for the
// read of standard input, which only the next request would end.
func TestNoStall(t *testing.T) {
	cmd := child(t, "server")
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		in.Close()
		if err := cmd.Wait(); err != nil {
			t.Errorf("server: %v", err)
		}
	}()
	answers := make(chan []byte)
	go func() {
		defer close(answers)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			answers <- append([]byte(nil), sc.Bytes()...)
		}
	}()
	const stall = 20 * time.Second // far beyond any answer; not a speed check
	n := stressCalls(t)
	for i := range n {
		if _, err := fmt.Fprintf(in, `{"jsonrpc":"2.0","id":%d,"method":"ping"}`+"\n", i); err != nil {
			t.Fatalf("writing ping %d: %v", i, err)
		}
		select {
		case line, ok := <-answers:
			if !ok {
				t.Fatalf("ping %d: the server closed its stdout", i)
			}
			var resp struct {
				ID     int             `json:"id"`
				Result json.RawMessage `json:"result"`
			}
			if err := json.Unmarshal(line, &resp); err != nil || resp.ID != i || resp.Result == nil {
				t.Fatalf("ping %d answered %s", i, line)
			}
		case <-time.After(stall):
			t.Fatalf("ping %d: no answer within %s: the server stalled", i, stall)
		}
	}
}
