//go:build unix

package loadbench

import (
	"syscall"
	"time"
)

// processCPU is the CPU time (user and system, every thread) this process
// has used, to the microsecond; ok is false where it cannot be read.
func processCPU() (time.Duration, bool) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0, false
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), true
}
