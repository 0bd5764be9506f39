package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/spf13/pflag"
	"gopkg.in/yaml.v3"
)

// TestDeploySettingsAreGatewayFlags reads the settings file the Kubernetes
// manifests give the gateway (deploy/kubernetes/configmap.yaml) as the
// gateway does: every key must be a flag and every value must parse, so the
// manifests cannot drift from the command.
func TestDeploySettingsAreGatewayFlags(t *testing.T) {
	data, err := os.ReadFile("../../deploy/kubernetes/configmap.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var cm struct {
		Data map[string]string `yaml:"data"`
	}
	if err := yaml.Unmarshal(data, &cm); err != nil {
		t.Fatal(err)
	}
	settings, ok := cm.Data["gateway.yaml"]
	if !ok {
		t.Fatal("configmap.yaml has no gateway.yaml")
	}
	path := filepath.Join(t.TempDir(), "gateway.yaml")
	if err := os.WriteFile(path, []byte(settings), 0o600); err != nil {
		t.Fatal(err)
	}
	fs := pflag.NewFlagSet("gateway", pflag.ContinueOnError)
	gatewayCommand().Flags(fs)
	if err := flagsFromFile(fs, path, func(string) string { return "" }); err != nil {
		t.Fatalf("deploy/kubernetes/configmap.yaml gateway.yaml: %v", err)
	}
}
