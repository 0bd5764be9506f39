package policy

import (
	"fmt"
	"testing"
)

func BenchmarkDecide(b *testing.B) {
	for _, n := range []int{10, 10000} {
		for _, cond := range []bool{false, true} {
			b.Run(fmt.Sprintf("rules=%d/cond=%v", n, cond), func(b *testing.B) {
				e := mustCompile(b, benchPolicy(n, cond))
				reqs := make([]*Request, 64)
				for i := range reqs {
					reqs[i] = benchRequest(n, i*7919)
				}
				b.ReportAllocs()
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					e.Decide(reqs[i%len(reqs)])
				}
			})
		}
	}
}
