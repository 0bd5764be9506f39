package store

import (
	"context"
	"fmt"
	"sync"
	"testing"
)

// BenchmarkAppendAudit measures committed appends per second with 1 and 16
// concurrent callers; with 16, group commit shares each commit between them.
func BenchmarkAppendAudit(b *testing.B) {
	for _, e := range []engine{sqliteEngine, postgresEngine} {
		for _, callers := range []int{1, 16} {
			b.Run(fmt.Sprintf("%s/callers=%d", e.name, callers), func(b *testing.B) {
				s := open(b, e.newDB(b))
				ctx := context.Background()
				rec := auditRec(1)
				b.ResetTimer()
				var wg sync.WaitGroup
				for w := range callers {
					n := b.N / callers
					if w < b.N%callers {
						n++
					}
					wg.Go(func() {
						for range n {
							if _, err := s.AppendAudit(ctx, rec); err != nil {
								b.Error(err)
								return
							}
						}
					})
				}
				wg.Wait()
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
			})
		}
	}
}

// BenchmarkCheckAPIKey is the per-request cost of checking a key against its
// stored hash, without the database: parse, SHA-256, constant-time compare.
func BenchmarkCheckAPIKey(b *testing.B) {
	full, _, hash := GenerateAPIKey()
	b.ReportAllocs()
	for b.Loop() {
		id, secret, err := ParseAPIKey(full)
		if err != nil || !CheckAPISecret(id, secret, hash) {
			b.Fatal("key does not check")
		}
	}
}
