package main

import (
	"slices"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/armoriq/controlplane/plugins"
	"github.com/armoriq/controlplane/schema"
)

// TestProtocolVersionsAgree: a server's protocol pin is checked three
// times, by armoriq.cue's #ProtocolVersion (armoriq validate), by the host
// and by the adapter; the three lists, which packages that import nothing
// of each other keep apart, are the versions the go-sdk speaks.
func TestProtocolVersionsAgree(t *testing.T) {
	sdk := mcp.SupportedProtocolVersions()
	if got := schema.ProtocolVersions(); !slices.Equal(got, sdk) {
		t.Errorf("schema.ProtocolVersions() = %v, the go-sdk speaks %v", got, sdk)
	}
	if got := plugins.ProtocolVersions(); !slices.Equal(got, sdk) {
		t.Errorf("plugins.ProtocolVersions() = %v, the go-sdk speaks %v", got, sdk)
	}
	for _, v := range append(sdk, "2025-11-26") {
		src := "version: v1\nmcp_servers:\n  - id: s\n    url: https://mcp.example.com/mcp\n    protocol: \"" + v + "\"\n"
		cfg, ds := schema.Parse("armoriq.yaml", []byte(src))
		known := slices.Contains(sdk, v)
		if ok := !ds.HasErrors(); ok != known {
			t.Errorf("protocol %q: valid %v (%v), want %v", v, ok, ds, known)
		}
		if known && (cfg == nil || len(cfg.Servers) != 1 || cfg.Servers[0].Protocol != v) {
			t.Errorf("protocol %q: decoded %+v", v, cfg)
		}
	}
}
