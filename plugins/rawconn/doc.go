// Package rawconn gives sockets whose reads and writes skip the Go
// runtime's bookkeeping for system calls that may block.
//
// A read or write on a Go socket is a non-blocking system call: when it
// would wait, the runtime parks the goroutine on its network poller. Yet
// the standard library makes it through syscall.Syscall, which tells the
// scheduler a blocking call begins and ends (entersyscall, exitsyscall).
// When every processor of the runtime was idle, as it is between two calls
// at low load, that first system call also wakes the runtime's monitor
// thread (sysmon), which then naps 20 µs at a time until the process is
// idle again. Each of those is a context switch; on a virtual machine a
// context switch is what costs (docs/performance-history.md, sixth round).
//
// A Conn makes the same read(2), write(2) and writev(2) calls with
// syscall.RawSyscall, inside the descriptor's syscall.RawConn: the poller,
// deadlines, Close and every other method behave as on the connection it
// wraps. Only calls that cannot block are made this way.
//
// Wrap, WrapFile and Listen return what they are given where this is not
// Linux, and under the race detector (race.go says why).
package rawconn

// Enabled reports whether Wrap, WrapFile and Listen make connections raw
// in this build: on Linux, outside the race detector.
func Enabled() bool { return enabled && (!raceEnabled || forceRaw) }
