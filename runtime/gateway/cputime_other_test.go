//go:build !unix

package gateway

import "time"

func processCPU() (time.Duration, bool) { return 0, false }
