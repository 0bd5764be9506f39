package policy

import (
	"fmt"
	"testing"

	"github.com/armoriq/controlplane/runtime/policy/internal/benchgen"
)

// BenchmarkDecide decides calls against generated policies of 10 and
// 10,000 rules: without conditions, with a condition the native fast path
// evaluates (cond=true), and with one that needs HCL (cond=hcl).

func BenchmarkDecide(b *testing.B) {
	for _, n := range []int{10, 10000} {
		for _, cond := range benchConds {
			b.Run(fmt.Sprintf("rules=%d/cond=%s", n, cond.name), func(b *testing.B) {
				e := mustCompile(b, benchgen.Policy(n, cond.when))
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

// BenchmarkCompile is the cost of activating a bundle at the gateway.
func BenchmarkCompile(b *testing.B) {
	for _, n := range []int{10, 10000} {
		b.Run(fmt.Sprintf("rules=%d", n), func(b *testing.B) {
			p := benchgen.Policy(n, benchgen.Cond)
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				if _, err := Compile(p); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
