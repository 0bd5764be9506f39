package policy

import (
	"github.com/armoriq/controlplane/compiler/bundle"
	"github.com/armoriq/controlplane/runtime/policy/internal/benchgen"
)

func benchPolicy(n int, cond bool) *bundle.Policy {
	if cond {
		return benchgen.Policy(n, benchgen.Cond)
	}
	return benchgen.Policy(n, "")
}

// benchConds are the condition variants of the benchmarks, by name.
var benchConds = []struct{ name, when string }{
	{"false", ""},
	{"true", benchgen.Cond},
	{"hcl", benchgen.CondHCL},
}

func benchRequest(n, i int) *Request {
	r := benchgen.Request(n, i)
	return &Request{User: r.User, Server: r.Server, Tool: r.Tool, Args: r.Args}
}
