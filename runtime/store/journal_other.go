//go:build !linux

package store

import "os"

// datasync flushes f to stable storage (F_FULLFSYNC on macOS).
func datasync(f *os.File) error { return f.Sync() }
