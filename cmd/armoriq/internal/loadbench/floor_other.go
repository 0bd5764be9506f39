//go:build !linux

package loadbench

import "os"

// durableWrite writes rec at off in f and returns once it is on stable
// storage (fsync: pwritev2 and fdatasync are Linux's).
func durableWrite(f *os.File, rec []byte, off int64) error {
	if _, err := f.WriteAt(rec, off); err != nil {
		return err
	}
	return f.Sync()
}
