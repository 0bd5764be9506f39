package loadbench

import (
	"os"
	"slices"
	"testing"

	"github.com/armoriq/controlplane/runtime/telemetry/cputime"
)

// TestDurableWrites: n timings, sorted, and the file they wrote removed
// from the directory (the gateway's data directory, in a run).
func TestDurableWrites(t *testing.T) {
	dir := t.TempDir()
	d, cpu, err := durableWrites(dir, 20)
	if err != nil {
		t.Fatal(err)
	}
	if len(d) != 20 || !slices.IsSorted(d) || d[0] <= 0 {
		t.Errorf("durableWrites(20) = %v, want 20 positive durations, sorted", d)
	}
	if _, ok := cputime.Process(); ok && cpu <= 0 {
		t.Errorf("durableWrites(20): CPU time %v, want the writes' time, above zero", cpu)
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

// TestUnixRoundTripsCPU: the round trips to a real echo process (this
// test binary, run as armoriq bench echo by TestMain) come back with the
// CPU time of both sides, where getrusage is there to read it.
func TestUnixRoundTripsCPU(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := cputime.Process(); !ok {
		t.Skip("no getrusage on this system: the floor's CPU time is not measured")
	}
	d, cpu, err := unixRoundTrips(t.Context(), exe, 200)
	if err != nil {
		t.Fatal(err)
	}
	if len(d) != 200 || !slices.IsSorted(d) {
		t.Errorf("unixRoundTrips(200): %d durations (sorted %v), want 200, sorted", len(d), slices.IsSorted(d))
	}
	if cpu <= 0 {
		t.Errorf("unixRoundTrips(200): CPU time %v, want the two processes' time, above zero", cpu)
	}
}
