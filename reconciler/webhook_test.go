package reconciler

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
)

func TestWebhook(t *testing.T) {
	secret := []byte("topsecret")
	var triggered atomic.Int32
	srv := httptest.NewServer(&Webhook{Secret: secret, Branch: "main", Trigger: func() { triggered.Add(1) }})
	defer srv.Close()
	push := []byte(`{"ref":"refs/heads/main","after":"abc"}`)
	other := []byte(`{"ref":"refs/heads/dev","after":"abc"}`)
	cases := []struct {
		name, sig, event string
		body             []byte
		code             int
		triggers         int32
	}{
		{"missing signature", "", "push", push, 401, 0},
		{"not sha256", "sha1=abc", "push", push, 401, 0},
		{"not hex", "sha256=zz", "push", push, 401, 0},
		{"wrong secret", Sign([]byte("other"), push), "push", push, 401, 0},
		{"signature of another body", Sign(secret, other), "push", push, 401, 0},
		{"ping", Sign(secret, []byte(`{"zen":"x"}`)), "ping", []byte(`{"zen":"x"}`), 200, 0},
		{"push to another branch", Sign(secret, other), "push", other, 200, 0},
		{"push to the branch", Sign(secret, push), "push", push, 202, 1},
		{"bad json", Sign(secret, []byte("{")), "push", []byte("{"), 400, 0},
	}
	for _, c := range cases {
		before := triggered.Load()
		if code := postHook(t, srv.URL, c.body, c.sig, c.event); code != c.code {
			t.Errorf("%s: status %d, want %d", c.name, code, c.code)
		}
		if got := triggered.Load() - before; got != c.triggers {
			t.Errorf("%s: %d triggers, want %d", c.name, got, c.triggers)
		}
	}
	// The form-encoded content type: JSON in the payload field.
	form := []byte("payload=" + url.QueryEscape(string(push)))
	req, _ := http.NewRequest(http.MethodPost, srv.URL+"/hook", bytes.NewReader(form))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("X-GitHub-Event", "push")
	req.Header.Set("X-Hub-Signature-256", Sign(secret, form))
	before := triggered.Load()
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusAccepted || triggered.Load() != before+1 {
		t.Errorf("form-encoded push: %v %v; want 202 and a trigger", resp, err)
	}

	resp, err := http.Get(srv.URL + "/hook")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET /hook: %d, want 405", resp.StatusCode)
	}
}

func TestValidSignatureEmptySecret(t *testing.T) {
	if ValidSignature(nil, []byte("x"), Sign(nil, []byte("x"))) {
		t.Error("an empty secret accepted a signature")
	}
}

func FuzzValidSignature(f *testing.F) {
	f.Add([]byte("body"), "sha256=00")
	f.Add([]byte(""), Sign([]byte("k"), []byte("")))
	f.Fuzz(func(t *testing.T, body []byte, header string) {
		secret := []byte("k")
		good := Sign(secret, body)
		if !ValidSignature(secret, body, good) {
			t.Fatalf("own signature %q of %q refused", good, body)
		}
		// Only the exact MAC (hex digits in either case) is accepted.
		rest, ok := strings.CutPrefix(header, "sha256=")
		if ValidSignature(secret, body, header) && (!ok || !strings.EqualFold(rest, good[len("sha256="):])) {
			t.Fatalf("header %q accepted for %q; the MAC is %q", header, body, good)
		}
	})
}

