package store

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
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

// durableWriter makes a batch's frames durable. On Linux that is one
// system call, pwritev2 with RWF_DSYNC: the write returns once the range
// it wrote is on stable storage, as fdatasync would have it (data, and the
// metadata needed to read it back: none here, the file being preallocated
// with written zeros and synced before any frame lands in the grown part).
// A kernel without pwritev2 (before 4.6) or RWF_DSYNC (before 4.7), or a
// file system or sandbox refusing the flag, answers ENOSYS, EOPNOTSUPP or
// EINVAL before writing anything; the journal then writes with pwrite and
// fdatasync, two system calls, for as long as it stays open.
type durableWriter struct {
	// refused is set once the kernel has refused pwritev2 with RWF_DSYNC.
	// Only the group commit's leaders use it, one at a time.
	refused bool
	// pwritev2 is unix.Pwritev2 when nil; tests count its calls or make it
	// fail as an older kernel would.
	pwritev2 func(fd int, iovs [][]byte, off int64, flags int) (int, error)
	// iov holds the one buffer of a call (a slice literal would be
	// allocated per batch).
	iov [1][]byte
}

// writeSynced writes b at off in j's file and returns once it is on stable
// storage.
func (j *auditJournal) writeSynced(b []byte, off int64) error {
	w := &j.dw
	pwritev2 := w.pwritev2
	if pwritev2 == nil {
		pwritev2 = unix.Pwritev2
	}
	defer func() { w.iov[0] = nil }()
	for !w.refused && len(b) > 0 {
		w.iov[0] = b
		n, err := pwritev2(int(j.f.Fd()), w.iov[:], off, unix.RWF_DSYNC)
		switch {
		case err == syscall.EINTR:
			continue
		case errors.Is(err, unix.ENOSYS), errors.Is(err, unix.EOPNOTSUPP), errors.Is(err, unix.EINVAL):
			w.refused = true
			slog.Info("audit journal: the kernel refuses pwritev2 with RWF_DSYNC; writing with pwrite and fdatasync instead", "journal", j.path, "err", err)
		case err != nil:
			return fmt.Errorf("write %s: %w", j.path, err)
		case n <= 0:
			return fmt.Errorf("write %s: %w", j.path, io.ErrShortWrite)
		default:
			// A short write synced what it wrote; the rest goes on.
			b, off = b[n:], off+int64(n)
		}
	}
	if len(b) == 0 {
		return nil
	}
	if _, err := j.f.WriteAt(b, off); err != nil {
		return fmt.Errorf("write %s: %w", j.path, err)
	}
	// fdatasync covers the whole file: also whatever an interrupted
	// pwritev2 of this batch wrote before the refusal.
	if err := datasync(j.f); err != nil {
		return fmt.Errorf("sync %s: %w", j.path, err)
	}
	return nil
}
