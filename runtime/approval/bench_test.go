package approval

import (
	"context"
	"fmt"
	"testing"
)

// BenchmarkHoldApproveRun is one held call's whole life on SQLite: the
// hold (Request), the decision (Decide) and the approved retry (Claim).
func BenchmarkHoldApproveRun(b *testing.B) {
	s, _ := newService(b)
	ctx := context.Background()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		c := payment()
		c.TokenID = fmt.Sprintf("tok%d", i)
		a, _, err := s.Request(ctx, c)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := s.Decide(ctx, a.ID, admin, true, "ok"); err != nil {
			b.Fatal(err)
		}
		if _, err := s.Claim(ctx, a.ID, c); err != nil {
			b.Fatal(err)
		}
	}
}
