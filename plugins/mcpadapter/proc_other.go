//go:build unix && !linux

package mcpadapter

import "syscall"

func setParentDeathSignal(*syscall.SysProcAttr) {}
