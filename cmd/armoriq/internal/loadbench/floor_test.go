package loadbench

import (
	"os"
	"slices"
	"testing"
)

// TestDurableWrites: n timings, sorted, and the file they wrote removed
// from the directory (the gateway's data directory, in a run).
func TestDurableWrites(t *testing.T) {
	dir := t.TempDir()
	d, err := durableWrites(dir, 20)
	if err != nil {
		t.Fatal(err)
	}
	if len(d) != 20 || !slices.IsSorted(d) || d[0] <= 0 {
		t.Errorf("durableWrites(20) = %v, want 20 positive durations, sorted", d)
	}
	if left, _ := os.ReadDir(dir); len(left) != 0 {
		t.Errorf("durableWrites left %v in its directory", left)
	}
}

// TestDurableWritesBadDir: a directory that does not exist is an error
// that names it, not a floor of zeros.
func TestDurableWritesBadDir(t *testing.T) {
	if _, err := measureFloor(t.Context(), t.TempDir()+"/missing", "armoriq"); err == nil {
		t.Fatal("measureFloor in a missing directory: no error")
	}
}

// TestEchoNoSocket: the echo side fails when nothing listens.
func TestEchoNoSocket(t *testing.T) {
	if err := Echo(t.TempDir() + "/none"); err == nil {
		t.Fatal("Echo to a missing socket: no error")
	}
}
