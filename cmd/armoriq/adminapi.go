package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/spf13/pflag"
)

// gatewayFlags are the flags of commands that talk to a running gateway.
type gatewayFlags struct {
	url        string
	apiKey     string
	apiKeyFile string
}

func (g *gatewayFlags) register(fs *pflag.FlagSet) {
	fs.StringVar(&g.url, "gateway", "", "gateway URL (default $ARMORIQ_GATEWAY or http://127.0.0.1:8080)")
	fs.StringVar(&g.apiKey, "api-key", "", "API key (default $ARMORIQ_API_KEY, then ~/.armoriq/credentials.json)")
	fs.StringVar(&g.apiKeyFile, "api-key-file", "", "file holding the API key, e.g. DATA/admin.key")
}

// adminClient calls the gateway's admin API (docs/api.md).
type adminClient struct {
	base string
	key  string
	http *http.Client
}

func (g *gatewayFlags) client(e *env) (*adminClient, error) {
	// The credentials file (armoriq login) comes after the flags and the
	// environment, for the key and for the gateway it was issued by.
	creds, _, haveCreds, credErr := readCredentials(e)
	base := g.url
	if base == "" {
		base = e.Getenv("ARMORIQ_GATEWAY")
	}
	if base == "" && haveCreds {
		base = creds.Gateway
	}
	if base == "" {
		base = "http://127.0.0.1:8080"
	}
	if !strings.HasPrefix(base, "http://") && !strings.HasPrefix(base, "https://") {
		return nil, usageErrorf("--gateway %q must be an http:// or https:// URL", base)
	}
	key := g.apiKey
	if key == "" && g.apiKeyFile != "" {
		b, err := os.ReadFile(g.apiKeyFile)
		if err != nil {
			return nil, usageErrorf("--api-key-file: %v", err)
		}
		key = strings.TrimSpace(string(b))
	}
	if key == "" {
		key = e.Getenv("ARMORIQ_API_KEY")
	}
	if key == "" && credErr != nil {
		return nil, usageErrorf("%v", credErr)
	}
	if key == "" && haveCreds {
		key = creds.APIKey
	}
	if key == "" {
		return nil, usageErrorf("an API key is required: --api-key, --api-key-file, ARMORIQ_API_KEY or armoriq login")
	}
	return &adminClient{base: strings.TrimRight(base, "/"), key: key, http: &http.Client{Timeout: 60 * time.Second}}, nil
}

// apiError is an error answer from the gateway.
type apiError struct {
	Status  int
	Code    string
	Message string
}

func (e *apiError) Error() string {
	return fmt.Sprintf("gateway answered %d %s: %s", e.Status, e.Code, e.Message)
}

// do sends a request; body is nil, []byte or a value to encode as JSON. A
// 2xx answer is decoded into out (if not nil); anything else is an *apiError.
func (c *adminClient) do(ctx context.Context, method, path string, body, out any) error {
	resp, err := c.send(ctx, method, path, body)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("reading the gateway's answer: %v", err)
	}
	if resp.StatusCode/100 != 2 {
		var eb struct {
			Error struct{ Code, Message string } `json:"error"`
		}
		if json.Unmarshal(data, &eb) != nil || eb.Error.Message == "" {
			eb.Error.Message = strings.TrimSpace(string(data))
		}
		return &apiError{Status: resp.StatusCode, Code: eb.Error.Code, Message: eb.Error.Message}
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			return fmt.Errorf("decoding the gateway's answer: %v", err)
		}
	}
	return nil
}

func (c *adminClient) send(ctx context.Context, method, path string, body any) (*http.Response, error) {
	var rd io.Reader
	ctype := "application/json"
	switch b := body.(type) {
	case nil:
	case []byte:
		rd, ctype = bytes.NewReader(b), "application/gzip"
	default:
		j, err := json.Marshal(b)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+c.key)
	if rd != nil {
		req.Header.Set("Content-Type", ctype)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("cannot reach the gateway at %s: %v", c.base, unwrapURLError(err))
	}
	return resp, nil
}

func unwrapURLError(err error) error {
	type unwrapper interface{ Unwrap() error }
	if u, ok := err.(unwrapper); ok && u.Unwrap() != nil {
		return u.Unwrap()
	}
	return err
}
