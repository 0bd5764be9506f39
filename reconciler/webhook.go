package reconciler

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
)

// maxHookBody bounds a webhook body; GitHub caps payloads at 25 MB.
const maxHookBody = 25 << 20

// Webhook serves POST /hook for GitHub push events. Every request must carry
// X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the raw body under Secret>;
// anything else is 401. A push to the watched branch triggers a pass without
// waiting for it; pings answer 200.
type Webhook struct {
	Secret  []byte
	Branch  string
	Trigger func()
	Logger  *slog.Logger
}

// ServeHTTP implements http.Handler.
func (h *Webhook) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	log := h.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxHookBody+1))
	if err != nil {
		http.Error(w, "unreadable body", http.StatusBadRequest)
		return
	}
	if len(body) > maxHookBody {
		http.Error(w, "body too large", http.StatusRequestEntityTooLarge)
		return
	}
	if !ValidSignature(h.Secret, body, r.Header.Get("X-Hub-Signature-256")) {
		log.Warn("webhook: bad or missing signature", "remote", r.RemoteAddr)
		http.Error(w, "invalid signature", http.StatusUnauthorized)
		return
	}
	switch event := r.Header.Get("X-GitHub-Event"); event {
	case "ping":
		w.WriteHeader(http.StatusOK)
		_, _ = io.WriteString(w, "pong\n")
	case "push", "":
		var p struct {
			Ref   string `json:"ref"`
			After string `json:"after"`
		}
		payload := body
		if strings.HasPrefix(r.Header.Get("Content-Type"), "application/x-www-form-urlencoded") {
			// GitHub's other content type: the JSON is the payload field;
			// the signature still covers the raw body, checked above.
			form, err := url.ParseQuery(string(body))
			if err != nil {
				http.Error(w, "undecodable form body", http.StatusBadRequest)
				return
			}
			payload = []byte(form.Get("payload"))
		}
		if err := json.Unmarshal(payload, &p); err != nil {
			http.Error(w, "undecodable push event", http.StatusBadRequest)
			return
		}
		if p.Ref != "refs/heads/"+h.Branch {
			log.Info("webhook: push to another branch ignored", "ref", p.Ref)
			w.WriteHeader(http.StatusOK)
			_, _ = io.WriteString(w, "ignored: not the watched branch\n")
			return
		}
		log.Info("webhook: push received", "ref", p.Ref, "after", p.After)
		h.Trigger()
		w.WriteHeader(http.StatusAccepted)
		_, _ = io.WriteString(w, "pass triggered\n")
	default:
		w.WriteHeader(http.StatusOK)
		_, _ = io.WriteString(w, "ignored: event "+event+"\n")
	}
}

// ValidSignature checks a GitHub X-Hub-Signature-256 header against body in
// constant time. An empty secret accepts nothing.
func ValidSignature(secret, body []byte, header string) bool {
	if len(secret) == 0 {
		return false
	}
	hexSig, ok := strings.CutPrefix(header, "sha256=")
	if !ok {
		return false
	}
	got, err := hex.DecodeString(hexSig)
	if err != nil || len(got) != sha256.Size {
		return false
	}
	m := hmac.New(sha256.New, secret)
	m.Write(body)
	return hmac.Equal(got, m.Sum(nil))
}

// Sign returns the X-Hub-Signature-256 value GitHub would send for body.
func Sign(secret, body []byte) string {
	m := hmac.New(sha256.New, secret)
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}
