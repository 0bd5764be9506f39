package loadbench

import (
	"os"
	"runtime"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// durableWrite writes rec at off in f and returns once it is on stable
// storage, as the audit journal does on Linux (runtime/store,
// journal_linux.go): one pwritev2 with RWF_DSYNC made as a raw system call
// (no hand-off to the scheduler, no wake-up of its monitor thread), or,
// where the kernel refuses the flag, a write and an fdatasync.
func durableWrite(f *os.File, rec []byte, off int64) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var werr error
	if err := rc.Control(func(fd uintptr) {
		iov := [1]unix.Iovec{{Base: unsafe.SliceData(rec), Len: uint64(len(rec))}}
		for {
			n, _, e := syscall.RawSyscall6(unix.SYS_PWRITEV2, fd, uintptr(unsafe.Pointer(&iov[0])), 1, uintptr(off), 0, unix.RWF_DSYNC)
			runtime.KeepAlive(rec)
			switch {
			case e == syscall.EINTR:
				continue
			case e == unix.ENOSYS || e == unix.EOPNOTSUPP || e == unix.EINVAL:
				werr = writeAndSync(f, fd, rec, off)
			case e != 0:
				werr = os.NewSyscallError("pwritev2", e)
			case int(n) < len(rec):
				werr = writeAndSync(f, fd, rec[n:], off+int64(n))
			}
			return
		}
	}); err != nil {
		return err
	}
	return werr
}

// writeAndSync is durableWrite where the kernel refuses RWF_DSYNC.
func writeAndSync(f *os.File, fd uintptr, b []byte, off int64) error {
	if _, err := f.WriteAt(b, off); err != nil {
		return err
	}
	for {
		if err := syscall.Fdatasync(int(fd)); err != syscall.EINTR {
			return err
		}
	}
}
