package gateway

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/armoriq/controlplane/compiler/bundle"
	"github.com/armoriq/controlplane/runtime/identity/oauth"
	"github.com/armoriq/controlplane/runtime/policy"
	"github.com/armoriq/controlplane/runtime/store"
)

// compileBundle verifies data against the trusted keys and compiles its policy.
func (s *Server) compileBundle(data []byte) (*activeBundle, error) {
	b, err := bundle.Verify(data, s.live.Load().TrustedKeys)
	if err != nil {
		return nil, &Error{Kind: KindVerification, Message: "bundle refused: " + err.Error()}
	}
	eng, err := policy.Compile(&b.Policy)
	if err != nil {
		return nil, &Error{Kind: KindVerification, Message: "bundle refused: its policy does not compile: " + err.Error()}
	}
	for _, p := range providersOf(b) {
		// The compiler checked them; a gateway still runs none it
		// cannot use, rather than accept tokens it cannot judge.
		if _, err := oauth.Normalize(p); err != nil {
			return nil, &Error{Kind: KindVerification, Message: fmt.Sprintf("bundle refused: identity provider %q: %v", p.Name, err)}
		}
	}
	servers := make(map[string]bundle.Server, len(b.Servers))
	for _, sv := range b.Servers {
		servers[sv.ID] = sv
	}
	return &activeBundle{b: b, raw: data, engine: eng, servers: servers}, nil
}

// loadActiveBundle activates the bundle persisted in the store, if any. A
// stored bundle that no longer verifies (the trusted keys changed) is not
// used: the gateway denies everything and says why in its status.
func (s *Server) loadActiveBundle(ctx context.Context) error {
	sb, err := s.store.ActiveBundle(ctx)
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("gateway: loading the active bundle: %w", err)
	}
	if cur := s.active.Load(); cur != nil && cur.storeSeq == sb.Sequence {
		return nil
	}
	ab, err := s.compileBundle(sb.Data)
	if err != nil {
		msg := fmt.Sprintf("stored bundle %s no longer verifies: %v", sb.Revision, err)
		s.log.Error("bundle not loaded", "revision", sb.Revision, "error", err)
		_ = s.store.SetBundleError(ctx, msg)
		return nil
	}
	ab.storeSeq, ab.activatedAt = sb.Sequence, sb.ActivatedAt
	if err := s.cfg.Upstream.Sync(ctx, ab.b.Servers); err != nil {
		s.log.Warn("upstream sync failed", "revision", sb.Revision, "error", err)
	}
	if err := s.useProviders(ab); err != nil {
		s.log.Error("bundle not loaded", "revision", sb.Revision, "error", err)
		_ = s.store.SetBundleError(ctx, fmt.Sprintf("stored bundle %s: identity providers: %v", sb.Revision, err))
		return nil
	}
	s.active.Store(ab)
	s.log.Info("bundle loaded", "revision", ab.b.Manifest.Revision, "rules", len(ab.b.Policy.Rules))
	return nil
}

// pollBundle picks up bundles activated by other replicas sharing the store.
func (s *Server) pollBundle(ctx context.Context, every time.Duration) {
	defer s.wg.Done()
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			// An activation in progress will load what it stores; polling
			// meanwhile would compile and sync the same bundle twice.
			if !s.activateMu.TryLock() {
				continue
			}
			err := s.loadActiveBundle(ctx)
			s.activateMu.Unlock()
			if err != nil && ctx.Err() == nil {
				s.log.Warn("bundle poll failed", "error", err)
			}
		}
	}
}

// activateResult is the answer to PUT /v1/bundle.
type activateResult struct {
	Revision         string    `json:"revision"`
	Sequence         int64     `json:"sequence"`
	ActivatedAt      time.Time `json:"activated_at"`
	PreviousRevision string    `json:"previous_revision,omitempty"`
	Changed          bool      `json:"changed"`
}

