package gateway

import (
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
)

// TestConsoleCookiesOverTLS: over TLS the console's cookies are Secure,
// HttpOnly and SameSite=Strict; forms need their CSRF token and a
// same-site Origin.
func TestConsoleCookiesOverTLS(t *testing.T) {
	g := newTestGateway(t, nil)
	ts := httptest.NewTLSServer(g.srv.Handler())
	defer ts.Close()
	jar, _ := cookiejar.New(nil)
	c := ts.Client()
	c.Jar = jar
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

	get := func(path string) (*http.Response, string) {
		resp, err := c.Get(ts.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp, string(b)
	}
	post := func(path string, form url.Values, origin string) (*http.Response, string) {
		req, _ := http.NewRequest("POST", ts.URL+path, strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if origin != "" {
			req.Header.Set("Origin", origin)
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp, string(b)
	}
	checkCookie := func(resp *http.Response, name string) {
		t.Helper()
		for _, sc := range resp.Header.Values("Set-Cookie") {
			if strings.HasPrefix(sc, name+"=") {
				for _, want := range []string{"Secure", "HttpOnly", "SameSite=Strict"} {
					if !strings.Contains(sc, want) {
						t.Errorf("cookie %s lacks %s: %s", name, want, sc)
					}
				}
				return
			}
		}
		t.Errorf("no %s cookie set: %v", name, resp.Header.Values("Set-Cookie"))
	}
	csrfOf := func(html string) string {
		m := regexp.MustCompile(`name="csrf" value="([^"]+)"`).FindStringSubmatch(html)
		if m == nil {
			t.Fatalf("no CSRF token in the page")
		}
		return m[1]
	}

	resp, page := get("/console/login")
	checkCookie(resp, "armoriq_login")
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") || resp.Header.Get("X-Frame-Options") != "DENY" {
		t.Errorf("security headers: CSP %q, X-Frame-Options %q", csp, resp.Header.Get("X-Frame-Options"))
	}
	loginCSRF := csrfOf(page)
	if resp, _ := post("/console/login", url.Values{"key": {g.adminKey}}, ""); resp.StatusCode != 403 {
		t.Errorf("sign-in without its CSRF token: %d, want 403", resp.StatusCode)
	}
	if resp, _ := post("/console/login", url.Values{"key": {g.adminKey}, "csrf": {loginCSRF}}, "https://evil.example"); resp.StatusCode != 403 {
		t.Errorf("sign-in from another origin: %d, want 403", resp.StatusCode)
	}
	resp, _ = post("/console/login", url.Values{"key": {g.adminKey}, "csrf": {loginCSRF}}, ts.URL)
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("sign-in: %d", resp.StatusCode)
	}
	checkCookie(resp, "armoriq_session")

	_, page = get("/console/keys")
	csrf := csrfOf(page)
	for name, tc := range map[string]struct {
		form   url.Values
		origin string
	}{
		"no token":       {url.Values{"name": {"x"}, "role": {"admin"}}, ""},
		"wrong token":    {url.Values{"name": {"x"}, "role": {"admin"}, "csrf": {"AAAA"}}, ""},
		"the login one":  {url.Values{"name": {"x"}, "role": {"admin"}, "csrf": {loginCSRF}}, ""},
		"another origin": {url.Values{"name": {"x"}, "role": {"admin"}, "csrf": {csrf}}, "https://evil.example"},
	} {
		if resp, _ := post("/console/keys", tc.form, tc.origin); resp.StatusCode != 403 {
			t.Errorf("%s: creating a key answered %d, want 403", name, resp.StatusCode)
		}
	}
	if resp, body := post("/console/keys", url.Values{"name": {"ok"}, "role": {"viewer"}, "csrf": {csrf}}, ts.URL); resp.StatusCode != 201 || !strings.Contains(body, "ak_live_") {
		t.Errorf("creating a key with the token: %d", resp.StatusCode)
	}
	// The audit export of the filtered records.
	g.pushBundle("rev1", 1, testPolicy())
	params := map[string]any{"text": "hi"}
	tok := g.issue("alice@example.com", step("tools", "echo", params))
	g.sdkInvoke(g.agentKey, tok, "tools", "echo", params, nil)
	g.srv.waitOutcomes(readWait)
	resp, body := get("/console/audit/export?user=alice%40example.com&decision=allowed")
	if resp.StatusCode != 200 || !strings.Contains(resp.Header.Get("Content-Disposition"), "attachment") || strings.Count(body, "\n") != 2 || !strings.Contains(body, `"user":"alice@example.com"`) {
		t.Errorf("audit export: %d %q\n%s", resp.StatusCode, resp.Header.Get("Content-Disposition"), body)
	}
	if resp, _ := get("/console/audit?decision=maybe"); resp.StatusCode != 400 {
		t.Errorf("a bad audit filter: %d, want 400", resp.StatusCode)
	}

	// No secret in a URL, ever: the key is only in the answer to the form.
	if resp, _ := get("/console/keys"); strings.Contains(resp.Request.URL.String(), "ak_live_") {
		t.Error("a key reached a URL")
	}
}
