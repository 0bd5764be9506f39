//go:build !unix

package store

import (
	"errors"
	"os"
)

// journalSupported says whether SQLite stores keep an audit journal here:
// not without flock, so every audit batch commits to SQLite directly.
const journalSupported = false

func lockFile(*os.File) error { return errors.New("file locks are not supported on this system") }
