package plugins

import (
	"net"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

// TestSweepHopLeftovers: at start the host removes a hop directory whose
// socket nobody listens on, and keeps one an adapter listens on, one too
// young to judge, and one holding something else.
func TestSweepHopLeftovers(t *testing.T) {
	t.Setenv("TMPDIR", t.TempDir())
	old := time.Now().Add(-2 * hopSweepAge)
	mk := func(listen, keepOpen bool, age time.Time, extra string) string {
		dir, err := os.MkdirTemp("", hopDirPrefix)
		if err != nil {
			t.Fatal(err)
		}
		if listen {
			l, err := net.Listen("unix", filepath.Join(dir, hopSocketName))
			if err != nil {
				t.Fatal(err)
			}
			if keepOpen {
				t.Cleanup(func() { l.Close() })
			} else {
				l.(*net.UnixListener).SetUnlinkOnClose(false) // as a killed adapter leaves it
				l.Close()
			}
		}
		if extra != "" {
			if err := os.WriteFile(filepath.Join(dir, extra), []byte("x"), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.Chtimes(dir, age, age); err != nil {
			t.Fatal(err)
		}
		return dir
	}
	stale := mk(true, false, old, "")
	empty := mk(false, false, old, "")
	live := mk(true, true, old, "")
	young := mk(true, false, time.Now(), "")
	other := mk(true, false, old, "notes.txt")

	removed := sweepHopLeftovers()
	slices.Sort(removed)
	want := []string{stale, empty}
	slices.Sort(want)
	if !slices.Equal(removed, want) {
		t.Errorf("removed %v, want %v", removed, want)
	}
	for _, d := range []string{live, young, other} {
		if _, err := os.Stat(filepath.Join(d, hopSocketName)); err != nil {
			t.Errorf("%s was touched: %v", d, err)
		}
	}
	for _, d := range want {
		if _, err := os.Stat(d); !os.IsNotExist(err) {
			t.Errorf("%s is still there", d)
		}
	}
}
