//go:build !unix

package loadbench

import "time"

// processCPU is not measured here (getrusage is Unix's).
func processCPU() (time.Duration, bool) { return 0, false }
