package reconciler

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"fmt"
	"time"

	"github.com/armoriq/controlplane/compiler"
	"github.com/armoriq/controlplane/compiler/bundle"
	"github.com/armoriq/controlplane/schema"
)

// Builder runs the validate → compile → sign steps with the same code as
// "armoriq validate" and "armoriq compile".
type Builder struct {
	Key             ed25519.PrivateKey
	KeyID           string
	CompilerVersion string
	// Sequence, when not 0, is every bundle's sequence instead of its
	// commit time (compiler.Options.Sequence): for 'armoriq register'
	// outside git.
	Sequence int64
}

// Build is a BuildFunc.
func (b *Builder) Build(filename string, data []byte, revision string, createdAt time.Time) (*Artifact, Outcome) {
	art, _, o := b.BuildBundle(filename, data, revision, createdAt)
	return art, o
}

// BuildBundle is Build that also returns the compiled bundle, for diffs.
func (b *Builder) BuildBundle(filename string, data []byte, revision string, createdAt time.Time) (*Artifact, *bundle.Bundle, Outcome) {
	bn, o := b.Compile(filename, data, revision, createdAt)
	if bn == nil {
		return nil, nil, o
	}
	var buf bytes.Buffer
	if err := bundle.Write(&buf, bn, b.Key, b.KeyID); err != nil {
		return nil, nil, Outcome{Condition: Stalled, Reason: ReasonCompileFailed, Message: "signing: " + err.Error()}
	}
	return &Artifact{Revision: bn.Manifest.Revision, Sequence: bn.Manifest.Sequence, Rules: len(bn.Policy.Rules), Data: buf.Bytes()}, bn, o
}

// Compile runs validate and compile without signing. The bundle is nil
// when the outcome is Stalled; a Ready outcome may carry warnings.
func (b *Builder) Compile(filename string, data []byte, revision string, createdAt time.Time) (*bundle.Bundle, Outcome) {
	cfg, diags := schema.Parse(filename, data)
	if diags.HasErrors() || cfg == nil {
		return nil, invalid(ReasonInvalidConfig, diags)
	}
	bn, err := compiler.Compile(cfg, compiler.Options{Revision: revision, CreatedAt: createdAt, CompilerVersion: b.CompilerVersion, Sequence: b.Sequence})
	if err != nil {
		var ds schema.Diagnostics
		if errors.As(err, &ds) {
			return nil, invalid(ReasonCompileFailed, append(diags, ds...))
		}
		return nil, Outcome{Condition: Stalled, Reason: ReasonCompileFailed, Message: err.Error()}
	}
	return bn, Outcome{Condition: Ready, Reason: ReasonBuilt, Diagnostics: FromSchema(diags)} // warnings only
}

func invalid(reason string, diags schema.Diagnostics) Outcome {
	diags.Sort()
	n := diags.Errors()
	msg := fmt.Sprintf("%d error(s)", n)
	for _, d := range diags {
		if d.Severity == schema.SeverityError {
			msg = fmt.Sprintf("%s (first: %s)", msg, d.String())
			break
		}
	}
	return Outcome{Condition: Stalled, Reason: reason, Message: msg, Diagnostics: FromSchema(diags)}
}

// FromSchema converts the schema's diagnostics into the status form.
func FromSchema(ds schema.Diagnostics) []Diagnostic {
	if len(ds) == 0 {
		return nil
	}
	out := make([]Diagnostic, 0, len(ds))
	for _, d := range ds {
		out = append(out, Diagnostic{
			Severity: d.Severity.String(), File: d.Pos.File, Line: d.Pos.Line, Col: d.Pos.Col,
			Path: d.Path, Summary: d.Summary, Detail: d.Detail,
		})
	}
	return out
}
