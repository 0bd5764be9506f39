//go:build unix

package mcpadapter

import (
	"os/exec"
	"syscall"
)

// setChildProcAttr puts a stdio server in a process group of its own, so
// killing the group takes whatever it spawned (npx → sh → node) with it,
// and on Linux gives it SIGKILL when the adapter dies.
func setChildProcAttr(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	setParentDeathSignal(cmd.SysProcAttr)
}

func killGroup(pid int) {
	if pid > 0 {
		_ = syscall.Kill(-pid, syscall.SIGKILL)
	}
}
