package plugins

import "syscall"

// setParentDeathSignal asks Linux to send sig to the child when the thread
// that started it exits, which for a Go program means when the process dies
// (Go does not retire threads unless a goroutine exits while locked to one).
func setParentDeathSignal(attr *syscall.SysProcAttr, sig syscall.Signal) {
	attr.Pdeathsig = sig
}
