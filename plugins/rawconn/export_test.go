package rawconn

// ForceRaw makes Wrap and WrapFile wrap even under the race detector, for
// this package's own tests.
func ForceRaw() func() {
	forceRaw = true
	return func() { forceRaw = false }
}
