package main

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/armoriq/controlplane/runtime/identity/oauth"
	"github.com/armoriq/controlplane/schema"
)

// checkProvidersOnline checks each identity provider against its issuer,
// for validate --online: the discovery document is reachable and names
// exactly the configured issuer, and its JWKS is reachable and holds a
// signing key for an allowed algorithm (oauth.CheckProvider, the code the
// gateway trusts tokens with). A provider the file already has errors for
// (ds) is not fetched: validate never contacts a URL it refused. Every
// problem is an error at the provider: a gateway could not verify its
// tokens.
func checkProvidersOnline(ctx context.Context, c *schema.Config, ds schema.Diagnostics, timeout time.Duration) schema.Diagnostics {
	errs := make([]error, len(c.IdentityProviders))
	client := &http.Client{Timeout: timeout}
	var wg sync.WaitGroup
	for i, p := range c.IdentityProviders {
		path := fmt.Sprintf("identity_providers[%d]", i)
		if hasErrorAt(ds, path) {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = oauth.CheckProvider(ctx, oauthProvider(p), client)
		}()
	}
	wg.Wait()
	var out schema.Diagnostics
	for i, err := range errs {
		if err == nil {
			continue
		}
		for _, e := range splitErrors(err) {
			out = append(out, schema.Diagnostic{Severity: schema.SeverityError, Pos: c.IdentityProviders[i].Pos,
				Path: fmt.Sprintf("identity_providers[%d]", i), Summary: joinLines(e.Error())})
		}
	}
	return out
}

// oauthProvider is p as the gateway's verifier takes it.
func oauthProvider(p schema.IdentityProvider) oauth.Provider {
	return oauth.Provider{
		Name: p.Name, Issuer: p.Issuer, Audience: p.Audience,
		UserClaim: p.UserClaim, GroupsClaim: p.GroupsClaim,
		RequiredScopes: p.RequiredScopes, AllowedAlgorithms: p.AllowedAlgorithms,
	}
}

// hasErrorAt reports whether ds holds an error at path or below it.
func hasErrorAt(ds schema.Diagnostics, path string) bool {
	for _, d := range ds {
		if d.Severity == schema.SeverityError && (d.Path == path || strings.HasPrefix(d.Path, path+".") || strings.HasPrefix(d.Path, path+"[")) {
			return true
		}
	}
	return false
}

// splitErrors returns the errors joined in err (errors.Join), or err.
func splitErrors(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, splitErrors(e)...)
		}
		return out
	}
	return []error{err}
}

// joinLines keeps a diagnostic on one line: errors joined deeper down are
// separated by "; ".
func joinLines(s string) string { return strings.ReplaceAll(strings.TrimSpace(s), "\n", "; ") }
