package console

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"embed"
	"encoding/base64"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/armoriq/controlplane/runtime/store"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Cookie names. The session cookie holds a random id whose hash the store
// keeps; the login cookie is the CSRF token of the sign-in form; the
// device cookie holds the device code of a browser signing in by code.
const (
	sessionCookie = "armoriq_session"
	loginCookie   = "armoriq_login"
	deviceCookie  = "armoriq_device"
)

// Options configure a Console.
type Options struct {
	Backend  Backend
	Sessions Sessions
	Logger   *slog.Logger
	// Prefix is where the console is mounted (default "/console").
	Prefix string
	// SessionTTL is how long a session lasts (default 12h).
	SessionTTL time.Duration
	Now        func() time.Time
}

// Console is the console's HTTP handler.
type Console struct {
	b      Backend
	ss     Sessions
	log    *slog.Logger
	prefix string
	ttl    time.Duration
	now    func() time.Time
	mux    *http.ServeMux

	// pages are parsed at the first page served: a gateway whose console
	// nobody opens does not keep them (some 400 KB of its live heap, which
	// the garbage collector's pacing doubles in resident memory).
	pagesOnce sync.Once
	pages     map[string]*template.Template
	pagesErr  error

	verifyMu sync.Mutex
	verified verifyResult
}

type verifyResult struct {
	At     time.Time
	Report store.VerifyReport
	Err    error
}

// New returns the console handler. Mount it at Options.Prefix + "/".
func New(o Options) (*Console, error) {
	if o.Backend == nil || o.Sessions == nil {
		return nil, errors.New("console: a backend and a session store are required")
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Prefix == "" {
		o.Prefix = "/console"
	}
	if o.SessionTTL <= 0 {
		o.SessionTTL = 12 * time.Hour
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	c := &Console{b: o.Backend, ss: o.Sessions, log: o.Logger, prefix: strings.TrimRight(o.Prefix, "/"), ttl: o.SessionTTL, now: o.Now}
	c.routes()
	return c, nil
}

// page returns the parsed template of a page, parsing them all the first
// time. The templates are embedded: TestTemplatesRender checks they parse
// and render.
func (c *Console) page(name string) (*template.Template, error) {
	c.pagesOnce.Do(func() { c.pages, c.pagesErr = c.parse() })
	if c.pagesErr != nil {
		return nil, c.pagesErr
	}
	return c.pages[name], nil
}

func (c *Console) parse() (map[string]*template.Template, error) {
	pages := map[string]*template.Template{}
	names, err := fs.Glob(templateFS, "templates/*.html")
	if err != nil {
		return nil, err
	}
	for _, n := range names {
		base := strings.TrimSuffix(strings.TrimPrefix(n, "templates/"), ".html")
		if base == "layout" {
			continue
		}
		t, err := template.New("layout.html").Funcs(c.funcs()).ParseFS(templateFS, "templates/layout.html", n)
		if err != nil {
			return nil, fmt.Errorf("console: template %s: %w", n, err)
		}
		pages[base] = t
	}
	return pages, nil
}

func (c *Console) routes() {
	m := http.NewServeMux()
	p := c.prefix
	static, _ := fs.Sub(staticFS, "static")
	m.Handle("GET "+p+"/static/", http.StripPrefix(p+"/static/", http.FileServerFS(static)))
	m.HandleFunc("GET "+p+"/login", c.getLogin)
	m.HandleFunc("POST "+p+"/login", c.postLogin)
	m.HandleFunc("POST "+p+"/login/device", c.postLoginDevice)
	m.HandleFunc("GET "+p+"/login/device", c.getLoginDevice)
	m.HandleFunc("POST "+p+"/logout", c.authed(c.postLogout))
	m.HandleFunc("GET "+p+"/{$}", c.authed(c.overview))
	m.HandleFunc("GET "+p+"/approvals", c.authed(c.approvals))
	m.HandleFunc("GET "+p+"/approvals/{id}", c.authed(c.approvalPage))
	m.HandleFunc("POST "+p+"/approvals/{id}", c.authed(c.decideApproval))
	m.HandleFunc("GET "+p+"/keys", c.authed(c.keys))
	m.HandleFunc("POST "+p+"/keys", c.authed(c.createKey))
	m.HandleFunc("POST "+p+"/keys/{id}/revoke", c.authed(c.revokeKey))
	m.HandleFunc("GET "+p+"/audit", c.authed(c.audit))
	m.HandleFunc("GET "+p+"/audit/export", c.authed(c.exportAudit))
	m.HandleFunc("GET "+p+"/audit/{seq}", c.authed(c.auditRecord))
	m.HandleFunc("GET "+p+"/policy", c.authed(c.policy))
	m.HandleFunc("GET "+p+"/device", c.authed(c.devices))
	m.HandleFunc("POST "+p+"/device", c.authed(c.decideDevice))
	m.HandleFunc(p+"/", func(w http.ResponseWriter, r *http.Request) {
		c.fail(w, r, nil, http.StatusNotFound, "no console page at "+r.URL.Path)
	})
	c.mux = m
}

// ServeHTTP serves the console with its security headers.
func (c *Console) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "same-origin") // "no-referrer" makes browsers send Origin: null on our own forms
	h.Set("Cache-Control", "no-store")
	if r.URL.Path == c.prefix {
		http.Redirect(w, r, c.prefix+"/", http.StatusSeeOther)
		return
	}
	c.mux.ServeHTTP(w, r)
}

