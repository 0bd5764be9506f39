package compiler

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/armoriq/controlplane/compiler/bundle"
)

func TestLocalSequence(t *testing.T) {
	dir := t.TempDir()
	a, b := filepath.Join(dir, "armoriq.yaml"), filepath.Join(dir, "more.hcl")
	for _, f := range []struct {
		path string
		at   int64
	}{{a, 1790000000}, {b, 1790000500}} {
		if err := os.WriteFile(f.path, []byte("version: v1\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(f.path, time.Unix(f.at, 0), time.Unix(f.at, 0)); err != nil {
			t.Fatal(err)
		}
	}
	env := func(v string) func(string) string {
		return func(k string) string {
			if k == SourceDateEpoch {
				return v
			}
			return ""
		}
	}
	tests := []struct {
		name    string
		getenv  func(string) string
		paths   []string
		want    int64
		how     string
		wantErr string
	}{
		{"modification time", nil, []string{a}, 1790000000, "modification time of " + filepath.ToSlash(a), ""},
		{"newest of several", env(""), []string{a, b}, 1790000500, "modification time of " + filepath.ToSlash(b), ""},
		{"SOURCE_DATE_EPOCH wins", env("1800000000"), []string{a}, 1800000000, "SOURCE_DATE_EPOCH", ""},
		{"SOURCE_DATE_EPOCH with spaces", env(" 1800000000\n"), []string{a}, 1800000000, "SOURCE_DATE_EPOCH", ""},
		{"SOURCE_DATE_EPOCH not a number", env("yesterday"), []string{a}, 0, "", `SOURCE_DATE_EPOCH: want a positive integer (Unix seconds), got "yesterday"`},
		{"SOURCE_DATE_EPOCH zero", env("0"), []string{a}, 0, "", "want a positive integer"},
		{"SOURCE_DATE_EPOCH negative", env("-7"), []string{a}, 0, "", "want a positive integer"},
		{"SOURCE_DATE_EPOCH fraction", env("1800000000.5"), []string{a}, 0, "", "want a positive integer"},
		{"missing file", nil, []string{filepath.Join(dir, "nope.yaml")}, 0, "", "no such file"},
		{"no file", nil, nil, 0, "", "no source file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, how, err := LocalSequence(tt.getenv, tt.paths...)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("LocalSequence = %d, %v; want an error containing %q", got, err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want || how != tt.how {
				t.Errorf("LocalSequence = %d, %q, %v; want %d, %q", got, how, err, tt.want, tt.how)
			}
		})
	}
	// Before 1970: refused rather than taken as "no sequence".
	if err := os.Chtimes(a, time.Unix(0, 0), time.Unix(0, 0)); err != nil {
		t.Fatal(err)
	}
	if _, _, err := LocalSequence(nil, a); err == nil || !strings.Contains(err.Error(), "give --sequence") {
		t.Errorf("LocalSequence of a file dated 1970: %v, want an error", err)
	}
}

// TestOptionsSequence: Options.Sequence sets the manifest's sequence over
// the commit time; same input, key and sequence give the same bytes.
func TestOptionsSequence(t *testing.T) {
	cfg := parse(t, "armoriq.yaml", []byte(sampleYAML))
	commit := time.Unix(1793534400, 0)
	tests := []struct {
		name string
		opts Options
		want int64
	}{
		{"content hash, no sequence", Options{}, 0},
		{"content hash with a sequence", Options{Sequence: 1790000000}, 1790000000},
		{"commit time", Options{Revision: "abc", CreatedAt: commit}, 1793534400},
		{"sequence over commit time", Options{Revision: "abc", CreatedAt: commit, Sequence: 7}, 7},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			write := func() []byte {
				b, err := Compile(cfg, tt.opts)
				if err != nil {
					t.Fatal(err)
				}
				if b.Manifest.Sequence != tt.want {
					t.Errorf("Compile(%+v) sequence %d, want %d", tt.opts, b.Manifest.Sequence, tt.want)
				}
				var buf bytes.Buffer
				if err := bundle.Write(&buf, b, testKey(), ""); err != nil {
					t.Fatal(err)
				}
				return buf.Bytes()
			}
			if first, second := write(), write(); !bytes.Equal(first, second) {
				t.Errorf("Compile(%+v) twice gave different bytes", tt.opts)
			}
		})
	}
}
