package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/armoriq/controlplane/runtime/intent"
)

// Version is sent in the User-Agent.
const Version = "0.1.0"

// maxAnswerBytes bounds the gateway answers the client reads.
const maxAnswerBytes = 16 << 20

// Options configure a Client. Empty fields fall back to the environment, as
// the official SDKs do, then to the credentials file.
type Options struct {
	// APIKey, else ARMORIQ_API_KEY, else "apiKey" of
	// ~/.armoriq/credentials.json. It must start with ak_live_ or ak_test_.
	APIKey string
	// UserID, else USER_ID, else "userId" of the credentials file; AgentID,
	// else AGENT_ID. Both are required.
	UserID, AgentID string
	// Endpoint is one gateway URL serving the backend, proxy and IAP APIs.
	// BackendEndpoint and ProxyEndpoint override it for one API each. When
	// all are empty: BACKEND_ENDPOINT, PROXY_ENDPOINT, IAP_ENDPOINT, then
	// ARMORIQ_ENDPOINT, each API taking the first that is set, then the
	// gateway of the credentials file when its key is the one in use. There
	// is no default: a client never silently talks to a hosted service or to
	// localhost.
	Endpoint, BackendEndpoint, ProxyEndpoint string
	// IAPEndpoint (else IAP_ENDPOINT, else Endpoint, else the backend) is
	// the SDKs' third service (delegation); kept for parity, unused so far.
	IAPEndpoint string
	// ContextID, else CONTEXT_ID, else "default".
	ContextID string
	// HTTPClient defaults to one with a 30 s timeout.
	HTTPClient *http.Client

	// Getenv defaults to os.Getenv; HomeDir to os.UserHomeDir(). Tests set them.
	Getenv  func(string) string
	HomeDir string
	// Now defaults to time.Now; it decides local token expiry.
	Now func() time.Time
}

// Client talks to one gateway as one user and agent. It is safe for
// concurrent use.
type Client struct {
	apiKey, userID, agentID, contextID string
	backend, proxy, iap                string
	http                               *http.Client
	now                                func() time.Time
}

type credentials struct {
	APIKey string `json:"apiKey"`
	UserID string `json:"userId"`
	Email  string `json:"email"`
	// Gateway is written by armoriq login (the SDKs ignore it).
	Gateway string `json:"gateway"`
}

// New resolves the configuration; it makes no request (call Health to check
// the key against the gateway, as the SDKs' constructors do). Its errors are
// *Error of KindConfiguration.
func New(opts Options) (*Client, error) {
	getenv := opts.Getenv
	if getenv == nil {
		getenv = os.Getenv
	}
	creds, err := readCredentials(opts.HomeDir)
	if err != nil {
		return nil, err
	}
	c := &Client{
		apiKey:    first(opts.APIKey, getenv("ARMORIQ_API_KEY"), creds.APIKey),
		userID:    first(opts.UserID, getenv("USER_ID"), creds.UserID),
		agentID:   first(opts.AgentID, getenv("AGENT_ID")),
		contextID: first(opts.ContextID, getenv("CONTEXT_ID"), "default"),
		http:      opts.HTTPClient,
		now:       opts.Now,
	}
	switch {
	case c.apiKey == "":
		return nil, newError(KindConfiguration, 0, "API key is required: set Options.APIKey or ARMORIQ_API_KEY, or run armoriq login")
	case !strings.HasPrefix(c.apiKey, "ak_live_") && !strings.HasPrefix(c.apiKey, "ak_test_"):
		return nil, newError(KindConfiguration, 0, "invalid API key format: API keys start with ak_live_ or ak_test_")
	case c.userID == "":
		return nil, newError(KindConfiguration, 0, "user id is required: set Options.UserID or USER_ID")
	case c.agentID == "":
		return nil, newError(KindConfiguration, 0, "agent id is required: set Options.AgentID or AGENT_ID")
	}
	general := first(opts.Endpoint, getenv("ARMORIQ_ENDPOINT"))
	if general == "" && c.apiKey == creds.APIKey {
		// The gateway armoriq login saved, only with the key it issued.
		general = creds.Gateway
	}
	c.backend = first(opts.BackendEndpoint, opts.Endpoint, getenv("BACKEND_ENDPOINT"), general)
	c.proxy = first(opts.ProxyEndpoint, opts.Endpoint, getenv("PROXY_ENDPOINT"), general)
	c.iap = first(opts.IAPEndpoint, opts.Endpoint, getenv("IAP_ENDPOINT"), general, c.backend)
	if c.backend == "" || c.proxy == "" {
		return nil, newError(KindConfiguration, 0, "gateway endpoint is required: set Options.Endpoint or ARMORIQ_ENDPOINT (or BACKEND_ENDPOINT and PROXY_ENDPOINT)")
	}
	for _, u := range []*string{&c.backend, &c.proxy, &c.iap} {
		*u = strings.TrimRight(*u, "/")
		if !strings.HasPrefix(*u, "http://") && !strings.HasPrefix(*u, "https://") {
			return nil, newError(KindConfiguration, 0, "endpoint %q is not an http or https URL", *u)
		}
	}
	if c.http == nil {
		c.http = &http.Client{Timeout: 30 * time.Second}
	}
	if c.now == nil {
		c.now = time.Now
	}
	return c, nil
}

