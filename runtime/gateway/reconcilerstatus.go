package gateway

import (
	"net/http"
	"strings"
	"time"

	"github.com/armoriq/controlplane/runtime/console"
)

// handleReconcilerStatus is PUT /v1/reconciler/status (admin): a
// reconciler reports what it last did to this gateway, for the console's
// overview. Each replica keeps its own last report in memory (the
// reconciler reports to each one it pushes to).
func (s *Server) handleReconcilerStatus(w http.ResponseWriter, r *http.Request) error {
	var req struct {
		Source   string    `json:"source"`
		Revision string    `json:"revision"`
		State    string    `json:"state"`
		Reason   string    `json:"reason"`
		Message  string    `json:"message"`
		At       time.Time `json:"at"`
	}
	if err := decodeJSON(r, &req); err != nil {
		return err
	}
	switch req.State {
	case "Ready", "Waiting", "Stalled":
	default:
		return errorf(KindInvalid, "state %q is not one of Ready, Waiting, Stalled", req.State)
	}
	msg := req.Message
	if req.Reason != "" {
		msg = strings.TrimSpace(req.Reason + ": " + msg)
	}
	rep := &console.ReconcilerStatus{
		Source: cleanLabel(req.Source, 300), Revision: cleanLabel(req.Revision, 100), State: req.State,
		Message: cleanLabel(msg, 1000), At: s.now().UTC(),
	}
	s.human.reconciler.Store(rep)
	writeJSON(w, http.StatusOK, map[string]any{"ok": true})
	return nil
}
