//go:build !race

package rawconn

// raceEnabled: see race.go.
const raceEnabled = false
