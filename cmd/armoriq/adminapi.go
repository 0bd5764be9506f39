package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
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
	fs.StringVar(&g.apiKey, "api-key", "", "admin API key (default: .armoriq/admin.key for a local gateway, else $ARMORIQ_API_KEY, then ~/.armoriq/credentials.json)")
	fs.StringVar(&g.apiKeyFile, "api-key-file", "", "file holding the API key, e.g. DATA/admin.key")
}

// adminClient calls the gateway's admin API (docs/api.md).
type adminClient struct {
	base string
	key  string
	// keySource says where the key came from, for an error about its role.
	keySource string
	http      *http.Client
}

// localAdminKeys are the admin key files of a gateway run from the current
// directory: armoriq up's, then armoriq gateway's default data directory.
var localAdminKeys = []string{upDefaultData + "/admin.key", ".armoriq-data/admin.key"}

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
	key, source, err := g.resolveKey(e, base, creds.APIKey, haveCreds, credErr)
	if err != nil {
		return nil, err
	}
	return &adminClient{base: strings.TrimRight(base, "/"), key: key, keySource: source, http: &http.Client{Timeout: 60 * time.Second}}, nil
}

// resolveKey picks the API key of an admin command: --api-key,
// --api-key-file, then, for a gateway on this machine, the admin key file
// of a gateway started in this directory (so that the agent key an SDK
// reads from ARMORIQ_API_KEY is not used by mistake), then ARMORIQ_API_KEY,
// then the credentials file of armoriq login. A local admin key file is
// never sent to a remote gateway.
func (g *gatewayFlags) resolveKey(e *env, base, credsKey string, haveCreds bool, credErr error) (key, source string, err error) {
	switch {
	case g.apiKey != "":
		return g.apiKey, "--api-key", nil
	case g.apiKeyFile != "":
		b, err := os.ReadFile(g.apiKeyFile)
		if err != nil {
			return "", "", usageErrorf("--api-key-file: %v", err)
		}
		return strings.TrimSpace(string(b)), g.apiKeyFile, nil
	}
	if loopbackURL(base) {
		for _, path := range localAdminKeys {
			if k, err := readKeyFile(path); err == nil {
				return k, path, nil
			}
		}
	}
	if k := e.Getenv("ARMORIQ_API_KEY"); k != "" {
		return k, "$ARMORIQ_API_KEY", nil
	}
	if credErr != nil {
		return "", "", usageErrorf("%v", credErr)
	}
	if haveCreds && credsKey != "" {
		return credsKey, "~/.armoriq/credentials.json (armoriq login)", nil
	}
	return "", "", usageErrorf("an API key is required: --api-key, --api-key-file, ARMORIQ_API_KEY or armoriq login (a gateway started here keeps its admin key in %s)", localAdminKeys[0])
}

// loopbackURL reports whether u's host is this machine.
func loopbackURL(u string) bool {
	pu, err := url.Parse(u)
	if err != nil {
		return false
	}
	h := pu.Hostname()
	if h == "localhost" {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
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
		if resp.StatusCode == http.StatusForbidden && eb.Error.Code == "forbidden" {
			// The key's role is not enough: say which key it was.
			eb.Error.Message += fmt.Sprintf(" (the key came from %s; use an admin key: --api-key-file DATA/admin.key)", c.keySource)
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
