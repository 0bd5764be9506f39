package policy

import (
	"go/parser"
	"go/token"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestLeaf keeps the engine a leaf: of this module's packages it may import
// only compiler/bundle (and its own internal packages), so the gateway can
// use it without the compiler.
func TestLeaf(t *testing.T) {
	const mod = "github.com/armoriq/controlplane/"
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		af, err := parser.ParseFile(token.NewFileSet(), f, nil, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		for _, imp := range af.Imports {
			p, _ := strconv.Unquote(imp.Path.Value)
			if strings.HasPrefix(p, mod) && p != mod+"compiler/bundle" {
				t.Errorf("%s imports %s: runtime/policy may import only compiler/bundle of ours", f, p)
			}
		}
	}
}