// TestWebhookRepository sends push events shaped as GitHub's (the fields
// around repository.full_name as a real delivery has them) to a webhook
// watching acme/policy: a push for another repository, signed with the
// same secret (an organization hook, a shared secret), is refused with a
// 403 and a log line.
func TestWebhookRepository(t *testing.T) {
	secret := []byte("topsecret")
	var triggered atomic.Int32
	var logs bytes.Buffer
	srv := httptest.NewServer(&Webhook{Secret: secret, Branch: "main", Repository: "acme/policy",
		Trigger: func() { triggered.Add(1) }, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	defer srv.Close()
	payload := func(fullName string) []byte {
		repo := ""
		if fullName != "" {
			owner, name, _ := strings.Cut(fullName, "/")
			repo = fmt.Sprintf(`,"repository":{"id":1296269,"node_id":"MDEwOlJlcG9zaXRvcnkxMjk2MjY5","name":%q,"full_name":%q,"private":false,"owner":{"name":%q,"login":%q},"html_url":"https://github.com/%s","default_branch":"main"}`, name, fullName, owner, owner, fullName)
		}
		return []byte(`{"ref":"refs/heads/main","before":"0000000000000000000000000000000000000000","after":"6113728f27ae82c7b1a177c8d03f9e96e0adf246","created":false,"deleted":false,"forced":true` + repo + `,"pusher":{"name":"octocat"},"sender":{"login":"octocat"}}`)
	}
	for _, c := range []struct {
		name     string
		body     []byte
		code     int
		triggers int32
		log      string
	}{
		{"the watched repository", payload("acme/policy"), 202, 1, ""},
		{"the same, cased differently", payload("Acme/Policy"), 202, 1, ""},
		{"another repository", payload("acme/other"), 403, 0, `msg="webhook: push for another repository refused" repository=acme/other watched=acme/policy`},
		{"a fork's name", payload("mallory/policy"), 403, 0, "repository=mallory/policy"},
		{"no repository", payload(""), 403, 0, `repository="" watched=acme/policy`},
	} {
		before := triggered.Load()
		logs.Reset()
		req, _ := http.NewRequest(http.MethodPost, srv.URL+"/hook", bytes.NewReader(c.body))
		req.Header.Set("X-GitHub-Event", "push")
		req.Header.Set("X-Hub-Signature-256", Sign(secret, c.body))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		msg, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != c.code || triggered.Load()-before != c.triggers {
			t.Errorf("%s: status %d (%q), %d triggers; want %d, %d", c.name, resp.StatusCode, msg, triggered.Load()-before, c.code, c.triggers)
		}
		if c.code == 403 && !strings.Contains(string(msg), "this reconciler watches acme/policy") {
			t.Errorf("%s: body %q, want it to say which repository is watched", c.name, msg)
		}
		if c.log != "" && !strings.Contains(logs.String(), c.log) {
			t.Errorf("%s: log %q, want %q", c.name, logs.String(), c.log)
		}
	}
}

func TestGitHubRepository(t *testing.T) {
	for _, tt := range []struct {
		url, want string
		ok        bool
	}{
		{"https://github.com/acme/policy", "acme/policy", true},
		{"https://github.com/acme/policy.git", "acme/policy", true},
		{"https://x-access-token:tok@github.com/acme/policy.git/", "acme/policy", true},
		{"ssh://git@github.com/acme/policy.git", "acme/policy", true},
		{"git@github.com:acme/policy.git", "acme/policy", true},
		{"https://ghe.example.com/acme/policy", "acme/policy", true},
		{"https://gitlab.example.com/group/sub/policy.git", "", false},
		{"/srv/git/policy", "", false},
		{".", "", false},
		{"file:///srv/git/acme/policy", "", false},
		{"https://github.com/acme", "", false},
		{"https://github.com/acme/../policy", "", false},
	} {
		got, ok := GitHubRepository(tt.url)
		if got != tt.want || ok != tt.ok {
			t.Errorf("GitHubRepository(%q) = %q, %v; want %q, %v", tt.url, got, ok, tt.want, tt.ok)
		}
	}
}

func FuzzGitHubRepository(f *testing.F) {
	for _, s := range []string{"https://github.com/acme/policy.git", "git@github.com:a/b", "ssh://h/a/b", "/x/y"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		repo, ok := GitHubRepository(s)
		if !ok {
			return
		}
		owner, name, found := strings.Cut(repo, "/")
		if !found || !repoPart(owner) || !repoPart(name) || owner == "" || name == "" {
			t.Fatalf("GitHubRepository(%q) = %q: not owner/name", s, repo)
		}
	})
}
