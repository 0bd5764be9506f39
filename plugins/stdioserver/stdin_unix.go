//go:build unix

package stdioserver

import (
	"os"
	"syscall"
)

// pollableStdin returns standard input as a file the runtime reads through
// its poller, or nil to keep os.Stdin. Only a pipe or a socket is changed:
// the non-blocking mode belongs to the open file, shared with whoever else
// holds it, and a terminal is shared with the shell that started us.
func pollableStdin() *os.File {
	var st syscall.Stat_t
	if err := syscall.Fstat(0, &st); err != nil {
		return nil
	}
	if m := st.Mode & syscall.S_IFMT; m != syscall.S_IFIFO && m != syscall.S_IFSOCK {
		return nil
	}
	if err := syscall.SetNonblock(0, true); err != nil {
		return nil
	}
	// A descriptor already in non-blocking mode is read through the poller.
	return os.NewFile(0, "/dev/stdin")
}
