package schema

import (
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// schemaLeak matches what a diagnostic must never show: the schema's
// definitions or file.
var schemaLeak = regexp.MustCompile(`#(Config|Identity|Proxy|Server|Auth|Policy|Rule|Intent|Test|Gateway|IdentityProvider|Algorithm)\b|armoriq\.cue|_\|_`)

var update = flag.Bool("update", false, "rewrite testdata/diag/*.golden")

// TestGolden loads each file in testdata/diag and compares its diagnostics,
// one per line, with the .golden file beside it. Run with -update to
// rewrite the golden files after a deliberate change.
func TestGolden(t *testing.T) {
	files, _ := filepath.Glob("testdata/diag/*")
	n := 0
	for _, f := range files {
		if strings.HasSuffix(f, ".golden") {
			continue
		}
		n++
		t.Run(filepath.Base(f), func(t *testing.T) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			_, ds := Parse(filepath.Base(f), data)
			got := ds.Error() + "\n"
			if m := schemaLeak.FindString(got); m != "" {
				t.Errorf("diagnostics for %s mention the schema's internals (%q):\n%s", f, m, got)
			}
			golden := strings.TrimSuffix(f, filepath.Ext(f)) + ".golden"
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -update to create it)", err)
			}
			if got != string(want) {
				t.Errorf("diagnostics for %s:\ngot:\n%s\nwant:\n%s", f, got, want)
			}
		})
	}
	if n == 0 {
		t.Fatal("no inputs in testdata/diag")
	}
}

// FuzzParse feeds arbitrary bytes to the loader, seeded with the examples
// and the golden inputs: it must never panic, and a nil Config must come
// with an error.
func FuzzParse(f *testing.F) {
	for _, p := range append(exampleFiles(f), globOrNil("testdata/diag/*.yaml")...) {
		if data, err := os.ReadFile(p); err == nil {
			f.Add(filepath.Base(p), data)
		}
	}
	for _, p := range append(globOrNil("../examples/*/*.hcl"), globOrNil("testdata/diag/*.hcl")...) {
		if data, err := os.ReadFile(p); err == nil {
			f.Add(filepath.Base(p), data)
		}
	}
	f.Fuzz(func(t *testing.T, name string, data []byte) {
		name = "f" + filepath.Ext(name)
		c, ds := Parse(name, data)
		if c == nil && !ds.HasErrors() {
			t.Fatalf("Parse(%q): nil Config without an error", data)
		}
		for _, d := range ds {
			if d.Pos.File != name {
				t.Fatalf("Parse(%q): diagnostic %q points outside the file", data, d)
			}
		}
	})
}

func globOrNil(p string) []string {
	m, _ := filepath.Glob(p)
	return m
}
