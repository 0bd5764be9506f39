package cputime

import (
	"runtime"
	"testing"
)

// TestProcess: where getrusage is there, the CPU time grows with work done
// (a busy loop of about ten milliseconds of CPU).
func TestProcess(t *testing.T) {
	before, ok := Process()
	if !ok {
		if runtime.GOOS != "windows" && runtime.GOOS != "plan9" && runtime.GOOS != "js" && runtime.GOOS != "wasip1" {
			t.Fatalf("Process() on %s: not measured", runtime.GOOS)
		}
		t.Skip("no getrusage on this system")
	}
	x := 0
	for after := before; after-before <= 0; after, _ = Process() {
		for i := range 1 << 20 {
			x += i
		}
	}
	_ = x
}
