//go:build unix

package plugins

// hopSupported says whether adapters offer the hop here: where unix
// sockets and their directory permissions are what the hop relies on.
const hopSupported = true
