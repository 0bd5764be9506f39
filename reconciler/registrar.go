package reconciler

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"time"

	"github.com/armoriq/controlplane/compiler/bundle"
)

// Registrar is the one-shot path of "armoriq register" and of the gateway's
// POST /iap/sdk/register: validate a whole config, compile it, sign it with
// a local key and say what changed against the active bundle. It lives here
// so the gateway need not import the compiler: the gateway holds a
// Registrar behind an interface of its own.
type Registrar struct {
	Key             ed25519.PrivateKey
	KeyID           string
	CompilerVersion string
	// Filename names the config in diagnostics (default "armoriq.yaml"); the
	// format is sniffed from the content when the name does not say.
	Filename string
	// Active returns the bundle the gateway runs now, nil when none. Nil
	// Active means "compare with nothing": every rule is added.
	Active func(ctx context.Context) (*bundle.Bundle, error)
	// Now stamps registered bundles: a registration has no commit, so the
	// clock orders it after the active bundle (default time.Now).
	Now func() time.Time
}

// RegisterResult is what a registration came to.
type RegisterResult struct {
	// Valid is false when the config has errors; Diagnostics says where.
	// The HTTP handler answers 400 with them.
	Valid       bool         `json:"valid"`
	Diagnostics []Diagnostic `json:"diagnostics,omitempty"`
	// Changed reports whether the policy or catalogue differs from the
	// active bundle's; Changes lists how. Same content → Changed false.
	Changed          bool     `json:"changed"`
	Changes          []Change `json:"changes,omitempty"`
	Revision         string   `json:"revision,omitempty"` // "sha256:<hex>" of the config
	PreviousRevision string   `json:"previous_revision,omitempty"`
	// Bundle is the signed bundle, set whenever the config is valid.
	// Activating it when unchanged is harmless: its revision is the
	// content hash, which the gateway already runs.
	Bundle []byte `json:"-"`
}

// Register validates, compiles and signs body: a raw armoriq.yaml (or
// .hcl), or JSON {"config": "<yaml>"}. Bad input is a result with
// diagnostics, never an error; the error is for failures of the active
// bundle lookup or of signing (the handler's 500, logged).
func (r *Registrar) Register(ctx context.Context, body []byte) (RegisterResult, error) {
	return r.RegisterFile(ctx, r.Filename, body)
}

// RegisterFile is Register with the config's file name given per call
// (the SDK may send one); an empty name means Filename.
func (r *Registrar) RegisterFile(ctx context.Context, filename string, body []byte) (RegisterResult, error) {
	name := filename
	if name == "" {
		name = r.Filename
	}
	if name == "" {
		name = "armoriq.yaml"
	}
	data := unwrapRegisterBody(body)
	if len(bytes.TrimSpace(data)) == 0 {
		return RegisterResult{Diagnostics: []Diagnostic{{Severity: "error", File: name, Summary: "empty config"}}}, nil
	}
	if r.Key == nil {
		return RegisterResult{}, errors.New("registrar: no signing key")
	}
	now := time.Now
	if r.Now != nil {
		now = r.Now
	}
	b := &Builder{Key: r.Key, KeyID: r.KeyID, CompilerVersion: r.CompilerVersion}
	art, bn, o := b.BuildBundle(name, data, "", now().UTC())
	if o.Condition != Ready {
		ds := o.Diagnostics
		if len(ds) == 0 {
			ds = []Diagnostic{{Severity: "error", File: name, Summary: o.Message}}
		}
		return RegisterResult{Diagnostics: ds}, nil
	}
	res := RegisterResult{Valid: true, Diagnostics: o.Diagnostics, Revision: art.Revision, Bundle: art.Data}
	var active *bundle.Bundle
	if r.Active != nil {
		var err error
		if active, err = r.Active(ctx); err != nil {
			return RegisterResult{}, err
		}
	}
	if active != nil {
		res.PreviousRevision = active.Manifest.Revision
	}
	res.Changes = DiffBundles(active, bn)
	res.Changed = active == nil || len(res.Changes) > 0
	return res, nil
}

// unwrapRegisterBody accepts the SDK's raw file or {"config": "<yaml>"}.
func unwrapRegisterBody(body []byte) []byte {
	t := bytes.TrimSpace(body)
	if len(t) == 0 || t[0] != '{' {
		return body
	}
	var w struct {
		Config *string `json:"config"`
	}
	if json.Unmarshal(t, &w) == nil && w.Config != nil {
		return []byte(*w.Config)
	}
	return body
}
