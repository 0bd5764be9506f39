package main

import (
	"context"
	"fmt"
	"runtime"
	"runtime/debug"
	"strings"
)

// Set at build time, by the Action and by releases:
//
//	go build -ldflags "-X main.version=v1.2.3 -X main.commit=<sha>" ./cmd/armoriq
var (
	version = ""
	commit  = ""
)

// buildInfo is what "armoriq version" says of the build: the release (or
// the Action ref it was built from), the commit, and whether the tree had
// local changes.
type buildInfo struct {
	Version, Commit string
	Modified        bool
}

// readBuildInfo combines the -ldflags stamps with what the Go toolchain
// recorded: the module version (go install ...@v1.2.3) and the VCS
// revision (a build inside a git checkout).
func readBuildInfo(stampedVersion, stampedCommit string, bi *debug.BuildInfo) buildInfo {
	info := buildInfo{Version: stampedVersion, Commit: stampedCommit}
	if bi != nil {
		if info.Version == "" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			info.Version = bi.Main.Version
		}
		var rev string
		var modified bool
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.modified":
				modified = s.Value == "true"
			}
		}
		if info.Commit == "" {
			info.Commit = rev
		}
		// Local changes are only known of the revision git recorded.
		info.Modified = modified && rev != "" && rev == info.Commit
	}
	if info.Version == "" {
		info.Version = "devel"
	}
	return info
}

// String is "v1.2.3 (commit 0123456789ab)", "devel (commit …, modified)" or
// "devel (commit unknown)".
func (b buildInfo) String() string {
	c := b.Commit
	switch {
	case c == "":
		c = "unknown"
	case len(c) > 12 && !strings.ContainsAny(c, " /"):
		c = c[:12]
	}
	if b.Modified {
		c += ", modified"
	}
	return fmt.Sprintf("%s (commit %s)", b.Version, c)
}

func currentBuild() buildInfo {
	bi, _ := debug.ReadBuildInfo()
	return readBuildInfo(version, commit, bi)
}

// buildVersion reports the version stamped at build time, or the module version.
func buildVersion() string { return currentBuild().Version }

func versionCommand() *command {
	return &command{
		Use:   "version",
		Short: "Print the armoriq version and commit",
		Long: `version prints the release armoriq was built as (or the Action ref it
was built from, or "devel"), the commit, the platform and the Go version.
Release and Action builds stamp the version and commit with -ldflags; other
builds report what the Go toolchain recorded (the module version of a
"go install ...@vX.Y.Z", the git revision of a build inside a checkout).`,
		Run: func(ctx context.Context, e *env, args []string) error {
			fmt.Fprintf(e.Stdout, "armoriq %s %s/%s %s\n", currentBuild(), runtime.GOOS, runtime.GOARCH, runtime.Version())
			return nil
		},
	}
}
