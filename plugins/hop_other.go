//go:build !unix

package plugins

import (
	"os"
	"syscall"
)

// hopSupported says whether adapters offer the hop here: not without unix
// sockets (Windows has them, but not the directory permissions the hop
// relies on); raw calls go on Raw.Session.
const hopSupported = false

// nowReader reads nothing here, where the host does not use the hop.
type nowReader struct{}

func newNowReader(syscall.RawConn) *nowReader { return nil }

func (*nowReader) read([]byte) (int, error) { return 0, os.ErrDeadlineExceeded }
