package loadbench

import (
	"os"
	"os/exec"
)

// setChildProcAttr does nothing: Windows has no process groups to signal.
func setChildProcAttr(*exec.Cmd) {}

// terminate kills the process: Windows has no SIGTERM.
func terminate(pid int) { killGroup(pid) }

// killGroup kills the process.
func killGroup(pid int) {
	if p, err := os.FindProcess(pid); err == nil {
		_ = p.Kill()
	}
}
