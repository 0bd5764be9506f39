package opabench

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/armoriq/controlplane/runtime/policy"
	"github.com/armoriq/controlplane/runtime/policy/internal/benchgen"
	"github.com/open-policy-agent/opa/v1/rego"
)

type setup struct {
	engine *policy.Engine
	opa    rego.PreparedEvalQuery
	reqs   []benchgen.Req
}

var conds = []struct{ name, when string }{
	{"false", ""},
	{"true", benchgen.Cond},
	{"hcl", benchgen.CondHCL},
}

func prepare(tb testing.TB, n int, when string) *setup {
	tb.Helper()
	p := benchgen.Policy(n, when)
	e, err := policy.Compile(p)
	if err != nil {
		tb.Fatal(err)
	}
	mod, err := Rego(p)
	if err != nil {
		tb.Fatal(err)
	}
	pq, err := rego.New(rego.Query("data.armoriq.decision"), rego.Module("armoriq.rego", mod)).PrepareForEval(context.Background())
	if err != nil {
		tb.Fatalf("OPA prepare: %v", err)
	}
	s := &setup{engine: e, opa: pq}
	for i := 0; i < 64; i++ {
		s.reqs = append(s.reqs, benchgen.Request(n, i*7919))
	}
	return s
}

func (s *setup) decideEngine(r benchgen.Req) string {
	return string(s.engine.Decide(&policy.Request{User: r.User, Server: r.Server, Tool: r.Tool, Args: r.Args}).Effect)
}

func (s *setup) decideOPA(tb testing.TB, r benchgen.Req) string {
	rs, err := s.opa.Eval(context.Background(), rego.EvalInput(Input(r)))
	if err != nil || len(rs) != 1 || len(rs[0].Expressions) != 1 {
		tb.Fatalf("OPA eval: %v (%v)", err, rs)
	}
	return rs[0].Expressions[0].Value.(string)
}

// TestSameDecisions checks both engines decide every benchmark call alike,
// and as the generator expects, so the benchmark compares equal work.
func TestSameDecisions(t *testing.T) {
	for _, n := range []int{10, 1000} {
		for _, cond := range conds {
			s := prepare(t, n, cond.when)
			for i := 0; i < 200; i++ {
				r := benchgen.Request(n, i*7919)
				r2 := r
				r2.Args = map[string]any{"amount": 5000.0, "note": "generated"}
				r3 := r
				r3.Args = map[string]any{"amount": 5.0, "note": "other"}
				for _, req := range []benchgen.Req{r, r2, r3} {
					got, opa := s.decideEngine(req), s.decideOPA(t, req)
					if got != opa {
						t.Errorf("rules=%d cond=%s %+v: engine %s, OPA %s", n, cond.name, req, got, opa)
					}
				}
				if got := s.decideEngine(r); got != r.Want {
					t.Errorf("rules=%d cond=%s %+v: engine %s, want %s", n, cond.name, r, got, r.Want)
				}
			}
		}
	}
}

// BenchmarkDecide times OPA's prepared query per decision (ns/op) and, in
// the same run, the engine on the same calls (armoriq-ns/op), and reports
// how many times faster the engine is (x-faster).
func BenchmarkDecide(b *testing.B) {
	for _, n := range []int{10, 10000} {
		for _, cond := range conds {
			b.Run(fmt.Sprintf("rules=%d/cond=%s", n, cond.name), func(b *testing.B) {
				s := prepare(b, n, cond.when)
				b.ReportAllocs()
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					s.decideOPA(b, s.reqs[i%len(s.reqs)])
				}
				b.StopTimer()
				opaNs := float64(b.Elapsed().Nanoseconds()) / float64(b.N)

				iters := max(b.N, 20000)
				reqs := make([]*policy.Request, len(s.reqs))
				for i, r := range s.reqs {
					reqs[i] = &policy.Request{User: r.User, Server: r.Server, Tool: r.Tool, Args: r.Args}
				}
				start := time.Now()
				for i := 0; i < iters; i++ {
					s.engine.Decide(reqs[i%len(reqs)])
				}
				engineNs := float64(time.Since(start).Nanoseconds()) / float64(iters)
				b.ReportMetric(engineNs, "armoriq-ns/op")
				b.ReportMetric(opaNs/engineNs, "x-faster")
			})
		}
	}
}
