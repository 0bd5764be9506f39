package plugins_test

import (
	"go/parser"
	"go/token"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestImports keeps the contract below the runtime: package plugins and its
// subpackages import nothing of armoriq but themselves.
func TestImports(t *testing.T) {
	const module = "github.com/armoriq/controlplane/"
	files, _ := filepath.Glob("*.go")
	sub, _ := filepath.Glob("*/*.go")
	files = append(files, sub...)
	fset := token.NewFileSet()
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		af, err := parser.ParseFile(fset, f, nil, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		for _, imp := range af.Imports {
			path, _ := strconv.Unquote(imp.Path.Value)
			if strings.HasPrefix(path, module) && !strings.HasPrefix(path, module+"plugins") {
				t.Errorf("%s imports %s: plugins must import nothing else of armoriq", f, path)
			}
		}
	}
	if len(files) < 5 {
		t.Fatalf("found only %d files to check: %v", len(files), files)
	}
}
