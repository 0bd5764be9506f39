package reconciler

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/go-github/v62/github"
)

// GitHubAuth says how to authenticate to GitHub's REST API: a token
// (GITHUB_TOKEN, a PAT) or a GitHub App (its id and private key, exchanged
// for installation tokens that are refreshed before they expire).
type GitHubAuth struct {
	Token string

	AppID          int64
	AppKeyPEM      []byte // the App's RSA private key (PKCS #1 or #8)
	InstallationID int64  // found from the repository when zero

	// APIURL is the API base (GITHUB_API_URL); default https://api.github.com.
	APIURL string
	HTTP   *http.Client
}

// NewGitHubClient returns a go-github client for owner/repo authenticated as
// auth says. For an App it looks up the installation on owner/repo when no
// id is given.
func NewGitHubClient(ctx context.Context, auth GitHubAuth, owner, repo string) (*github.Client, error) {
	base := auth.HTTP
	if base == nil {
		base = &http.Client{Timeout: 30 * time.Second}
	}
	var c *github.Client
	switch {
	case auth.AppID != 0:
		key, err := parseRSAKey(auth.AppKeyPEM)
		if err != nil {
			return nil, err
		}
		at := &appTransport{appID: auth.AppID, key: key, installation: auth.InstallationID, owner: owner, repo: repo,
			base: transportOf(base), apiURL: auth.APIURL}
		hc := *base
		hc.Transport = at
		c = github.NewClient(&hc)
	case auth.Token != "":
		c = github.NewClient(base).WithAuthToken(auth.Token)
	default:
		return nil, errors.New("github: no token and no app credentials")
	}
	if err := setAPIURL(c, auth.APIURL); err != nil {
		return nil, err
	}
	return c, nil
}

func transportOf(c *http.Client) http.RoundTripper {
	if c.Transport != nil {
		return c.Transport
	}
	return http.DefaultTransport
}

// setAPIURL points c at an API base such as GITHUB_API_URL, as given: GHES
// serves /api/v3 and says so in GITHUB_API_URL itself.
func setAPIURL(c *github.Client, api string) error {
	if api == "" {
		return nil
	}
	u, err := url.Parse(strings.TrimRight(api, "/") + "/")
	if err != nil {
		return fmt.Errorf("github API URL %q: %v", api, err)
	}
	c.BaseURL = u
	return nil
}

// appTransport authenticates requests with an installation token, minting
// one from an App JWT when there is none or it is about to expire.
type appTransport struct {
	appID        int64
	key          *rsa.PrivateKey
	installation int64
	owner, repo  string
	base         http.RoundTripper
	apiURL       string

	mu      sync.Mutex
	token   string
	expires time.Time
}

func (t *appTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	tok, err := t.installationToken(req.Context())
	if err != nil {
		return nil, err
	}
	r := req.Clone(req.Context())
	r.Header.Set("Authorization", "token "+tok)
	return t.base.RoundTrip(r)
}

func (t *appTransport) installationToken(ctx context.Context) (string, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.token != "" && time.Until(t.expires) > 5*time.Minute {
		return t.token, nil
	}
	jwt, err := AppJWT(t.appID, t.key, time.Now())
	if err != nil {
		return "", err
	}
	app := github.NewClient(&http.Client{Transport: t.base, Timeout: 30 * time.Second}).WithAuthToken(jwt)
	if err := setAPIURL(app, t.apiURL); err != nil {
		return "", err
	}
	if t.installation == 0 {
		inst, _, err := app.Apps.FindRepositoryInstallation(ctx, t.owner, t.repo)
		if err != nil {
			return "", fmt.Errorf("github app %d: finding its installation on %s/%s: %v", t.appID, t.owner, t.repo, err)
		}
		t.installation = inst.GetID()
	}
	it, _, err := app.Apps.CreateInstallationToken(ctx, t.installation, nil)
	if err != nil {
		return "", fmt.Errorf("github app %d: installation token: %v", t.appID, err)
	}
	t.token, t.expires = it.GetToken(), it.GetExpiresAt().Time
	return t.token, nil
}

// AppJWT returns the RS256 JWT a GitHub App authenticates with: issued a
// minute in the past against clock drift, valid for nine minutes (GitHub
// allows ten).
func AppJWT(appID int64, key *rsa.PrivateKey, now time.Time) (string, error) {
	enc := base64.RawURLEncoding
	header := enc.EncodeToString([]byte(`{"alg":"RS256","typ":"JWT"}`))
	claims, err := json.Marshal(map[string]any{
		"iat": now.Add(-time.Minute).Unix(),
		"exp": now.Add(9 * time.Minute).Unix(),
		"iss": strconv.FormatInt(appID, 10),
	})
	if err != nil {
		return "", err
	}
	signing := header + "." + enc.EncodeToString(claims)
	sum := sha256.Sum256([]byte(signing))
	sig, err := rsa.SignPKCS1v15(rand.Reader, key, crypto.SHA256, sum[:])
	if err != nil {
		return "", err
	}
	return signing + "." + enc.EncodeToString(sig), nil
}

func parseRSAKey(data []byte) (*rsa.PrivateKey, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, errors.New("github app key: no PEM block")
	}
	if k, err := x509.ParsePKCS1PrivateKey(block.Bytes); err == nil {
		return k, nil
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("github app key: %v", err)
	}
	rk, ok := k.(*rsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("github app key: a %T, not an RSA key", k)
	}
	return rk, nil
}

// SplitRepo splits "owner/name".
func SplitRepo(s string) (owner, name string, err error) {
	owner, name, ok := strings.Cut(s, "/")
	if !ok || owner == "" || name == "" || strings.Contains(name, "/") {
		return "", "", fmt.Errorf("repository %q: want owner/name", s)
	}
	return owner, name, nil
}

// StatusContext is the commit status context the reconciler reports under.
const StatusContext = "armoriq/reconcile"

// CommitStatusReporter reports each commit the reconciler attempted as a
// commit status on the policy repository: success when applied, failure
// when stalled, pending while waiting.
type CommitStatusReporter struct {
	Client      *github.Client
	Owner, Repo string
	Context     string // default StatusContext
	TargetURL   string // e.g. the reconciler's /status
}

// ReportCommit implements CommitReporter.
func (r *CommitStatusReporter) ReportCommit(ctx context.Context, revision string, o Outcome) error {
	state := "pending"
	switch o.Condition {
	case Ready:
		state = "success"
	case Stalled:
		state = "failure"
	}
	desc := o.Reason
	if o.Message != "" {
		desc += ": " + o.Message
	}
	if n := len(o.Diagnostics); n > 0 {
		d := o.Diagnostics[0]
		desc = fmt.Sprintf("%s: %s:%d:%d %s", o.Reason, d.File, d.Line, d.Col, d.Summary)
		if n > 1 {
			desc += fmt.Sprintf(" (+%d more)", n-1)
		}
	}
	name := r.Context
	if name == "" {
		name = StatusContext
	}
	st := &github.RepoStatus{State: &state, Context: &name, Description: github.String(truncate(desc, 140))}
	if r.TargetURL != "" {
		st.TargetURL = &r.TargetURL
	}
	_, _, err := r.Client.Repositories.CreateStatus(ctx, r.Owner, r.Repo, revision, st)
	return err
}

// truncate cuts s to n bytes on a rune boundary, marking the cut.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n - len("…")
	for cut > 0 && !utf8RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

func utf8RuneStart(b byte) bool { return b&0xC0 != 0x80 }
