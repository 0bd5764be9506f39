//go:build unix

package store

import (
	"os"
	"syscall"
)

// journalSupported says whether SQLite stores keep an audit journal here.
const journalSupported = true

// lockFile takes an exclusive lock on f for as long as it stays open, or
// fails at once if another process (or another open of the file) holds it.
func lockFile(f *os.File) error {
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err != syscall.EINTR {
			return err
		}
	}
}
