package schema

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// DefaultNames are the file names FindDefault looks for, in order.
var DefaultNames = []string{"armoriq.yaml", "armoriq.yml", "armoriq.hcl"}

// Parse decodes a config file's bytes, checks it against the schema and the
// semantic rules, and applies defaults. The format follows the extension
// (.yaml, .yml, .hcl), else it is sniffed. The returned diagnostics are
// sorted by position and hold every problem found. The Config is nil only if
// the file could not be decoded at all; otherwise it is returned even when
// invalid (callers must check Diagnostics.HasErrors).
func Parse(filename string, data []byte) (*Config, Diagnostics) {
	var (
		root  *node
		diags Diagnostics
	)
	if isHCL(filename, data) {
		root, diags = parseHCL(filename, data)
	} else {
		root, diags = parseYAML(filename, data)
	}
	if root == nil {
		diags.Sort()
		return nil, diags
	}
	diags = append(diags, checkSchema(root)...)
	c := decode(root)
	diags = append(diags, check(root, c)...)
	sum := sha256.Sum256(data)
	c.Sources = []Source{{Path: filename, SHA256: hex.EncodeToString(sum[:]), Data: data}}
	diags.Sort()
	return c, diags
}

// LoadFile reads and parses the file at path. An unreadable file is one
// diagnostic without a line.
func LoadFile(path string) (*Config, Diagnostics) {
	data, err := os.ReadFile(path)
	if err != nil {
		msg := err.Error()
		var pe *fs.PathError
		if errors.As(err, &pe) {
			msg = pe.Err.Error()
		}
		return nil, Diagnostics{{Severity: SeverityError, Pos: Pos{File: path}, Summary: "cannot read file: " + msg}}
	}
	return Parse(path, data)
}

// FindDefault returns the config file in dir: armoriq.yaml, armoriq.yml or
// armoriq.hcl, in that order.
func FindDefault(dir string) (string, error) {
	for _, name := range DefaultNames {
		p := filepath.Join(dir, name)
		if st, err := os.Stat(p); err == nil && !st.IsDir() {
			return p, nil
		}
	}
	return "", errors.New("no armoriq.yaml, armoriq.yml or armoriq.hcl in " + dir + " (run 'armoriq init' to create one)")
}

// IsNotReadable reports whether ds says the file could not be read at all
// (as opposed to read and found invalid).
func (ds Diagnostics) IsNotReadable() bool {
	return len(ds) == 1 && ds[0].Pos.Line == 0 && strings.HasPrefix(ds[0].Summary, "cannot read file")
}

// isHCL decides the format: by extension, else by sniffing the content.
// YAML has "key:" where HCL has "key =" or "block {".
func isHCL(filename string, data []byte) bool {
	switch strings.ToLower(filepath.Ext(filename)) {
	case ".hcl":
		return true
	case ".yaml", ".yml", ".json":
		return false
	}
	for _, line := range bytes.Split(data, []byte("\n")) {
		l := strings.TrimSpace(string(line))
		if l == "" || strings.HasPrefix(l, "#") || strings.HasPrefix(l, "//") || l == "---" {
			continue
		}
		colon := strings.IndexByte(l, ':')
		eq := strings.IndexAny(l, "={")
		return eq >= 0 && (colon < 0 || eq < colon)
	}
	return false
}
