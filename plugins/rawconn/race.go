//go:build race

package rawconn

// raceEnabled: under the race detector connections are left as they are.
// The standard library's reads and writes tell the detector that a write
// happens before the read that sees its bytes (internal/poll), which lets
// it follow goroutines that hand data to each other through a socket or a
// pipe of the same process; raw system calls would hide that and make it
// report races that are not there.
const raceEnabled = true
