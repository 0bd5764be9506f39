//go:build !unix

package cputime

import "time"

// Process is not measured here (getrusage is Unix's): ok is false.
func Process() (d time.Duration, ok bool) { return 0, false }