func first(vals ...string) string {
	for _, v := range vals {
		if v != "" {
			return v
		}
	}
	return ""
}

// readCredentials reads ~/.armoriq/credentials.json; a missing file is no
// error, a broken one is.
func readCredentials(home string) (credentials, error) {
	var creds credentials
	if home == "" {
		h, err := os.UserHomeDir()
		if err != nil {
			return creds, nil
		}
		home = h
	}
	path := filepath.Join(home, ".armoriq", "credentials.json")
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return creds, nil
	}
	if err != nil {
		return creds, newError(KindConfiguration, 0, "reading credentials file: %v", err)
	}
	if err := json.Unmarshal(data, &creds); err != nil {
		return creds, newError(KindConfiguration, 0, "credentials file %s is not valid JSON: %v", path, err)
	}
	return creds, nil
}

// UserID returns the user the client acts for.
func (c *Client) UserID() string { return c.userID }

// AgentID returns the agent the client acts as.
func (c *Client) AgentID() string { return c.agentID }

// BackendEndpoint returns the URL tokens are requested from.
func (c *Client) BackendEndpoint() string { return c.backend }

// IAPEndpoint returns the URL of the IAP service (delegation).
func (c *Client) IAPEndpoint() string { return c.iap }

// ProxyEndpoint returns the URL tools are invoked through.
func (c *Client) ProxyEndpoint() string { return c.proxy }

// Health calls GET {proxy}/health with the API key. A refused key is
// KindConfiguration (KindRevoked when the gateway says it was revoked); an
// unreachable or failing gateway is KindUnavailable.
func (c *Client) Health(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.proxy+"/health", nil)
	if err != nil {
		return newError(KindConfiguration, 0, "health request: %v", err)
	}
	c.authorize(req)
	ans, err := c.do(req)
	if err != nil {
		return newError(KindUnavailable, 0, "health check: %v", err)
	}
	switch {
	case ans.revoked() && (ans.status == http.StatusUnauthorized || ans.status == http.StatusForbidden):
		return newError(KindRevoked, ans.status, "API key revoked")
	case ans.status == http.StatusUnauthorized || ans.status == http.StatusForbidden:
		return newError(KindConfiguration, ans.status, "invalid or revoked API key")
	case ans.status >= 400:
		return newError(KindUnavailable, ans.status, "health check failed: %s", ans.message())
	}
	return nil
}

func (c *Client) authorize(req *http.Request) {
	req.Header.Set("X-API-Key", c.apiKey)
	req.Header.Set("Authorization", "Bearer "+c.apiKey)
	req.Header.Set("User-Agent", fmt.Sprintf("armoriq-go/%s (agent=%s)", Version, c.agentID))
}

// answer is a read HTTP answer.
type answer struct {
	status int
	header http.Header
	body   []byte
}

func (c *Client) do(req *http.Request) (*answer, error) {
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswerBytes+1))
	if err != nil {
		return nil, fmt.Errorf("reading answer: %v", err)
	}
	if len(body) > maxAnswerBytes {
		return nil, fmt.Errorf("answer larger than %d bytes", maxAnswerBytes)
	}
	return &answer{status: resp.StatusCode, header: resp.Header, body: body}, nil
}

func (a *answer) revoked() bool {
	return strings.EqualFold(a.header.Get("X-Armoriq-Revoked"), "true")
}

// object decodes the body as a JSON object (numbers as json.Number), or nil.
func (a *answer) object() map[string]any {
	return decodeObject(a.body)
}

func decodeObject(data []byte) map[string]any {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var m map[string]any
	if dec.Decode(&m) != nil {
		return nil
	}
	return m
}

// message is the answer's "message" (or "error" string, or "detail"), else its
// body cut short, else the status text.
func (a *answer) message() string {
	if m := a.object(); m != nil {
		for _, k := range []string{"message", "error", "detail"} {
			if s, ok := m[k].(string); ok && s != "" {
				return s
			}
		}
	}
	if s := strings.TrimSpace(string(a.body)); s != "" {
		if len(s) > 200 {
			s = s[:200] + "..."
		}
		return s
	}
	return http.StatusText(a.status)
}

// postJSON sends body (canonical JSON, so numbers keep their int/float form)
// to url with the API key.
func (c *Client) postJSON(ctx context.Context, url string, body any, header http.Header) (*answer, error) {
	data, err := intent.Canonical(body)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(data))
	if err != nil {
		return nil, err
	}
	for k, v := range header {
		req.Header[k] = v
	}
	req.Header.Set("Content-Type", "application/json")
	c.authorize(req)
	return c.do(req)
}
