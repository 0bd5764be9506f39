package policy

import (
	"github.com/armoriq/controlplane/compiler/bundle"
	"github.com/armoriq/controlplane/runtime/policy/internal/benchgen"
)

func benchPolicy(n int, cond bool) *bundle.Policy { return benchgen.Policy(n, cond) }

func benchRequest(n, i int) *Request {
	r := benchgen.Request(n, i)
	return &Request{User: r.User, Server: r.Server, Tool: r.Tool, Args: r.Args}
}
