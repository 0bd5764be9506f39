package httpfront

import (
	"testing"
	"time"
)

func TestStale(t *testing.T) {
	now := time.Unix(1000, 0)
	tol := time.Second
	for _, tc := range []struct {
		name      string
		set, want time.Time
		stale     bool
	}{
		{"none set, none wanted", time.Time{}, time.Time{}, false},
		{"none set, one wanted", time.Time{}, now.Add(time.Minute), true},
		{"one set, none wanted", now.Add(time.Minute), time.Time{}, true},
		{"the same", now.Add(time.Minute), now.Add(time.Minute), false},
		{"early within the tolerance", now.Add(time.Minute - 900*time.Millisecond), now.Add(time.Minute), false},
		{"early beyond the tolerance", now.Add(time.Minute - 1100*time.Millisecond), now.Add(time.Minute), true},
		{"later than wanted (looser): never kept", now.Add(time.Minute + time.Millisecond), now.Add(time.Minute), true},
		{"passed, though close", now.Add(-time.Millisecond), now.Add(500 * time.Millisecond), true},
	} {
		if got := stale(tc.set, tc.want, now, tol); got != tc.stale {
			t.Errorf("%s: stale(set %v, want %v) = %v, want %v", tc.name, tc.set.Sub(now), tc.want.Sub(now), got, tc.stale)
		}
	}
	if got := tolerance(10 * time.Second); got != 625*time.Millisecond {
		t.Errorf("tolerance(10s) = %v, want a sixteenth", got)
	}
	if got := tolerance(time.Hour); got != time.Second {
		t.Errorf("tolerance(1h) = %v, want at most a second", got)
	}
}

func TestEndOfHeader(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int
	}{
		{"GET / HTTP/1.1\r\nHost: x\r\n\r\nbody", 27},
		{"GET / HTTP/1.1\nHost: x\n\nbody", 24},
		{"GET / HTTP/1.1\nHost: x\n\r\nbody", 25},
		{"GET / HTTP/1.1\r\nHost: x\r\n", -1},
		{"GET / HTTP/1.1\r\nHost: x\r\n\r", -1},
		{"GET / HTTP/1.1\r\nX: a\rb\r\n\r\n", 26},
		{"\r\n\r\n", 4},
		{"\n\n", 2},
		{"", -1},
	} {
		if got := endOfHeader([]byte(tc.in)); got != tc.want {
			t.Errorf("endOfHeader(%q) = %d, want %d", tc.in, got, tc.want)
		}
	}
}

func TestHostLines(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int
	}{
		{"GET / HTTP/1.1\r\nHost: x\r\n\r\n", 1},
		{"GET / HTTP/1.1\r\nhOsT: x\r\nHOST: y\r\n\r\n", 2},
		{"GET / HTTP/1.1\r\nX-Host: x\r\nHostname: y\r\n\r\n", 0},
		{"GET /Host: HTTP/1.1\r\n\r\n", 0},
	} {
		if got := hostLines([]byte(tc.in)); got != tc.want {
			t.Errorf("hostLines(%q) = %d, want %d", tc.in, got, tc.want)
		}
	}
}
