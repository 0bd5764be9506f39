package oauth

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
)

func TestCheckProvider(t *testing.T) {
	good := newSigner("k", "RS256", 0)
	weak := &signer{kid: "weak", alg: "RS256", key: weakRSAKey()}
	tests := []struct {
		name  string
		setup func(is *issuer, p *Provider)
		want  []string // substrings of the error; none: nil error
	}{
		{"a consistent provider", nil, nil},
		{"discovery names another issuer", func(is *issuer, p *Provider) {
			other := is.url + "/"
			is.docIssuer = &other
		}, []string{"/.well-known/openid-configuration", "must be identical"}},
		{"JWKS unreachable", func(is *issuer, p *Provider) { is.jwksStatus = http.StatusNotFound }, []string{"/keys", "404"}},
		{"JWKS holds only a 1024-bit RSA key", func(is *issuer, p *Provider) { is.keys = []*signer{weak} }, []string{"/keys", "no usable signing key", "1024 bits"}},
		{"keys and advertised algorithms outside the allow list", func(is *issuer, p *Provider) { p.AllowedAlgorithms = []string{"EdDSA"} }, []string{
			"advertises the signing algorithms RS256, ES256, none of the allowed EdDSA", "/keys", "no usable signing key for the allowed algorithms EdDSA"}},
		{"JWKS not a key set", func(is *issuer, p *Provider) { is.jwksBody = []byte(`{"nokeys":1}`) }, []string{"/keys", `no "keys" array`}},
		{"no discovery document", func(is *issuer, p *Provider) { p.Issuer += "/nothing-here" }, []string{
			"/nothing-here/.well-known/openid-configuration: status 404", "/.well-known/oauth-authorization-server/nothing-here: status 404"}},
		{"bad config", func(is *issuer, p *Provider) { p.AllowedAlgorithms = []string{"none"} }, []string{`"none" is refused`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			is := newIssuer(t, "", false, good)
			p := is.provider("corp")
			if tt.setup != nil {
				is.set(func(is *issuer) { tt.setup(is, &p) })
			}
			err := CheckProvider(context.Background(), p, nil)
			if len(tt.want) == 0 {
				if err != nil {
					t.Errorf("CheckProvider(%s) = %v, want nil", tt.name, err)
				}
				return
			}
			if err == nil {
				t.Fatalf("CheckProvider(%s) = nil, want an error", tt.name)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("CheckProvider(%s) = %v\nwant it to contain %q", tt.name, err, w)
				}
			}
		})
	}
}

func TestCheckProviderUnreachable(t *testing.T) {
	is := newIssuer(t, "", false)
	p := is.provider("corp")
	is.srv.Close()
	err := CheckProvider(context.Background(), p, nil)
	if err == nil || !strings.Contains(err.Error(), is.url+"/.well-known/openid-configuration") {
		t.Errorf("CheckProvider(a closed server) = %v, want an error naming the discovery URL", err)
	}
}

func TestParseJWKSBounds(t *testing.T) {
	var keys []map[string]any
	for i := 0; i <= maxKeys; i++ {
		keys = append(keys, map[string]any{"kty": "OKP", "crv": "Ed25519", "x": b64e(make([]byte, 32))})
	}
	b, _ := json.Marshal(map[string]any{"keys": keys})
	if _, _, err := parseJWKS(b); err == nil || !strings.Contains(err.Error(), "more than") {
		t.Errorf("parseJWKS(%d keys) = %v, want refused", len(keys), err)
	}
	for _, tt := range []struct{ name, jwk, want string }{
		{"RSA exponent 1", `{"kty":"RSA","n":"` + b64e(rsaKeys()[0].N.Bytes()) + `","e":"AQ"}`, "exponent"},
		{"RSA exponent even", `{"kty":"RSA","n":"` + b64e(rsaKeys()[0].N.Bytes()) + `","e":"AQAA"}`, "exponent"},
		{"RSA exponent of 5 bytes", `{"kty":"RSA","n":"` + b64e(rsaKeys()[0].N.Bytes()) + `","e":"AQAAAAE"}`, "32 bits"},
		{"RSA of 16384 bits", `{"kty":"RSA","n":"` + b64e(append([]byte{0x80}, make([]byte, 2047)...)) + `","e":"AQAB"}`, "at most 8192"},
		{"EC point off the curve", `{"kty":"EC","crv":"P-256","x":"` + b64e(make([]byte, 32)) + `","y":"` + b64e(make([]byte, 32)) + `"}`, "not a point"},
		{"EC coordinate short", `{"kty":"EC","crv":"P-256","x":"AA","y":"AA"}`, "32 bytes"},
		{"EC curve secp256k1", `{"kty":"EC","crv":"secp256k1","x":"AA","y":"AA"}`, "not supported"},
		{"OKP X25519", `{"kty":"OKP","crv":"X25519","x":"` + b64e(make([]byte, 32)) + `"}`, "only Ed25519"},
		{"key_ops without verify", `{"kty":"OKP","crv":"Ed25519","key_ops":["encrypt"],"x":"` + b64e(make([]byte, 32)) + `"}`, "key_ops"},
		{"alg HS256 on an RSA key", `{"kty":"RSA","alg":"HS256","n":"AA","e":"AQAB"}`, "not supported"},
	} {
		_, skipped, err := parseJWKS([]byte(`{"keys":[` + tt.jwk + `]}`))
		if err != nil || len(skipped) != 1 || !strings.Contains(skipped[0].Error(), tt.want) {
			t.Errorf("parseJWKS(%s) skipped %v (err %v), want one key skipped for %q", tt.name, skipped, err, tt.want)
		}
	}
}
