//go:build unix && !linux

package plugins

import "syscall"

// setParentDeathSignal does nothing where there is no parent-death signal:
// Serve's parent watch ends the adapter instead.
func setParentDeathSignal(*syscall.SysProcAttr, syscall.Signal) {}
