package mcpadapter

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/armoriq/controlplane/plugins"
)

func TestLineLogger(t *testing.T) {
	var got []string
	w := &lineLogger{log: func(s string) { got = append(got, s) }}
	for _, chunk := range []string{"first li", "ne\r\nsecond\n\nthird", " part\n", "unterminated"} {
		w.Write([]byte(chunk))
	}
	if want := "first line|second|third part"; strings.Join(got, "|") != want {
		t.Errorf("lines: got %q, want %q", strings.Join(got, "|"), want)
	}
}

// TestStdioStartFailureSaysWhy: a stdio server that exits during the
// handshake is reported with its exit status and its own last stderr line,
// not the SDK's "connection closed: EOF".
func TestStdioStartFailureSaysWhy(t *testing.T) {
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh")
	}
	tests := []struct {
		name    string
		command string
		args    []string
		want    []string
	}{
		{"exits with a reason", sh, []string{"-c", "echo starting >&2; echo 'ENOENT: no such file or directory, /srv/shared' >&2; exit 3"},
			[]string{"did not start", "exit status 3", "its stderr ends with: ENOENT: no such file or directory, /srv/shared"}},
		{"exits silently", sh, []string{"-c", "exit 1"}, []string{"did not start", "writing nothing on stderr"}},
		{"not installed", "no-such-mcp-server-xyz", nil, []string{`stdio server "no-such-mcp-server-xyz"`, "executable file not found"}},
	}
	for _, tc := range tests {
		a := NewStdio()
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		err := a.Configure(ctx, plugins.ServerConfig{ID: "files", Transport: plugins.TransportStdio, Command: tc.command, Args: tc.args})
		cancel()
		a.Close()
		if err == nil {
			t.Errorf("%s: Configure succeeded", tc.name)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: got %q, want it to contain %q", tc.name, err, w)
			}
		}
		if strings.Contains(err.Error(), "connection closed") {
			t.Errorf("%s: got %q: the SDK's wording, not the reason", tc.name, err)
		}
	}
}

func TestLineLoggerTail(t *testing.T) {
	w := &lineLogger{log: func(string) {}}
	for i := range 30 {
		fmt.Fprintf(w, "line %d\n", i)
	}
	w.Write([]byte("partial"))
	got := w.tail()
	if len(got) != tailLines+1 || got[0] != "line 10" || got[len(got)-1] != "partial" {
		t.Errorf("tail: got %q", got)
	}
}
