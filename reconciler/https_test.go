package reconciler

import (
	"net/http"
	"net/http/cgi"
	"net/http/httptest"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestSourceHTTPSWithToken serves the test repository over git's smart HTTP
// protocol (git http-backend behind a token check) and follows it with a
// token, as the reconciler follows a GitHub repository.
func TestSourceHTTPSWithToken(t *testing.T) {
	gitBin, err := exec.LookPath("git")
	if err != nil {
		t.Skip("needs git for git http-backend")
	}
	out, err := exec.Command(gitBin, "--exec-path").Output()
	if err != nil {
		t.Skip("git --exec-path: ", err)
	}
	backend := filepath.Join(strings.TrimSpace(string(out)), "git-http-backend")
	repo := newTestRepo(t)
	c1 := repo.commit("first", map[string]string{"armoriq.yaml": "one\n"})
	h := &cgi.Handler{
		Path: backend,
		Env:  []string{"GIT_PROJECT_ROOT=" + filepath.Dir(repo.dir), "GIT_HTTP_EXPORT_ALL=1"},
	}
	var sawToken bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		user, pass, ok := r.BasicAuth()
		if !ok || pass != "ghs_secret" {
			w.Header().Set("WWW-Authenticate", `Basic realm="git"`)
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		sawToken = user == "x-access-token"
		h.ServeHTTP(w, r)
	}))
	defer srv.Close()
	url := srv.URL + "/" + filepath.Base(repo.dir)

	src, err := NewSource(SourceOptions{URL: url, Token: "ghs_secret"})
	if err != nil {
		t.Fatal(err)
	}
	head, err := src.Head(ctxT(t))
	if err != nil || head != c1 {
		t.Fatalf("Head over HTTPS = %q, %v; want %s", head, err, c1)
	}
	c, err := src.Fetch(ctxT(t), head)
	if err != nil || string(c.Config) != "one\n" {
		t.Fatalf("Fetch over HTTPS = %+v, %v", c, err)
	}
	if !sawToken {
		t.Error("the token was not sent as x-access-token basic auth")
	}
	if strings.Contains(src.String(), "ghs_secret") {
		t.Errorf("source name %q shows the token", src.String())
	}

	bad, _ := NewSource(SourceOptions{URL: url, Token: "wrong"})
	if _, err := bad.Head(ctxT(t)); err == nil {
		t.Error("Head with a wrong token succeeded")
	}
}
