package main

import (
	"runtime/debug"
	"testing"
)

// TestSetGCPercent: the gateway sets the collector's target it is given,
// unless the GOGC environment variable names one (which the runtime
// applied already); an empty GOGC is Go's default, so the gateway's wins.
func TestSetGCPercent(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	for _, tt := range []struct {
		gogc string
		want int
	}{
		{"", 250},    // unset (or empty): the flag's value
		{"150", 100}, // set: left as the runtime has it (100 here, set above)
		{"off", 100},
	} {
		debug.SetGCPercent(100)
		t.Setenv("GOGC", tt.gogc)
		setGCPercent(250)
		if got := debug.SetGCPercent(100); got != tt.want {
			t.Errorf("GOGC=%q: the collector's target is %d, want %d", tt.gogc, got, tt.want)
		}
	}
}
