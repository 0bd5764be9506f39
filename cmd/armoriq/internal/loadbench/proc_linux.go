package loadbench

import "syscall"

// setParentDeathSignal makes the kernel send SIGTERM to a child whose
// parent (the bench) dies without stopping it.
func setParentDeathSignal(a *syscall.SysProcAttr) { a.Pdeathsig = syscall.SIGTERM }
