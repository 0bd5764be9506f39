package schema

import (
	"fmt"
	"sort"
	"strings"
)

// Severity says whether a Diagnostic makes the config invalid.
type Severity int

// Severities, most severe first.
const (
	SeverityError Severity = iota
	SeverityWarning
)

// String returns "error" or "warning".
func (s Severity) String() string {
	if s == SeverityWarning {
		return "warning"
	}
	return "error"
}

// Diagnostic is one problem found in a config file. Pos points into the
// user's file (never into the schema); Path is the config path of the value
// concerned, like mcp_servers[2].url, or "" for the file as a whole.
type Diagnostic struct {
	Severity Severity
	Pos      Pos
	Path     string
	Summary  string
	Detail   string
}

// String formats d as "file:line:col: path: summary", the form validate prints.
func (d Diagnostic) String() string {
	var b strings.Builder
	b.WriteString(d.Pos.String())
	b.WriteString(": ")
	if d.Severity == SeverityWarning {
		b.WriteString("warning: ")
	}
	if d.Path != "" {
		b.WriteString(d.Path)
		b.WriteString(": ")
	}
	b.WriteString(d.Summary)
	return b.String()
}

// String formats p as file:line:col, dropping the parts that are unknown.
func (p Pos) String() string {
	s := p.File
	if s == "" {
		s = "-"
	}
	if p.Line > 0 {
		s += fmt.Sprintf(":%d", p.Line)
		if p.Col > 0 {
			s += fmt.Sprintf(":%d", p.Col)
		}
	}
	return s
}

// Diagnostics is a list of problems, normally sorted by position.
type Diagnostics []Diagnostic

// HasErrors reports whether any diagnostic is an error (warnings allowed).
func (ds Diagnostics) HasErrors() bool {
	for _, d := range ds {
		if d.Severity == SeverityError {
			return true
		}
	}
	return false
}

// Errors returns how many diagnostics are errors.
func (ds Diagnostics) Errors() int {
	n := 0
	for _, d := range ds {
		if d.Severity == SeverityError {
			n++
		}
	}
	return n
}

// Warnings returns how many diagnostics are warnings.
func (ds Diagnostics) Warnings() int { return len(ds) - ds.Errors() }

// Sort orders the list by file, line, column, then severity and text, and
// drops exact duplicates.
func (ds *Diagnostics) Sort() {
	l := *ds
	sort.SliceStable(l, func(i, j int) bool {
		a, b := l[i], l[j]
		if a.Pos.File != b.Pos.File {
			return a.Pos.File < b.Pos.File
		}
		if a.Pos.Line != b.Pos.Line {
			return a.Pos.Line < b.Pos.Line
		}
		if a.Pos.Col != b.Pos.Col {
			return a.Pos.Col < b.Pos.Col
		}
		if a.Severity != b.Severity {
			return a.Severity < b.Severity
		}
		if a.Path != b.Path {
			return a.Path < b.Path
		}
		return a.Summary < b.Summary
	})
	out := l[:0]
	for i, d := range l {
		if i > 0 && d == l[i-1] {
			continue
		}
		out = append(out, d)
	}
	*ds = out
}

// Error formats every diagnostic on its own line, so a Diagnostics can be
// returned as an error by callers that want one.
func (ds Diagnostics) Error() string {
	var b strings.Builder
	for i, d := range ds {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(d.String())
	}
	return b.String()
}

// Err returns ds as an error if it holds any error, else nil.
func (ds Diagnostics) Err() error {
	if ds.HasErrors() {
		return ds
	}
	return nil
}

func (ds *Diagnostics) add(sev Severity, pos Pos, path, format string, args ...any) {
	*ds = append(*ds, Diagnostic{Severity: sev, Pos: pos, Path: path, Summary: fmt.Sprintf(format, args...)})
}

func (ds *Diagnostics) errorf(pos Pos, path, format string, args ...any) {
	ds.add(SeverityError, pos, path, format, args...)
}

func (ds *Diagnostics) warnf(pos Pos, path, format string, args ...any) {
	ds.add(SeverityWarning, pos, path, format, args...)
}
