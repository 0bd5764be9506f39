package policy

import (
	"reflect"
	"strings"
	"testing"

	"github.com/armoriq/controlplane/compiler/bundle"
)

func TestApprovers(t *testing.T) {
	p := &bundle.Policy{
		Groups: []bundle.Group{{Name: "finance", Members: []string{"Carol@Example.com", "*@fin.example.com"}}},
		Rules: []bundle.Rule{
			{ID: "pay", Effect: bundle.Allow, Tools: []string{"pay/*"}},
			{ID: "big", Effect: bundle.Hold, Tools: []string{"pay/transfer"}, When: "args.amount > 1000", Approvers: []string{"bob@example.com", "finance", "carol@example.com"}},
			{ID: "refund", Effect: bundle.Hold, Tools: []string{"pay/refund"}},
		},
	}
	e, err := Compile(p)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		req  Request
		want []string
	}{
		{"held by a rule naming approvers", Request{User: "a@example.com", Server: "pay", Tool: "transfer", Args: map[string]any{"amount": 5000}},
			[]string{"bob@example.com", "carol@example.com", "*@fin.example.com"}},
		{"held by a rule naming none", Request{User: "a@example.com", Server: "pay", Tool: "refund"}, nil},
		{"allowed", Request{User: "a@example.com", Server: "pay", Tool: "transfer", Args: map[string]any{"amount": 5}}, nil},
	}
	for _, tt := range tests {
		d := e.Decide(&tt.req)
		if got := d.Approvers; !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%s: approvers %v, want %v (decision %+v)", tt.name, got, tt.want, d)
		}
	}
}

func TestApproversErrors(t *testing.T) {
	for _, tt := range []struct {
		name string
		rule bundle.Rule
		want string
	}{
		{"on an allow rule", bundle.Rule{ID: "r", Effect: bundle.Allow, Tools: []string{"a/b"}, Approvers: []string{"x@example.com"}}, "approvers apply to hold rules only"},
		{"an unknown group", bundle.Rule{ID: "r", Effect: bundle.Hold, Tools: []string{"a/b"}, Approvers: []string{"nobody"}}, `approver "nobody" is neither an email nor a group`},
		{"an empty entry", bundle.Rule{ID: "r", Effect: bundle.Hold, Tools: []string{"a/b"}, Approvers: []string{" "}}, "empty approver entry"},
	} {
		_, err := Compile(&bundle.Policy{Rules: []bundle.Rule{tt.rule}})
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: Compile error %v, want %q", tt.name, err, tt.want)
		}
	}
}
