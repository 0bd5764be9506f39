package store

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"syscall"
	"time"
	"unsafe"

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
	// pwritev2 is the system call's when nil (pwritev2Of); tests count
	// its calls or make it fail as an older kernel would.
	pwritev2 func(fd int, iovs [][]byte, off int64, flags int) (int, error)
	// slowAt is when the last slow raw sync ended, zero while writes are
	// raw (pwritev2Of): writes go through the runtime from then until one
	// of them, started rawSyncPause or more after it, is quick.
	slowAt time.Time
	// iov holds the one buffer of a call (a slice literal would be
	// allocated per batch).
	iov [1][]byte
}

// writeSynced writes b at off in j's file and returns once it is on stable
// storage.
func (j *auditJournal) writeSynced(b []byte, off int64) error {
	w := &j.dw
	start := time.Now()
	pwritev2 := w.pwritev2Of()
	defer func() { w.iov[0] = nil }()
	for !w.refused && len(b) > 0 {
		w.iov[0] = b
		n, err := pwritev2(int(j.f.Fd()), w.iov[:], off, unix.RWF_DSYNC)
		w.took(start, time.Now(), err)
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

// rawSyncMax is the longest a synced write made as a raw system call may
// take before the journal goes back to runtime-aware ones (see
// pwritev2Of). Syncs on a healthy SSD or a cloud volume take 0.05 to 3 ms
// (0.1 ms at p50 and 0.5 to 3 ms at p99 on the development machine, a VM);
// a sync over 10 ms says the disk may be struggling. The runtime's writes
// go on for at least rawSyncPause, and until one of them is quick.
const (
	rawSyncMax   = 10 * time.Millisecond
	rawSyncPause = 100 * time.Millisecond
)

// pwritev2Of returns the pwritev2 the next batch is written with.
//
// A write that waits for the disk would normally be made through the
// runtime (unix.Pwritev2 calls syscall.Syscall6): the scheduler marks the
// goroutine's processor as in a system call, may hand it to another thread
// if the call lasts, and, when every processor was idle (at low load,
// between calls), wakes its monitor thread (sysmon), which then naps 20 µs
// at a time while the call lasts. On a virtual machine each of those
// wake-ups is a context switch that costs more than the write
// (docs/performance-history.md, sixth round): so the journal makes it
// as a raw system call (rawPwritev2), which keeps its processor for the
// sync, about 0.1 ms on an SSD. One sync is in flight at a time (the group
// commit's leader), so at most one processor is held.
//
// A raw system call cannot be preempted, and a garbage collection that
// stops the world waits for it: on a slow disk that would stall the whole
// process for as long as the sync lasts. So a raw sync that took longer
// than rawSyncMax sends the writes that follow through the runtime, for
// rawSyncPause and then until one of them is quick again: a disk that
// stays slow is never written raw, and a lone slow sync (a virtual
// machine's hiccup, a few times a second under load here) costs 0.1 s of
// runtime writes. Until the seventh round the pause was a second, renewed
// by every slow write, the runtime's own included, whose time counts the
// wait for a processor after the call: it renewed itself, and 21% of the
// syncs at one caller, 26% at 16, went through the runtime, each one a
// processor the monitor thread could hand to another thread. With one processor
// only (GOMAXPROCS=1: the sync would hold the processor every other
// goroutine needs meanwhile) every write goes through the runtime.
func (w *durableWriter) pwritev2Of() func(fd int, iovs [][]byte, off int64, flags int) (int, error) {
	switch {
	case w.pwritev2 != nil:
		return w.pwritev2
	case !w.slowAt.IsZero(), runtime.GOMAXPROCS(0) < 2:
		return unix.Pwritev2
	}
	return rawPwritev2
}

// took notes that a synced write ran from start to end and returned err.
func (w *durableWriter) took(start, end time.Time, err error) {
	switch {
	case end.Sub(start) > rawSyncMax:
		if w.slowAt.IsZero() {
			w.slowAt = end // a slow runtime write does not extend the pause
		}
	case err == nil && !w.slowAt.IsZero() && start.Sub(w.slowAt) >= rawSyncPause:
		w.slowAt = time.Time{} // quick again, after the pause: raw from now
	}
}

// rawPwritev2 is unix.Pwritev2 of one buffer made with syscall.RawSyscall6.
func rawPwritev2(fd int, iovs [][]byte, off int64, flags int) (int, error) {
	b := iovs[0]
	iov := [1]unix.Iovec{{Base: unsafe.SliceData(b), Len: uint64(len(b))}}
	n, _, e := syscall.RawSyscall6(unix.SYS_PWRITEV2, uintptr(fd), uintptr(unsafe.Pointer(&iov[0])), 1, uintptr(off), 0, uintptr(flags))
	runtime.KeepAlive(b)
	if e != 0 {
		return 0, e
	}
	return int(n), nil
}
