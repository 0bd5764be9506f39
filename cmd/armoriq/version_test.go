package main

import (
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime/debug"
	"testing"
)

func TestReadBuildInfo(t *testing.T) {
	vcs := func(rev, modified string) *debug.BuildInfo {
		return &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}, Settings: []debug.BuildSetting{
			{Key: "vcs.revision", Value: rev}, {Key: "vcs.modified", Value: modified},
		}}
	}
	for _, tt := range []struct {
		name, version, commit string
		bi                    *debug.BuildInfo
		want                  string
	}{
		{"stamped by a release", "v1.2.3", "0123456789abcdef0123456789abcdef01234567", vcs("", ""), "v1.2.3 (commit 0123456789ab)"},
		{"stamped version, commit from git", "v1.2.3", "", vcs("fedcba9876543210fedcba9876543210fedcba98", "false"), "v1.2.3 (commit fedcba987654)"},
		{"a checkout with local changes", "", "", vcs("fedcba9876543210fedcba9876543210fedcba98", "true"), "devel (commit fedcba987654, modified)"},
		{"go install of a tag", "", "", &debug.BuildInfo{Main: debug.Module{Version: "v0.4.0"}}, "v0.4.0 (commit unknown)"},
		{"nothing known", "", "", nil, "devel (commit unknown)"},
		{"a stamp differing from git is not called modified", "main", "0123456789abcdef0123456789abcdef01234567", vcs("fedcba9876543210fedcba9876543210fedcba98", "true"), "main (commit 0123456789ab)"},
	} {
		if got := readBuildInfo(tt.version, tt.commit, tt.bi).String(); got != tt.want {
			t.Errorf("%s: got %q, want %q", tt.name, got, tt.want)
		}
	}
}

// TestVersionStamped builds armoriq as the Action and releases do and runs
// "armoriq version": the -X names in action.yml and .goreleaser.yaml must
// be the variables of this package.
func TestVersionStamped(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command")
	}
	bin := filepath.Join(t.TempDir(), "armoriq")
	build := exec.Command(gobin, "build", "-o", bin, "-ldflags", "-X main.version=v9.8.7 -X main.commit=0123456789abcdef0123456789abcdef01234567", ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	out, err := exec.Command(bin, "version").Output()
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`^armoriq v9\.8\.7 \(commit 0123456789ab\) \S+/\S+ go`).Match(out) {
		t.Errorf("armoriq version printed %q, want the stamped release and commit", out)
	}
}
