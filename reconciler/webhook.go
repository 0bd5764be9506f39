package reconciler

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
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
	Secret []byte
	Branch string
	// Repository is the "owner/name" the source is (see GitHubRepository);
	// when set, a push whose repository.full_name differs is refused (403),
	// as is one that does not say: a secret shared by several repositories'
	// hooks, or an organization hook, must not trigger this source. Empty
	// when the source's URL does not name a GitHub repository.
	Repository string
	Trigger    func()
	Logger     *slog.Logger
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
			Ref        string `json:"ref"`
			After      string `json:"after"`
			Repository *struct {
				FullName string `json:"full_name"`
			} `json:"repository"`
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
		if h.Repository != "" {
			got := ""
			if p.Repository != nil {
				got = p.Repository.FullName
			}
			if !strings.EqualFold(got, h.Repository) {
				log.Warn("webhook: push for another repository refused", "repository", got, "watched", h.Repository, "ref", p.Ref)
				if got == "" {
					got = "no repository"
				}
				http.Error(w, fmt.Sprintf("refused: the push is for %s, this reconciler watches %s", got, h.Repository), http.StatusForbidden)
				return
			}
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

// GitHubRepository returns the "owner/name" a git URL names, for the
// webhook's check: https://HOST/owner/name(.git), ssh://git@HOST/owner/name,
// git@HOST:owner/name.git. GitHub Enterprise hosts are recognised by the
// shape of the path. It reports false for anything else (a local path, a
// nested group path), where no check is possible.
func GitHubRepository(rawURL string) (string, bool) {
	var path string
	switch {
	case strings.Contains(rawURL, "://"):
		u, err := url.Parse(rawURL)
		if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http" && u.Scheme != "ssh") {
			return "", false
		}
		path = u.Path
	default:
		// scp-like: [user@]host:owner/name.git
		at := strings.LastIndex(rawURL, "@")
		host, rest, ok := strings.Cut(rawURL[at+1:], ":")
		if !ok || host == "" || strings.Contains(host, "/") {
			return "", false
		}
		path = rest
	}
	path = strings.TrimSuffix(strings.Trim(path, "/"), ".git")
	owner, name, ok := strings.Cut(path, "/")
	if !ok || owner == "" || name == "" || strings.Contains(name, "/") || !repoPart(owner) || !repoPart(name) {
		return "", false
	}
	return owner + "/" + name, true
}

// repoPart reports whether s can be a GitHub owner or repository name.
func repoPart(s string) bool {
	for _, r := range s {
		if !(r == '-' || r == '_' || r == '.' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z') {
			return false
		}
	}
	return s != "." && s != ".."
}
