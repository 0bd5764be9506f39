//go:build !linux

package store

import (
	"fmt"
	"os"
)

// datasync flushes f to stable storage (F_FULLFSYNC on macOS).
func datasync(f *os.File) error { return f.Sync() }

// durableWriter makes a batch's frames durable: a write, then a sync
// (Linux writes and syncs in one system call: journal_linux.go).
type durableWriter struct{}

// writeSynced writes b at off in j's file and returns once it is on stable
// storage.
func (j *auditJournal) writeSynced(b []byte, off int64) error {
	if _, err := j.f.WriteAt(b, off); err != nil {
		return fmt.Errorf("write %s: %w", j.path, err)
	}
	if err := datasync(j.f); err != nil {
		return fmt.Errorf("sync %s: %w", j.path, err)
	}
	return nil
}
