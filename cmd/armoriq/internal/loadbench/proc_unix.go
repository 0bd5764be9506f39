//go:build unix

package loadbench

import (
	"os/exec"
	"syscall"
)

// setChildProcAttr puts a child in a process group of its own, as the
// gateway does with its adapters: a terminal's Ctrl-C reaches only the
// bench, which then stops its children in order (the gateway first, so
// that it stops its adapters itself).
func setChildProcAttr(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	setParentDeathSignal(cmd.SysProcAttr)
}

// terminate asks the process group led by pid to stop (SIGTERM).
func terminate(pid int) { _ = syscall.Kill(-pid, syscall.SIGTERM) }

// killGroup kills the process group led by pid (SIGKILL).
func killGroup(pid int) { _ = syscall.Kill(-pid, syscall.SIGKILL) }
