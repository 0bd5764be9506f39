package oauth

import (
	"context"
	"strings"
	"sync"
	"testing"
)

// FuzzVerify feeds raw token strings to a Verifier whose issuer is real.
// Whatever the input, Verify must not panic, must answer an *Error when it
// refuses, and may accept only a token whose header and payload an
// issuer's key really signed (the fuzzer can reorder nothing signed).
func FuzzVerify(f *testing.F) {
	rs := newSigner("rs", "RS256", 0)
	es := newSigner("es", "ES256", 0)
	is := newIssuer(f, "", false, rs, es)
	c := newClock()
	v := newTestVerifier(f, c, is.provider("corp"))

	var mu sync.Mutex
	signed := map[string]bool{} // signing inputs the issuer's keys signed
	mint := func(s *signer, hdr, claims map[string]any) string {
		raw := s.mint(hdr, claims)
		mu.Lock()
		signed[raw[:strings.LastIndexByte(raw, '.')]] = true
		mu.Unlock()
		return raw
	}
	valid := mint(rs, nil, is.claims(c, nil))
	parts := strings.Split(valid, ".")
	pubPEM := []byte(must(jsonMarshal(rs.jwk())))
	seeds := []string{
		valid,
		mint(es, nil, is.claims(c, nil)),
		mint(rs, map[string]any{"typ": nil, "kid": nil}, is.claims(c, map[string]any{"groups": "eng", "scp": []string{"mcp:tools"}})),
		mint(rs, nil, is.claims(c, map[string]any{"exp": nil})),
		segment(map[string]any{"alg": "none"}) + "." + parts[1] + ".",
		segment(map[string]any{"alg": "none", "kid": "rs"}) + "." + parts[1] + "." + parts[2],
		hs256(map[string]any{"alg": "HS256", "kid": "rs"}, is.claims(c, nil), pubPEM),
		parts[0] + "=." + parts[1] + "." + parts[2],
		parts[0] + "." + parts[1] + "\n." + parts[2],
		"a.b.c", "...", "", "ak_live_0123", "e30.e30.e30",
		strings.Repeat("A", MaxTokenSize+1),
		valid + strings.Repeat("A", MaxTokenSize),
	}
	for _, s := range seeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		p, err := v.Verify(context.Background(), raw)
		if err != nil {
			if _, ok := err.(*Error); !ok {
				t.Fatalf("Verify(%q) error is %T, want *Error", raw, err)
			}
			if p != nil {
				t.Fatalf("Verify(%q) returned a Principal with an error", raw)
			}
			return
		}
		i := strings.LastIndexByte(raw, '.')
		mu.Lock()
		ok := i > 0 && signed[raw[:i]]
		mu.Unlock()
		if !ok {
			t.Fatalf("Verify accepted %q, whose header and payload no issuer key signed", raw)
		}
	})
}
