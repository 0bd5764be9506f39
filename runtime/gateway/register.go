package gateway

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
)

// handleRegister serves the SDK's POST /iap/sdk/register: the whole
// armoriq.yaml in the body (raw, or JSON {"config": "..."}). It validates,
// compiles, signs and activates it through the configured Registrar.
func (s *Server) handleRegister(w http.ResponseWriter, r *http.Request) error {
	if s.cfg.Registrar == nil {
		return errorf(KindNotFound, "registration is not enabled on this gateway: start it with --register-key to let it sign configs it is sent")
	}
	body, err := io.ReadAll(r.Body) // bounded by limitBodies
	if err != nil {
		return bodyError(err, "the config")
	}
	filename := "armoriq.yaml"
	if strings.HasPrefix(strings.TrimSpace(r.Header.Get("Content-Type")), "application/json") {
		var req struct {
			Config   string `json:"config"`
			Filename string `json:"filename"`
		}
		if err := json.Unmarshal(body, &req); err != nil {
			return errorf(KindInvalid, "body is not JSON {\"config\": \"...\"}: %v", err)
		}
		body = []byte(req.Config)
		if req.Filename != "" {
			filename = req.Filename
		}
	}
	if len(strings.TrimSpace(string(body))) == 0 {
		return errorf(KindInvalid, "the config is empty")
	}
	res, err := s.cfg.Registrar.Register(r.Context(), filename, body)
	if err != nil {
		return internal(err, "registering the config")
	}
	if len(res.Diagnostics) > 0 && res.Bundle == nil {
		writeJSON(w, http.StatusBadRequest, map[string]any{
			"success": false, "message": "the config is invalid", "error": errorDetail{Code: "invalid_config", Message: "the config is invalid"},
			"diagnostics": res.Diagnostics,
		})
		return nil
	}
	act, err := s.Activate(r.Context(), res.Bundle, false)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"success": true, "changed": act.Changed, "revision": act.Revision, "previous_revision": act.PreviousRevision,
		"changes": res.Changes, "diagnostics": res.Diagnostics, "proxy_endpoint": publicURL(r),
	})
	return nil
}

// publicURL is the base URL the client reached this gateway at.
func publicURL(r *http.Request) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host
}
