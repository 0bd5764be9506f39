package reconciler

import (
	"crypto/sha256"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"gopkg.in/yaml.v3"
)

// The GitHub Action and the example workflows are checked here, beside the
// GitHub reporting they drive: the action must be a composite that builds
// the CLI from its own checkout (or downloads a verified release), every
// action it uses is pinned to a full commit SHA, and every input an example
// passes must be one the action declares. actionlint and shellcheck, when
// installed (.ci/run installs them), check the rest.

type actionFile struct {
	Inputs map[string]struct {
		Default string `yaml:"default"`
	} `yaml:"inputs"`
	Runs struct {
		Using string `yaml:"using"`
		Steps []struct {
			Name string            `yaml:"name"`
			Run  string            `yaml:"run"`
			Uses string            `yaml:"uses"`
			Env  map[string]string `yaml:"env"`
			With map[string]string `yaml:"with"`
		} `yaml:"steps"`
	} `yaml:"runs"`
}

type workflowFile struct {
	On   map[string]any `yaml:"on"`
	Jobs map[string]struct {
		Steps []struct {
			Uses string            `yaml:"uses"`
			With map[string]string `yaml:"with"`
			Run  string            `yaml:"run"`
		} `yaml:"steps"`
	} `yaml:"jobs"`
}

var (
	// pinned is an action reference by full commit SHA.
	pinned = regexp.MustCompile(`^[\w.-]+/[\w./-]+@[0-9a-f]{40}$`)
	// release is armoriq's own action at a release tag.
	release = regexp.MustCompile(`^armoriq/controlplane@v\d+\.\d+\.\d+$`)
)

