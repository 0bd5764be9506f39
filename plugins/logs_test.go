package plugins_test

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/armoriq/controlplane/plugins"
)

// syncBuffer is a bytes.Buffer safe for the host's concurrent log writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// waitLog waits until the log holds every want, or fails saying what it holds.
func waitLog(t *testing.T, log *syncBuffer, want ...string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		missing := ""
		for _, w := range want {
			if !strings.Contains(log.String(), w) {
				missing = w
				break
			}
		}
		if missing == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the host's log lacks %q:\n%s", missing, log.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestStdioServerThatCannotStart: the host's log and the adapter's status
// say why, in the server's own words, with its id, at WARN; the restarts
// are logged and counted.
func TestStdioServerThatCannotStart(t *testing.T) {
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh")
	}
	var log syncBuffer
	h := newHost(t, plugins.WithLog(&log, "warn"))
	err = h.Sync(context.Background(), []plugins.ServerConfig{{
		ID: "files", Transport: plugins.TransportStdio, Command: sh,
		Args: []string{"-c", "echo 'Error: ENOENT: no such file or directory, stat /srv/shared' >&2; exit 1"},
	}})
	if err == nil || !strings.Contains(err.Error(), "its stderr ends with: Error: ENOENT: no such file or directory, stat /srv/shared") {
		t.Fatalf("Sync: got %v, want the server's own last stderr line", err)
	}
	waitLog(t, &log,
		"[WARN]  armoriq.plugins.files", "stdio server stderr", "server=files", "ENOENT",
		"adapter down; restarting", "restart=1")
	st := h.Status()[0]
	deadline := time.Now().Add(10 * time.Second)
	for st.Restarts < 1 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
		st = h.Status()[0]
	}
	if st.Restarts < 1 || !strings.Contains(st.LastError, "ENOENT") || strings.Contains(st.LastError, "connection closed") {
		t.Errorf("status: got %+v, want restarts counted and the server's reason", st)
	}
}

// TestCustomAdapterThatCannotStart: what a custom adapter prints before it
// dies (not a log line) reaches the host's log at WARN with the server id.
func TestCustomAdapterThatCannotStart(t *testing.T) {
	if _, err := exec.LookPath("sh"); err != nil {
		t.Skip("no sh")
	}
	bin := filepath.Join(t.TempDir(), "broken-adapter")
	script := "#!/bin/sh\necho 'broken-adapter: cannot read /etc/broken.conf: permission denied' >&2\nexit 2\n"
	if err := os.WriteFile(bin, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	var log syncBuffer
	h := newHost(t, plugins.WithLog(&log, "warn"))
	err := h.Sync(context.Background(), []plugins.ServerConfig{{ID: "broken", Transport: plugins.TransportPlugin, Path: bin, SHA256: sha256File(t, bin)}})
	if err == nil {
		t.Fatal("Sync of an adapter that exits at once succeeded")
	}
	waitLog(t, &log, "armoriq.plugins.broken", "adapter stderr", "cannot read /etc/broken.conf: permission denied", "adapter down; restarting")
}
