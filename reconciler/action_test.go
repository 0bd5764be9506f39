package reconciler

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
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
