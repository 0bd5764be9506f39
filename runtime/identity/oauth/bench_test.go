package oauth

import (
	"context"
	"testing"
)

// BenchmarkVerify measures Verify with the keys cached: the cost every
// request with an access token pays.
func BenchmarkVerify(b *testing.B) {
	for _, alg := range []string{"RS256", "ES256", "EdDSA"} {
		b.Run(alg, func(b *testing.B) {
			s := newSigner("k", alg, 0)
			is := newIssuer(b, "", false, s)
			c := newClock()
			v := newTestVerifier(b, c, is.provider("corp"))
			raw := s.mint(nil, is.claims(c, nil))
			ctx := context.Background()
			if _, err := v.Verify(ctx, raw); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := v.Verify(ctx, raw); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
