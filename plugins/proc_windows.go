package plugins

import "os/exec"

// Windows has no process groups to kill nor a parent-death signal: the
// host kills the adapter process itself, and Serve's parent watch ends an
// adapter whose host is gone.
func setAdapterProcAttr(*exec.Cmd) {}

func killGroup(int) {}
