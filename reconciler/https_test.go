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
// serveHTTP serves repo over git's smart HTTP protocol (git http-backend)
// behind a check of the token, and returns its URL and whether the token
// came as x-access-token basic auth.
func serveHTTP(t *testing.T, repo *testRepo, token string) (string, *bool) {
	t.Helper()
	gitBin, err := exec.LookPath("git")
	if err != nil {
		t.Skip("needs git for git http-backend")
	}
	out, err := exec.Command(gitBin, "--exec-path").Output()
	if err != nil {
		t.Skip("git --exec-path: ", err)
	}
	backend := filepath.Join(strings.TrimSpace(string(out)), "git-http-backend")
	h := &cgi.Handler{
		Path: backend,
		Env:  []string{"GIT_PROJECT_ROOT=" + filepath.Dir(repo.dir), "GIT_HTTP_EXPORT_ALL=1"},
	}
	sawToken := new(bool)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		user, pass, ok := r.BasicAuth()
		if !ok || pass != token {
			w.Header().Set("WWW-Authenticate", `Basic realm="git"`)
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		*sawToken = user == "x-access-token"
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv.URL + "/" + filepath.Base(repo.dir), sawToken
}

func TestSourceHTTPSWithToken(t *testing.T) {
	repo := newTestRepo(t)
	c1 := repo.commit("first", map[string]string{"armoriq.yaml": "one\n"})
	url, sawToken := serveHTTP(t, repo, "ghs_secret")

	// In memory, then in a cache directory; the cache survives a restart.
	cache := t.TempDir()
	var src *Source
	for _, dir := range []string{"", cache, cache} {
		var err error
		if src, err = NewSource(SourceOptions{URL: url, Token: "ghs_secret", CacheDir: dir}); err != nil {
			t.Fatal(err)
		}
		head, err := src.Head(ctxT(t))
		if err != nil || head != c1 {
			t.Fatalf("cache %q: Head over HTTPS = %q, %v; want %s", dir, head, err, c1)
		}
		c, err := src.Fetch(ctxT(t), head)
		if err != nil || string(c.Config) != "one\n" {
			t.Fatalf("cache %q: Fetch over HTTPS = %+v, %v", dir, c, err)
		}
	}
	// Later commits are fetched into the same storage, forced.
	c2 := repo.commit("second", map[string]string{"armoriq.yaml": "two\n"})
	if c, err := src.Fetch(ctxT(t), c2); err != nil || string(c.Config) != "two\n" {
		t.Fatalf("Fetch of a new commit over HTTPS = %+v, %v", c, err)
	}
	if !*sawToken {
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
