package reconciler

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/armoriq/controlplane/compiler/bundle"
)

// Gateway is a target the reconciler pushes to: a small client of the
// gateway's admin API (docs/api.md), over HTTP only.
type Gateway struct {
	Name   string // for status and logs; defaults to the URL
	URL    string // base URL, e.g. https://gw1.internal:8443
	APIKey string // an admin key
	HTTP   *http.Client
}

// PushResult is the gateway's answer to PUT /v1/bundle.
type PushResult struct {
	Revision         string    `json:"revision"`
	Sequence         int64     `json:"sequence"`
	ActivatedAt      time.Time `json:"activated_at"`
	PreviousRevision string    `json:"previous_revision"`
	Changed          bool      `json:"changed"`
}

// GatewayStatus is the gateway's answer to GET /v1/bundle/status.
type GatewayStatus struct {
	Revision    string         `json:"revision"`
	Sequence    int64          `json:"sequence"`
	ActivatedAt *time.Time     `json:"activated_at,omitempty"`
	KeyID       string         `json:"key_id,omitempty"`
	LastError   string         `json:"last_error,omitempty"`
	LastErrorAt *time.Time     `json:"last_error_at,omitempty"`
	Servers     []ServerStatus `json:"servers,omitempty"`
}

// ServerStatus is one upstream server's state as a gateway reports it.
type ServerStatus struct {
	ID        string `json:"id"`
	Transport string `json:"transport"`
	State     string `json:"state"`
}

// APIError is an error answer of the admin API. Code is the documented
// error code ("stale_bundle", "verification_failed", …).
type APIError struct {
	Status  int
	Code    string
	Message string
}

func (e *APIError) Error() string {
	if e.Message == "" {
		return fmt.Sprintf("gateway answered %d %s", e.Status, e.Code)
	}
	return fmt.Sprintf("gateway answered %d %s: %s", e.Status, e.Code, e.Message)
}

// Transient reports whether retrying the same request later may succeed.
func (e *APIError) Transient() bool {
	return e.Status >= 500 || e.Status == http.StatusTooManyRequests ||
		(e.Status == http.StatusConflict && e.Code != "stale_bundle")
}

func (g *Gateway) name() string {
	if g.Name != "" {
		return g.Name
	}
	return g.URL
}

func (g *Gateway) client() *http.Client {
	if g.HTTP != nil {
		return g.HTTP
	}
	return &http.Client{Timeout: 30 * time.Second}
}

// Push sends a signed bundle with PUT /v1/bundle.
func (g *Gateway) Push(ctx context.Context, data []byte) (*PushResult, error) {
	var out PushResult
	if err := g.do(ctx, http.MethodPut, "/v1/bundle", "application/gzip", data, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Status reads GET /v1/bundle/status.
func (g *Gateway) Status(ctx context.Context) (*GatewayStatus, error) {
	var out GatewayStatus
	if err := g.do(ctx, http.MethodGet, "/v1/bundle/status", "", nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Bundle fetches the bundle file the gateway runs (GET /v1/bundle); an
// *APIError with Status 404 when it runs none.
func (g *Gateway) Bundle(ctx context.Context) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(g.URL, "/")+"/v1/bundle", nil)
	if err != nil {
		return nil, err
	}
	if g.APIKey != "" {
		req.Header.Set("Authorization", "Bearer "+g.APIKey)
	}
	resp, err := g.client().Do(req)
	if err != nil {
		return nil, &NetError{Target: g.name(), Err: err}
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, bundle.MaxSize+1))
	if err != nil {
		return nil, &NetError{Target: g.name(), Err: err}
	}
	if resp.StatusCode != http.StatusOK {
		return nil, &APIError{Status: resp.StatusCode, Message: strings.TrimSpace(string(data))}
	}
	return data, nil
}

// maxAnswer bounds what we read of a gateway's answer.
const maxAnswer = 1 << 20

func (g *Gateway) do(ctx context.Context, method, path, ctype string, body []byte, out any) error {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimRight(g.URL, "/")+path, rd)
	if err != nil {
		return err
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	req.Header.Set("Accept", "application/json")
	if g.APIKey != "" {
		req.Header.Set("Authorization", "Bearer "+g.APIKey)
	}
	resp, err := g.client().Do(req)
	if err != nil {
		return &NetError{Target: g.name(), Err: err}
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	if err != nil {
		return &NetError{Target: g.name(), Err: err}
	}
	if resp.StatusCode/100 != 2 {
		ae := &APIError{Status: resp.StatusCode}
		var eb struct {
			Error struct {
				Code    string `json:"code"`
				Message string `json:"message"`
			} `json:"error"`
		}
		if json.Unmarshal(data, &eb) == nil && eb.Error.Code != "" {
			ae.Code, ae.Message = eb.Error.Code, eb.Error.Message
		} else {
			ae.Code = strings.ToLower(strings.ReplaceAll(http.StatusText(resp.StatusCode), " ", "_"))
			ae.Message = strings.TrimSpace(string(firstLine(data)))
		}
		return ae
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return &NetError{Target: g.name(), Err: fmt.Errorf("undecodable answer to %s %s: %v", method, path, err)}
	}
	return nil
}

// NetError is a failure to talk to a gateway at all: always transient.
type NetError struct {
	Target string
	Err    error
}

func (e *NetError) Error() string { return e.Target + ": " + e.Err.Error() }

func firstLine(b []byte) []byte {
	if i := bytes.IndexByte(b, '\n'); i >= 0 {
		b = b[:i]
	}
	if len(b) > 200 {
		b = b[:200]
	}
	return b
}
