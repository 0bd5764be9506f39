package oauth

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
)

// CheckProvider checks p against its issuer, for `armoriq validate
// --online`: the discovery document is reachable and names exactly
// p.Issuer, its jwks_uri is reachable and holds at least one usable signing
// key for an allowed algorithm, and the algorithms it advertises
// (id_token_signing_alg_values_supported, when present) meet the allowed
// ones. It returns every problem found, joined, each saying what and where
// (the URL). A nil client means one with a 5 s timeout.
func CheckProvider(ctx context.Context, p Provider, client *http.Client) error {
	p, err := Normalize(p)
	if err != nil {
		return err
	}
	if client == nil {
		client = &http.Client{Timeout: fetchTimeout}
	}
	client = safeClient(client)
	where := fmt.Sprintf("identity provider %q", p.Name)
	m, err := discover(ctx, client, p.Issuer)
	if err != nil {
		return fmt.Errorf("%s: %w", where, err)
	}
	var errs []error
	if len(m.IDTokenSigningAlgs) > 0 && !slices.ContainsFunc(p.AllowedAlgorithms, func(a string) bool { return slices.Contains(m.IDTokenSigningAlgs, a) }) {
		errs = append(errs, fmt.Errorf("%s: %s advertises the signing algorithms %s, none of the allowed %s",
			where, m.url, strings.Join(m.IDTokenSigningAlgs, ", "), strings.Join(p.AllowedAlgorithms, ", ")))
	}
	body, _, err := get(ctx, client, m.JWKSURI)
	if err != nil {
		return errors.Join(append(errs, fmt.Errorf("%s: %w", where, err))...)
	}
	keys, skipped, err := parseJWKS(body)
	if err != nil {
		return errors.Join(append(errs, fmt.Errorf("%s: %s: %w", where, m.JWKSURI, err))...)
	}
	usable := false
	for _, k := range keys {
		for _, a := range p.AllowedAlgorithms {
			usable = usable || k.fits(a)
		}
	}
	if !usable {
		why := ""
		if len(skipped) > 0 {
			why = fmt.Sprintf(" (%d keys skipped: %v)", len(skipped), errors.Join(skipped...))
		}
		errs = append(errs, fmt.Errorf("%s: %s holds no usable signing key for the allowed algorithms %s%s",
			where, m.JWKSURI, strings.Join(p.AllowedAlgorithms, ", "), strings.ReplaceAll(why, "\n", "; ")))
	}
	return errors.Join(errs...)
}
