//go:build unix

package plugins

import (
	"os/exec"
	"syscall"
)

// setAdapterProcAttr puts the adapter in a process group of its own, so the
// host can kill it with everything that stayed in its group, and so a
// terminal's Ctrl-C reaches only the gateway, which then stops its adapters
// in order. On Linux the adapter also gets a parent-death signal.
func setAdapterProcAttr(cmd *exec.Cmd) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Setpgid = true
	setParentDeathSignal(cmd.SysProcAttr, syscall.SIGTERM)
}

// killGroup sends SIGKILL to the process group led by pid.
func killGroup(pid int) {
	if pid > 0 {
		_ = syscall.Kill(-pid, syscall.SIGKILL)
	}
}
