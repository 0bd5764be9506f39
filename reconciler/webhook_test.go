package reconciler

import (
	"bytes"
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