func readYAML(t *testing.T, path string, v any) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(data, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

func TestActionAndExampleWorkflows(t *testing.T) {
	var a actionFile
	readYAML(t, filepath.Join("..", "action.yml"), &a)
	if a.Runs.Using != "composite" {
		t.Errorf("action.yml runs.using = %q, want composite", a.Runs.Using)
	}
	for _, in := range []string{"config", "command", "version", "binary", "token"} {
		if _, ok := a.Inputs[in]; !ok {
			t.Errorf("action.yml lacks input %q", in)
		}
	}
	if a.Inputs["token"].Default != "${{ github.token }}" {
		t.Errorf("token input default %q, want the workflow token", a.Inputs["token"].Default)
	}
	var script string
	goFromMod := false
	for _, s := range a.Runs.Steps {
		script += s.Run + "\n"
		if s.Uses != "" && !pinned.MatchString(s.Uses) {
			t.Errorf("action.yml step %q uses %q: want an action pinned to a full commit SHA", s.Name, s.Uses)
		}
		if strings.HasPrefix(s.Uses, "actions/setup-go@") {
			goFromMod = s.With["go-version-file"] == "${{ github.action_path }}/go.mod" && s.With["go-version"] == "" && s.With["cache"] == "false"
		}
		if strings.Contains(s.Run, "${{") {
			t.Errorf("action.yml step %q expands ${{ }} inside its script: pass values through env", s.Name)
		}
	}
	if !goFromMod {
		t.Errorf("action.yml: want actions/setup-go with go-version-file: the action's go.mod, and its own cache off")
	}
	for _, want := range []string{
		"go build -trimpath -o \"$DIR/bin/armoriq\"",
		"-X main.version=$LABEL -X main.commit=$COMMIT",
		"check --github", "--format github",
		"gh attestation verify",
	} {
		if !strings.Contains(script, want) {
			t.Errorf("action.yml steps do not run %q", want)
		}
	}

	examples, _ := filepath.Glob(filepath.Join("..", "examples", "github-workflow", "*.yml"))
	if len(examples) != 2 {
		t.Fatalf("example workflows %v, want pr and reconcile", examples)
	}
	for _, p := range examples {
		var w workflowFile
		readYAML(t, p, &w)
		usesAction, runs := false, ""
		for _, job := range w.Jobs {
			for _, s := range job.Steps {
				runs += s.Run
				if s.Uses != "" && !pinned.MatchString(s.Uses) && !release.MatchString(s.Uses) {
					t.Errorf("%s uses %q: want a full commit SHA, or a release tag of armoriq", p, s.Uses)
				}
				if !strings.HasPrefix(s.Uses, "armoriq/controlplane@") {
					continue
				}
				usesAction = true
				for k := range s.With {
					if _, ok := a.Inputs[k]; !ok {
						t.Errorf("%s passes input %q, which action.yml does not declare", p, k)
					}
				}
				if c := s.With["command"]; c != "" && !slices.Contains([]string{"check", "validate", "test", "diff"}, c) {
					t.Errorf("%s: command %q", p, c)
				}
			}
		}
		if !usesAction {
			t.Errorf("%s does not use the action", p)
		}
		if strings.Contains(p, "reconcile") && (!strings.Contains(runs, "reconcile --once") || w.On["push"] == nil) {
			t.Errorf("%s: want 'reconcile --once' on push", p)
		}
		if strings.Contains(p, "pr.") && w.On["pull_request"] == nil {
			t.Errorf("%s: want a pull_request trigger", p)
		}
	}
}

// lintTool finds an optional linter on PATH or where .ci/run installs it.
func lintTool(t *testing.T, name, install string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	cache := os.Getenv("ARMORIQ_CACHE")
	if cache == "" {
		if home, err := os.UserHomeDir(); err == nil {
			cache = filepath.Join(home, ".cache", "armoriq")
		}
	}
	if p := filepath.Join(cache, "bin", name); cache != "" {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	t.Skipf("%s is not installed (.ci/run installs it: %s)", name, install)
	return ""
}

// TestActionlint runs actionlint on the example workflows and on the
// workflow that runs the action itself (uses: ./), which makes actionlint
// check every input passed against action.yml.
func TestActionlint(t *testing.T) {
	bin := lintTool(t, "actionlint", "go install github.com/rhysd/actionlint/cmd/actionlint@v1.7.12")
	files, _ := filepath.Glob(filepath.Join("examples", "github-workflow", "*.yml"))
	self, _ := filepath.Glob(filepath.Join(".github", "workflows", "*.yml"))
	files = append(files, self...)
	cmd := exec.Command(bin, append([]string{"-no-color"}, files...)...)
	cmd.Dir = ".."
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("actionlint %s: %v\n%s", strings.Join(files, " "), err, out)
	}
}

// TestActionScripts runs shellcheck on each script step of action.yml,
// which actionlint does not read (it lints workflows, not actions).
func TestActionScripts(t *testing.T) {
	bin := lintTool(t, "shellcheck", "apt-get install shellcheck")
	var a actionFile
	readYAML(t, filepath.Join("..", "action.yml"), &a)
	for _, s := range a.Runs.Steps {
		if s.Run == "" {
			continue
		}
		cmd := exec.Command(bin, "--shell=bash", "--severity=warning", "-")
		cmd.Stdin = strings.NewReader(s.Run)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("shellcheck on action.yml step %q: %v\n%s", s.Name, err, out)
		}
	}
}

// actionStep returns the script of the action.yml step with this id.
func actionStep(t *testing.T, id string) string {
	t.Helper()
	var a struct {
		Runs struct {
			Steps []struct {
				ID  string `yaml:"id"`
				Run string `yaml:"run"`
			} `yaml:"steps"`
		} `yaml:"runs"`
	}
	readYAML(t, filepath.Join("..", "action.yml"), &a)
	for _, s := range a.Runs.Steps {
		if s.ID == id {
			return s.Run
		}
	}
	t.Fatalf("action.yml has no step %q", id)
	return ""
}

// runStep runs a step's script with bash and env (plus PATH and HOME),
// returning its outputs ($GITHUB_OUTPUT), combined output and exit code.
func runStep(t *testing.T, script string, env map[string]string) (map[string]string, string, int) {
	t.Helper()
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("needs bash")
	}
	out := filepath.Join(t.TempDir(), "github_output")
	cmd := exec.Command(bash, "-c", script)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir(), "GITHUB_OUTPUT=" + out, "RUNNER_OS=Linux", "RUNNER_ARCH=X64"}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	log, err := cmd.CombinedOutput()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	outputs := map[string]string{}
	data, _ := os.ReadFile(out)
	for _, l := range strings.Split(string(data), "\n") {
		if k, v, ok := strings.Cut(l, "="); ok {
			outputs[k] = v
		}
	}
	return outputs, string(log), code
}