// ---- sessions

// session is a signed-in request's state.
type session struct {
	Identity
	CSRF           string
	IDHash         []byte
	RevokeKeyOnEnd bool
}

func randomToken() string {
	var b [32]byte
	rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

func hashID(id string) []byte {
	sum := sha256.Sum256([]byte("armoriq console session v1\x00" + id))
	return sum[:]
}

func secure(r *http.Request) bool {
	return r.TLS != nil || strings.EqualFold(r.Header.Get("X-Forwarded-Proto"), "https")
}

func (c *Console) setCookie(w http.ResponseWriter, r *http.Request, name, value, path string, maxAge int) {
	http.SetCookie(w, &http.Cookie{
		Name: name, Value: value, Path: path, MaxAge: maxAge,
		HttpOnly: true, Secure: secure(r), SameSite: http.SameSiteStrictMode,
	})
}

// authed resolves the session: no session, an expired one or one whose key
// was revoked sends the browser to the sign-in page. A POST must carry
// the session's CSRF token.
func (c *Console) authed(h func(w http.ResponseWriter, r *http.Request, s *session)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		s, err := c.lookup(r)
		if err != nil {
			c.setCookie(w, r, sessionCookie, "", c.prefix+"/", -1)
			if r.Method == http.MethodGet {
				http.Redirect(w, r, c.prefix+"/login?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
				return
			}
			c.fail(w, r, nil, http.StatusUnauthorized, "your session has ended: "+err.Error()+"; sign in again")
			return
		}
		if r.Method == http.MethodPost {
			if !sameOrigin(r) {
				c.fail(w, r, s, http.StatusForbidden, "the form came from another site")
				return
			}
			if err := r.ParseForm(); err != nil {
				c.fail(w, r, s, http.StatusBadRequest, "the form could not be read")
				return
			}
			if subtle.ConstantTimeCompare([]byte(r.PostFormValue("csrf")), []byte(s.CSRF)) != 1 {
				c.fail(w, r, s, http.StatusForbidden, "the form's CSRF token is missing or wrong: reload the page and try again")
				return
			}
		}
		h(w, r, s)
	}
}

// sameOrigin refuses a POST whose Origin header names another host. Browsers
// send Origin on every cross-site POST; its absence (an old client, curl)
// is left to the CSRF token.
func sameOrigin(r *http.Request) bool {
	o := r.Header.Get("Origin")
	if o == "" || o == "null" {
		return o == ""
	}
	u, err := url.Parse(o)
	return err == nil && u.Host == r.Host
}

func (c *Console) lookup(r *http.Request) (*session, error) {
	ck, err := r.Cookie(sessionCookie)
	if err != nil || ck.Value == "" || len(ck.Value) > 100 {
		return nil, errors.New("not signed in")
	}
	ss, err := c.ss.GetSession(r.Context(), hashID(ck.Value), c.now())
	if err != nil {
		return nil, errors.New("no such session")
	}
	id, err := c.b.Identity(r.Context(), ss.KeyID)
	if err != nil {
		// The key was revoked or deleted: the session ends with it.
		_ = c.ss.DeleteSession(r.Context(), ss.IDHash)
		return nil, errors.New("its API key is no longer valid")
	}
	if id.Role != store.RoleAdmin && id.Role != store.RoleViewer {
		return nil, errors.New("only admin and viewer keys may sign in")
	}
	return &session{Identity: id, CSRF: ss.CSRF, IDHash: ss.IDHash, RevokeKeyOnEnd: ss.RevokeKeyOnEnd}, nil
}

// startSession signs the browser in as id.
func (c *Console) startSession(w http.ResponseWriter, r *http.Request, id Identity, revokeOnEnd bool) error {
	raw := randomToken()
	now := c.now().UTC()
	err := c.ss.CreateSession(r.Context(), store.Session{
		IDHash: hashID(raw), KeyID: id.KeyID, CSRF: randomToken(),
		CreatedAt: now, ExpiresAt: now.Add(c.ttl), RevokeKeyOnEnd: revokeOnEnd,
	})
	if err != nil {
		return err
	}
	c.setCookie(w, r, sessionCookie, raw, c.prefix+"/", int(c.ttl.Seconds()))
	c.log.Info("console sign-in", "key", id.KeyID, "role", id.Role)
	return nil
}

// ---- rendering

// page is what every template gets.
type page struct {
	Title   string
	Nav     string
	Prefix  string
	S       *session
	Flash   string
	Error   string
	Data    any
	Now     time.Time
	Pending int
}

func (c *Console) render(w http.ResponseWriter, r *http.Request, status int, name string, p page) {
	t, err := c.page(name)
	if err != nil {
		c.log.Error("console: the page templates do not parse", "error", err)
		http.Error(w, "the console's templates do not parse", http.StatusInternalServerError)
		return
	}
	if t == nil {
		http.Error(w, "no template "+name, http.StatusInternalServerError)
		return
	}
	p.Prefix, p.Now = c.prefix, c.now().UTC()
	if p.Flash == "" {
		p.Flash = r.URL.Query().Get("flash")
		if len(p.Flash) > 300 {
			p.Flash = ""
		}
	}
	if p.S != nil {
		if list, err := c.b.Approvals(r.Context(), store.ApprovalFilter{State: store.ApprovalPending, Limit: 1000}); err == nil {
			for _, a := range list {
				if a.State == store.ApprovalPending {
					p.Pending++
				}
			}
		}
	}
	var b strings.Builder
	if err := t.Execute(&b, p); err != nil {
		c.log.Error("console template failed", "template", name, "error", err)
		http.Error(w, "the page could not be rendered", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	w.Write([]byte(b.String()))
}

// fail renders an error page. err, when set, decides the status and
// message if it is a PublicError; other errors are logged and shown as
// internal.
func (c *Console) fail(w http.ResponseWriter, r *http.Request, s *session, status int, msg string) {
	c.render(w, r, status, "error", page{Title: http.StatusText(status), S: s, Error: msg})
}

func (c *Console) failErr(w http.ResponseWriter, r *http.Request, s *session, err error) {
	var pe PublicError
	if errors.As(err, &pe) {
		c.fail(w, r, s, pe.HTTPStatus(), pe.PublicMessage())
		return
	}
	c.log.Error("console request failed", "path", r.URL.Path, "error", err)
	c.fail(w, r, s, http.StatusInternalServerError, "internal error: see the gateway's log")
}

// back redirects after a successful POST, with a message for the next page.
func (c *Console) back(w http.ResponseWriter, r *http.Request, path, flash string) {
	u := c.prefix + path
	if flash != "" {
		sep := "?"
		if strings.Contains(u, "?") {
			sep = "&"
		}
		u += sep + "flash=" + url.QueryEscape(flash)
	}
	http.Redirect(w, r, u, http.StatusSeeOther)
}

// ---- sign-in and out

func (c *Console) getLogin(w http.ResponseWriter, r *http.Request) {
	if s, err := c.lookup(r); err == nil && s != nil {
		http.Redirect(w, r, c.prefix+"/", http.StatusSeeOther)
		return
	}
	tok := randomToken()
	c.setCookie(w, r, loginCookie, tok, c.prefix+"/login", 3600)
	c.render(w, r, http.StatusOK, "login", page{Title: "Sign in", Data: map[string]string{"CSRF": tok, "Next": safeNext(r.URL.Query().Get("next"), c.prefix)}})
}

// checkLoginCSRF checks the sign-in forms' token against their cookie.
func (c *Console) checkLoginCSRF(w http.ResponseWriter, r *http.Request) bool {
	if !sameOrigin(r) {
		c.fail(w, r, nil, http.StatusForbidden, "the form came from another site")
		return false
	}
	ck, err := r.Cookie(loginCookie)
	if err != nil || ck.Value == "" || subtle.ConstantTimeCompare([]byte(ck.Value), []byte(r.PostFormValue("csrf"))) != 1 {
		c.fail(w, r, nil, http.StatusForbidden, "the sign-in form's CSRF token is missing or wrong: reload the sign-in page and try again")
		return false
	}
	return true
}

func (c *Console) postLogin(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		c.fail(w, r, nil, http.StatusBadRequest, "the form could not be read")
		return
	}
	if !c.checkLoginCSRF(w, r) {
		return
	}
	id, err := c.b.Authenticate(r.Context(), strings.TrimSpace(r.PostFormValue("key")))
	if err != nil {
		c.log.Info("console sign-in refused", "error", err)
		c.render(w, r, http.StatusUnauthorized, "login", page{Title: "Sign in", Error: "that API key is not valid (wrong, revoked or mistyped)",
			Data: map[string]string{"CSRF": r.PostFormValue("csrf"), "Next": safeNext(r.PostFormValue("next"), c.prefix)}})
		return
	}
	if id.Role != store.RoleAdmin && id.Role != store.RoleViewer {
		c.render(w, r, http.StatusForbidden, "login", page{Title: "Sign in", Error: "a key with role " + string(id.Role) + " cannot sign in to the console: use an admin or viewer key",
			Data: map[string]string{"CSRF": r.PostFormValue("csrf"), "Next": safeNext(r.PostFormValue("next"), c.prefix)}})
		return
	}
	if err := c.startSession(w, r, id, false); err != nil {
		c.failErr(w, r, nil, err)
		return
	}
	c.setCookie(w, r, loginCookie, "", c.prefix+"/login", -1)
	http.Redirect(w, r, safeNext(r.PostFormValue("next"), c.prefix), http.StatusSeeOther)
}

// safeNext keeps a post-sign-in redirect inside the console.
func safeNext(next, prefix string) string {
	if strings.HasPrefix(next, prefix+"/") && !strings.HasPrefix(next, "//") && !strings.ContainsAny(next, "\\\r\n") {
		return next
	}
	return prefix + "/"
}

func (c *Console) postLoginDevice(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		c.fail(w, r, nil, http.StatusBadRequest, "the form could not be read")
		return
	}
	if !c.checkLoginCSRF(w, r) {
		return
	}
	scheme := "http"
	if secure(r) {
		scheme = "https"
	}
	code, user, _, err := c.b.StartDevice(r.Context(), scheme+"://"+r.Host, "console sign-in: "+r.UserAgent())
	if err != nil {
		c.failErr(w, r, nil, err)
		return
	}
	c.setCookie(w, r, deviceCookie, code+"."+user, c.prefix+"/login", 900)
	http.Redirect(w, r, c.prefix+"/login/device", http.StatusSeeOther)
}

// getLoginDevice is the waiting page of a device sign-in: it refreshes
// itself (no JavaScript) until the code is approved or refused.
func (c *Console) getLoginDevice(w http.ResponseWriter, r *http.Request) {
	var code, user string
	ok := false
	if ck, err := r.Cookie(deviceCookie); err == nil {
		code, user, ok = strings.Cut(ck.Value, ".")
	}
	if !ok || code == "" {
		http.Redirect(w, r, c.prefix+"/login", http.StatusSeeOther)
		return
	}
	id, state, err := c.b.PollDevice(r.Context(), code)
	if err != nil {
		c.failErr(w, r, nil, err)
		return
	}
	switch state {
	case "ok":
		c.setCookie(w, r, deviceCookie, "", c.prefix+"/login", -1)
		if id.Role != store.RoleAdmin && id.Role != store.RoleViewer {
			c.fail(w, r, nil, http.StatusForbidden, "the code was approved with role "+string(id.Role)+", which cannot sign in to the console")
			return
		}
		if err := c.startSession(w, r, id, true); err != nil {
			c.failErr(w, r, nil, err)
			return
		}
		http.Redirect(w, r, c.prefix+"/", http.StatusSeeOther)
	case "authorization_pending", "slow_down":
		c.render(w, r, http.StatusOK, "login_wait", page{Title: "Waiting for approval", Data: map[string]string{"UserCode": user}})
	default:
		c.setCookie(w, r, deviceCookie, "", c.prefix+"/login", -1)
		msg := "the code expired before anyone approved it"
		if state == "access_denied" {
			msg = "the sign-in was denied"
		}
		c.fail(w, r, nil, http.StatusForbidden, msg+": start again from the sign-in page")
	}
}

func (c *Console) postLogout(w http.ResponseWriter, r *http.Request, s *session) {
	_ = c.ss.DeleteSession(r.Context(), s.IDHash)
	if s.RevokeKeyOnEnd {
		if err := c.b.RevokeKey(r.Context(), s.Identity, s.KeyID); err != nil {
			c.log.Warn("revoking the key of a device sign-in at logout failed", "key", s.KeyID, "error", err)
		}
	}
	c.setCookie(w, r, sessionCookie, "", c.prefix+"/", -1)
	http.Redirect(w, r, c.prefix+"/login?flash="+url.QueryEscape("signed out"), http.StatusSeeOther)
}
