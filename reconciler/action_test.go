package reconciler

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// The GitHub Action and the example workflows are checked here, beside the
// GitHub reporting they drive: the action must be a composite that builds
// the CLI from its own checkout, and every input an example passes must be
// one the action declares.

type actionFile struct {
	Inputs map[string]struct {
		Default string `yaml:"default"`
	} `yaml:"inputs"`
	Runs struct {
		Using string `yaml:"using"`
		Steps []struct {
			Run  string            `yaml:"run"`
			Uses string            `yaml:"uses"`
			Env  map[string]string `yaml:"env"`
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
	for _, in := range []string{"config", "command", "go-version", "binary", "token"} {
		if _, ok := a.Inputs[in]; !ok {
			t.Errorf("action.yml lacks input %q", in)
		}
	}
	if a.Inputs["token"].Default != "${{ github.token }}" {
		t.Errorf("token input default %q, want the workflow token", a.Inputs["token"].Default)
	}
	var script string
	for _, s := range a.Runs.Steps {
		script += s.Run + "\n"
	}
	for _, want := range []string{"go build -trimpath -o \"$path\" ./cmd/armoriq", "check --github", "--format github"} {
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