// TestActionPlanKey runs the action's plan step on a small source tree:
// the binary's cache key follows the source the binary is built from, and
// ignores tests and testdata; the commit is the ref when it is a SHA.
func TestActionPlanKey(t *testing.T) {
	for _, tool := range []string{"sha256sum", "find", "sort", "cut"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("needs %s", tool)
		}
	}
	script := actionStep(t, "plan")
	src := t.TempDir()
	write := func(p, content string) {
		os.MkdirAll(filepath.Dir(filepath.Join(src, p)), 0o755)
		if err := os.WriteFile(filepath.Join(src, p), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("go.mod", "module x\n")
	write("go.sum", "a v1 h1:x\n")
	write("cmd/armoriq/main.go", "package main\n")
	write("schema/armoriq.cue", "package armoriq\n")
	write("schema/x_test.go", "package schema\n")
	write("schema/testdata/a.yaml", "a: 1\n")
	for _, d := range []string{"compiler", "plugins", "reconciler", "runtime"} {
		write(d+"/doc.go", "package "+d+"\n")
	}
	plan := func(ref string) map[string]string {
		out, log, code := runStep(t, script, map[string]string{"ACTION_PATH": src, "ACTION_REF": ref})
		if code != 0 || !strings.HasPrefix(out["key"], "armoriq-bin-Linux-X64-") {
			t.Fatalf("plan step: exit %d, outputs %v\n%s", code, out, log)
		}
		return out
	}
	first := plan("v0.1.0")
	if first["label"] != "v0.1.0" || first["commit"] != "" || first["prebuilt"] != "false" || first["download"] != "false" {
		t.Errorf("plan outputs %v: want label v0.1.0, no commit, build from source", first)
	}
	write("schema/x_test.go", "package schema // changed\n")
	write("schema/testdata/a.yaml", "a: 2\n")
	if got := plan("v0.1.0"); got["key"] != first["key"] || got["gokey"] != first["gokey"] {
		t.Errorf("a test or testdata change moved the cache key: %s -> %s", first["key"], got["key"])
	}
	write("schema/armoriq.cue", "package armoriq // changed\n")
	second := plan("v0.1.0")
	if second["key"] == first["key"] || second["gokey"] != first["gokey"] {
		t.Errorf("a source change: key %s -> %s, gokey %s -> %s; want a new key, the same go.sum key", first["key"], second["key"], first["gokey"], second["gokey"])
	}
	write("go.sum", "a v1 h1:y\n")
	if got := plan("v0.1.0"); got["gokey"] == second["gokey"] || got["key"] == second["key"] {
		t.Errorf("a go.sum change kept the keys %s, %s", got["key"], got["gokey"])
	}
	sha := strings.Repeat("ab", 20)
	if got := plan(sha); got["commit"] != sha || got["label"] != sha {
		t.Errorf("pinned by SHA: outputs %v, want commit and label %s", got, sha)
	}
	out, log, _ := runStep(t, script, map[string]string{"ACTION_PATH": src, "ACTION_REF": "", "VERSION": "v0.1.0", "PREBUILT": ""})
	if out["download"] != "true" || out["label"] != "source" {
		t.Errorf("with version: outputs %v, want download\n%s", out, log)
	}
	out, log, _ = runStep(t, script, map[string]string{"ACTION_PATH": src, "ACTION_REF": "", "VERSION": "v0.1.0", "PREBUILT": "/usr/bin/armoriq"})
	if out["download"] != "false" || out["prebuilt"] != "true" {
		t.Errorf("with binary: outputs %v, want the prebuilt binary\n%s", out, log)
	}
}

// TestActionDownload runs the action's download step against a local
// server laid out as GitHub's release downloads: a good archive is
// installed, a tampered one fails the step (never falls back), a missing
// release falls back to building, and the provenance attestation is
// checked with gh when gh is there (here a stand-in recording its
// arguments, since the attestation service is not reachable from tests).
func TestActionDownload(t *testing.T) {
	for _, tool := range []string{"curl", "tar", "gzip", "sha256sum", "awk", "install"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("needs %s", tool)
		}
	}
	script := actionStep(t, "download")
	// A release archive holding an "armoriq" that prints its version.
	work := t.TempDir()
	os.WriteFile(filepath.Join(work, "armoriq"), []byte("#!/bin/sh\necho armoriq v0.9.0\n"), 0o755)
	archive := "armoriq_0.9.0_linux_amd64.tar.gz"
	if out, err := exec.Command("tar", "-czf", filepath.Join(work, archive), "-C", work, "armoriq").CombinedOutput(); err != nil {
		t.Fatalf("tar: %v\n%s", err, out)
	}
	good, _ := os.ReadFile(filepath.Join(work, archive))
	sum := sha256.Sum256(good)
	checksums := fmt.Sprintf("%x  %s\n%x  armoriq_0.9.0_darwin_arm64.tar.gz\n", sum, archive, sha256.Sum256([]byte("other")))
	var served atomic.Value
	served.Store(good)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/armoriq/controlplane/releases/download/v0.9.0/" + archive:
			w.Write(served.Load().([]byte))
		case "/armoriq/controlplane/releases/download/v0.9.0/checksums.txt":
			io.WriteString(w, checksums)
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	ghDir := t.TempDir()
	ghLog := filepath.Join(ghDir, "args")
	writeGH := func(exit int) {
		os.WriteFile(filepath.Join(ghDir, "gh"), []byte(fmt.Sprintf("#!/bin/sh\necho \"$@\" > %s\nexit %d\n", ghLog, exit)), 0o755)
	}
	_, ghInstalled := exec.LookPath("gh")
	run := func(version string, gh bool, extra map[string]string) (map[string]string, string, int) {
		env := map[string]string{"VERSION": version, "RELEASE_REPO": "armoriq/controlplane", "SERVER_URL": srv.URL, "DIR": t.TempDir()}
		os.MkdirAll(filepath.Join(env["DIR"], "bin"), 0o755)
		if gh {
			env["PATH"] = ghDir + string(os.PathListSeparator) + os.Getenv("PATH")
		}
		for k, v := range extra {
			env[k] = v
		}
		return runStep(t, script, env)
	}

	if ghInstalled != nil { // no gh on this machine: checksum only
		out, log, code := run("v0.9.0", false, nil)
		if code != 0 || out["ok"] != "true" || !strings.Contains(log, "checked against checksums.txt only") {
			t.Fatalf("good release without gh: exit %d, outputs %v\n%s", code, out, log)
		}
		if v, err := exec.Command(out["path"]).Output(); err != nil || string(v) != "armoriq v0.9.0\n" {
			t.Errorf("installed binary %s says %q, %v", out["path"], v, err)
		}
	}

	writeGH(0)
	out, log, code := run("v0.9.0", true, nil)
	args, _ := os.ReadFile(ghLog)
	if code != 0 || out["ok"] != "true" || !strings.Contains(string(args), "attestation verify ") || !strings.HasSuffix(strings.TrimSpace(string(args)), archive+" --repo armoriq/controlplane") {
		t.Errorf("good release with gh: exit %d, outputs %v, gh args %q\n%s", code, out, args, log)
	}

	writeGH(1)
	if _, log, code := run("v0.9.0", true, nil); code != 1 || !strings.Contains(log, "no valid build provenance attestation") {
		t.Errorf("attestation refused: exit %d, want 1\n%s", code, log)
	}

	served.Store(append(append([]byte(nil), good...), 0))
	if out, log, code := run("v0.9.0", false, nil); code != 1 || out["ok"] == "true" || !strings.Contains(log, "::error title=armoriq::"+archive+" has SHA-256") {
		t.Errorf("tampered archive: exit %d, outputs %v; want the step to fail\n%s", code, out, log)
	}
	served.Store(good)

	if out, log, code := run("v0.8.0", false, nil); code != 0 || out["ok"] != "false" || !strings.Contains(log, "::warning title=armoriq::could not download") {
		t.Errorf("missing release: exit %d, outputs %v; want a warning and a build from source\n%s", code, out, log)
	}
	if out, log, code := run("v0.9.0", false, map[string]string{"RUNNER_OS": "Windows"}); code != 0 || out["ok"] != "false" {
		t.Errorf("Windows runner: exit %d, outputs %v; want a build from source\n%s", code, out, log)
	}
	if _, log, code := run("main", false, nil); code != 2 || !strings.Contains(log, "is not a release tag") {
		t.Errorf("version main: exit %d, want 2\n%s", code, log)
	}
}
