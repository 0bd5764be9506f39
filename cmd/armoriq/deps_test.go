package main

import (
	"bufio"
	"bytes"
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/armoriq/controlplane/"

// TestDependencyRules enforces the package map of DESIGN.md: imports flow one
// way, the leaves stay leaves, the runtime never imports the compiler or the
// reconciler, and the reconciler reaches gateways over HTTP only.
func TestDependencyRules(t *testing.T) {
	if testing.Short() {
		t.Skip("needs the go command")
	}
	out, err := exec.Command("go", "list", "-deps=false", "-f", `{{.ImportPath}} {{join .Deps " "}}`, "../../...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	deps := map[string][]string{} // package → our packages it depends on, transitively
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 || !strings.HasPrefix(f[0], module) {
			continue
		}
		pkg := strings.TrimPrefix(f[0], module)
		for _, d := range f[1:] {
			if strings.HasPrefix(d, module) {
				deps[pkg] = append(deps[pkg], strings.TrimPrefix(d, module))
			}
		}
	}
	if len(deps) == 0 && len(out) == 0 {
		t.Fatal("go list found no packages")
	}

	// allowed[p] lists the prefixes of ours p may depend on; a package not
	// named here is not restricted (cmd/armoriq wires everything).
	allowed := map[string][]string{
		"schema":             {},
		"compiler/bundle":    {},
		"runtime/intent":     {},
		"runtime/policy":     {"compiler/bundle"},
		"runtime/store":      {},
		"runtime/telemetry":  {},
		"runtime/httpfront":  {},
		"runtime/identity":   {},
		"runtime/client":     {"runtime/intent"},
		"runtime/approval":   {"runtime/store"},
		"runtime/console":    {"compiler/bundle", "runtime/store", "runtime/approval"},
		"plugins":            {"plugins/"},
		"plugins/mcpadapter": {"plugins"},
		"plugins/proto":      {},
		"plugins/rawconn":    {},
		"compiler":           {"schema", "compiler/bundle", "runtime/policy"},
		"runtime/gateway":    {"compiler/bundle", "runtime/", "plugins"},
		"reconciler":         {"schema", "compiler", "runtime/client", "runtime/intent", "runtime/policy"},
	}
	// anyLeaf are leaves any package may import (each is listed above with
	// no dependency of ours): plugins/rawconn, raw reads and writes (and peeks) of
	// sockets and pipes, for the hop, the adapters, the gateway's listener
	// and the store's PostgreSQL connections.
	anyLeaf := map[string]bool{"plugins/rawconn": true}
	for pkg, prefixes := range allowed {
		for _, d := range deps[pkg] {
			ok := anyLeaf[d] && len(allowed[d]) == 0
			for _, p := range prefixes {
				if d == p || strings.HasPrefix(d, strings.TrimSuffix(p, "/")+"/") || (strings.HasSuffix(p, "/") && strings.HasPrefix(d, p)) {
					ok = true
				}
			}
			if strings.HasPrefix(d, pkg+"/internal") {
				ok = true
			}
			if !ok {
				t.Errorf("%s depends on %s, which DESIGN.md's package map forbids (allowed: %v)", pkg, d, prefixes)
			}
		}
	}
	// The runtime must never import the compiler (only the leaf bundle) nor
	// the reconciler, whatever else changes.
	for pkg, ds := range deps {
		if !strings.HasPrefix(pkg, "runtime/") {
			continue
		}
		for _, d := range ds {
			if d == "compiler" || strings.HasPrefix(d, "reconciler") {
				t.Errorf("%s imports %s: the runtime only imports compiler/bundle", pkg, d)
			}
		}
	}
}
