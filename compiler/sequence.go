package compiler

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// SourceDateEpoch is the environment variable of reproducible builds
// (reproducible-builds.org): the Unix time a build stands for.
const SourceDateEpoch = "SOURCE_DATE_EPOCH"

// LocalSequence is the rollback-protection sequence of a bundle compiled
// from files that are not a clean git checkout (in git, the commit time is
// the sequence): SOURCE_DATE_EPOCH when getenv has it, else the newest
// modification time of paths, in Unix seconds. how says which, for the
// user ("SOURCE_DATE_EPOCH", "modification time of armoriq.yaml"). A
// SOURCE_DATE_EPOCH that is not a positive integer is an error, as is a
// path that cannot be read: a bundle never gets sequence 0 by accident.
func LocalSequence(getenv func(string) string, paths ...string) (seq int64, how string, err error) {
	if getenv != nil {
		if v := strings.TrimSpace(getenv(SourceDateEpoch)); v != "" {
			n, err := ParseSequence(v)
			if err != nil {
				return 0, "", fmt.Errorf("%s: %v", SourceDateEpoch, err)
			}
			return n, SourceDateEpoch, nil
		}
	}
	if len(paths) == 0 {
		return 0, "", fmt.Errorf("no source file to take a sequence from")
	}
	newest := ""
	for _, p := range paths {
		fi, err := os.Stat(p)
		if err != nil {
			return 0, "", err
		}
		if t := fi.ModTime().Unix(); t > seq || newest == "" {
			seq, newest = t, p
		}
	}
	if seq <= 0 {
		return 0, "", fmt.Errorf("%s has modification time %d, before 1970: give --sequence or %s", newest, seq, SourceDateEpoch)
	}
	return seq, "modification time of " + filepath.ToSlash(newest), nil
}

// ParseSequence parses a sequence given by a user: a positive decimal
// integer (Unix seconds, by convention).
func ParseSequence(s string) (int64, error) {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("want a positive integer (Unix seconds), got %q", s)
	}
	return n, nil
}
