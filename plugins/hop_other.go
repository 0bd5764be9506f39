//go:build !unix

package plugins

// hopSupported says whether adapters offer the hop here: not without unix
// sockets (Windows has them, but not the directory permissions the hop
// relies on); raw calls go on Raw.Session.
const hopSupported = false
