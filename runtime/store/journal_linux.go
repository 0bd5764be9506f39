package store

import (
	"os"
	"syscall"
)

// datasync flushes f's data to stable storage. The journal is preallocated
// and written in place, so its metadata (size, blocks) does not change and
// fdatasync need not flush it.
func datasync(f *os.File) error {
	for {
		err := syscall.Fdatasync(int(f.Fd()))
		if err != syscall.EINTR {
			return err
		}
	}
}