// Activate verifies a signed bundle and makes it the active one. A bundle
// older than the active one is refused unless rollback is set. On any
// refusal the gateway keeps its current bundle and records why.
func (s *Server) Activate(ctx context.Context, data []byte, rollback bool) (activateResult, error) {
	s.activateMu.Lock()
	defer s.activateMu.Unlock()
	// Another replica may have activated something since we last looked.
	if err := s.loadActiveBundle(ctx); err != nil {
		return activateResult{}, internal(err, "reading the active bundle")
	}
	ab, err := s.compileBundle(data)
	if err != nil {
		s.recordBundleError(ctx, err)
		return activateResult{}, err
	}
	cur := s.active.Load()
	res := activateResult{Revision: ab.b.Manifest.Revision, Sequence: ab.b.Manifest.Sequence}
	var prevSeq int64
	if cur != nil {
		prevSeq = cur.storeSeq
		res.PreviousRevision = cur.b.Manifest.Revision
		if cur.b.Manifest.Revision == ab.b.Manifest.Revision {
			res.ActivatedAt, res.Sequence = cur.activatedAt, cur.b.Manifest.Sequence
			return res, nil
		}
		if nm, cm := ab.b.Manifest, cur.b.Manifest; nm.Sequence < cm.Sequence && !rollback {
			e := errorf(KindStale, "bundle revision %s (sequence %d) is older than the active revision %s (sequence %d); push with ?force=rollback to roll back",
				nm.Revision, nm.Sequence, cm.Revision, cm.Sequence)
			if nm.Sequence == 0 {
				// Compiled outside git by an armoriq without sequences:
				// it cannot be ordered, so it is never taken for newer.
				e = errorf(KindStale, "bundle revision %s has no sequence (0) and cannot be ordered after the active revision %s (sequence %d): recompile it with this armoriq (outside git its sequence is SOURCE_DATE_EPOCH or the file's modification time, or --sequence), or push with ?force=rollback",
					nm.Revision, cm.Revision, cm.Sequence)
			}
			s.recordBundleError(ctx, e)
			return activateResult{}, e
		}
	}
	sb := store.Bundle{Revision: ab.b.Manifest.Revision, Sequence: prevSeq + 1, Data: data}
	if err := s.store.SetActiveBundle(ctx, sb, prevSeq); err != nil {
		if errors.Is(err, store.ErrStale) || errors.Is(err, store.ErrConflict) {
			return activateResult{}, errorf(KindConflict, "another replica activated a bundle at the same time; retry")
		}
		return activateResult{}, internal(err, "persisting the bundle")
	}
	st, err := s.store.BundleStatus(ctx)
	if err != nil {
		return activateResult{}, internal(err, "reading the bundle status")
	}
	ab.storeSeq, ab.activatedAt = st.Active.Sequence, st.Active.ActivatedAt
	if err := s.cfg.Upstream.Sync(ctx, ab.b.Servers); err != nil {
		s.log.Warn("upstream sync failed", "revision", res.Revision, "error", err)
	}
	if err := s.useProviders(ab); err != nil {
		return activateResult{}, internal(err, "configuring the bundle's identity providers")
	}
	s.active.Store(ab)
	res.ActivatedAt, res.Changed = ab.activatedAt, true
	s.log.Info("bundle activated", "revision", res.Revision, "previous", res.PreviousRevision, "rules", len(ab.b.Policy.Rules), "rollback", rollback)
	return res, nil
}

func (s *Server) recordBundleError(ctx context.Context, err error) {
	if serr := s.store.SetBundleError(ctx, err.Error()); serr != nil {
		s.log.Error("recording the bundle error failed", "error", serr)
	}
}

func (s *Server) handlePutBundle(w http.ResponseWriter, r *http.Request) error {
	data, err := io.ReadAll(r.Body) // bounded by limitBodies
	if err != nil {
		return bodyError(err, "the bundle")
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return errorf(KindInvalid, "request body is empty: send the bundle file")
	}
	force := r.URL.Query().Get("force")
	if force != "" && force != "rollback" {
		return errorf(KindInvalid, "unknown force value %q: only force=rollback is supported", force)
	}
	res, err := s.Activate(r.Context(), data, force == "rollback")
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, res)
	return nil
}

// bundleStatus is the answer to GET /v1/bundle/status.
type bundleStatus struct {
	Revision    string         `json:"revision"`
	Sequence    int64          `json:"sequence"`
	ActivatedAt *time.Time     `json:"activated_at,omitempty"`
	CreatedAt   *time.Time     `json:"created_at,omitempty"`
	Rules       int            `json:"rules"`
	LastError   string         `json:"last_error,omitempty"`
	LastErrorAt *time.Time     `json:"last_error_at,omitempty"`
	Servers     []serverStatus `json:"servers"`
}

type serverStatus struct {
	ID        string `json:"id"`
	Transport string `json:"transport"`
	serverState
}

// handleGetBundle serves the active bundle's file, so tools can diff against
// what the gateway runs (armoriq register) or copy it to another gateway.
func (s *Server) handleGetBundle(w http.ResponseWriter, r *http.Request) error {
	ab := s.active.Load()
	if ab == nil {
		return errorf(KindNotFound, "no policy bundle is active on this gateway")
	}
	w.Header().Set("Content-Type", "application/gzip")
	w.Header().Set("X-Armoriq-Revision", ab.b.Manifest.Revision)
	w.Header().Set("Cache-Control", "no-store")
	_, err := w.Write(ab.raw)
	return err
}

func (s *Server) handleBundleStatus(w http.ResponseWriter, r *http.Request) error {
	st, err := s.store.BundleStatus(r.Context())
	if err != nil {
		return &Error{Kind: KindUnavailable, Message: "cannot read the bundle status", Err: err}
	}
	out := bundleStatus{Servers: []serverStatus{}}
	if ab := s.active.Load(); ab != nil {
		m := ab.b.Manifest
		out.Revision, out.Sequence, out.Rules = m.Revision, m.Sequence, len(ab.b.Policy.Rules)
		at := ab.activatedAt.UTC()
		out.ActivatedAt = &at
		if !m.CreatedAt.IsZero() {
			c := m.CreatedAt.UTC()
			out.CreatedAt = &c
		}
		states := s.serverStates()
		for _, sv := range ab.b.Servers {
			st, ok := states[sv.ID]
			if !ok {
				st.State = "unknown"
			}
			out.Servers = append(out.Servers, serverStatus{ID: sv.ID, Transport: sv.Transport, serverState: st})
		}
	}
	if st.LastError != "" {
		out.LastError = st.LastError
		at := st.LastErrorAt.UTC()
		out.LastErrorAt = &at
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// ActiveBundle returns the bundle in force, nil when none.
func (s *Server) ActiveBundle() *bundle.Bundle {
	if ab := s.active.Load(); ab != nil {
		return ab.b
	}
	return nil
}
