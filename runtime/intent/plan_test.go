package intent

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
)

const threeStepPlan = `{
  "goal": "Summarise the open invoices of ACME and mail them",
  "steps": [
    {"action": "list_invoices", "mcp": "billing", "params": {"customer": "ACME", "status": "open", "limit": 50}, "description": "find open invoices"},
    {"action": "summarise", "mcp": "docs", "params": {"max_words": 200, "temperature": 0.2}},
    {"action": "send_email", "mcp": "mail", "params": {"to": "finance@acme.example", "subject": "Open invoices — summary"}}
  ]
}`

func TestParsePlan(t *testing.T) {
	p, err := ParsePlan(json.RawMessage(threeStepPlan))
	if err != nil {
		t.Fatal(err)
	}
	if p.Goal == "" || len(p.Steps) != 3 || p.Steps[0].Action != "list_invoices" || p.Steps[0].MCP != "billing" ||
		p.Steps[0].Description != "find open invoices" || p.Steps[0].Params["limit"] != json.Number("50") {
		t.Errorf("ParsePlan = %+v", p)
	}
	if StepIndex(p.Steps, "summarise") != 1 || StepIndex(p.Steps, "nope") != -1 {
		t.Error("StepIndex")
	}
}

func TestParsePlanErrors(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []string
	}{
		{`{}`, []string{"steps is required"}},
		{`{"steps": null}`, []string{"steps is required"}},
		{`{"steps": []}`, []string{"steps must not be empty"}},
		{`{"steps": {}}`, []string{"steps must be a list"}},
		{`[]`, []string{"plan must be a JSON object"}},
		{`{"steps": [1]}`, []string{"steps[0]: must be an object"}},
		{`{"steps": [{"mcp": "m"}]}`, []string{"steps[0]: action is required"}},
		{`{"steps": [{"action": "", "mcp": "m"}]}`, []string{"steps[0]: action is required"}},
		{`{"steps": [{"action": "a"}]}`, []string{"steps[0]: mcp is required"}},
		{`{"steps": [{"action": "a", "mcp": "m", "params": [1]}]}`, []string{"steps[0]: params must be an object"}},
		{`{"steps": [{"action": "a", "mcp": "m", "description": 3}]}`, []string{"steps[0]: description must be a string"}},
		{`{"goal": 1, "steps": [{"action": "a", "mcp": "m"}, {"action": 2, "mcp": "m"}]}`, []string{"goal must be a string", "steps[1]: action is required"}},
		{`{"steps": [{"action": "a", "mcp": "m"}]} x`, []string{"not valid JSON"}},
		{`{"steps": [{"action": "a", "mcp": "m", "params": {"x": 1e999}}]}`, []string{"no canonical JSON form"}},
	} {
		_, err := ParsePlan(json.RawMessage(tc.in))
		if !errors.Is(err, ErrInvalidPlan) {
			t.Errorf("ParsePlan(%s) = %v, want ErrInvalidPlan", tc.in, err)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("ParsePlan(%s) = %q, want it to say %q", tc.in, err, w)
			}
		}
	}
}

func TestPlanHashCoversEverything(t *testing.T) {
	base, _ := ParsePlan(json.RawMessage(threeStepPlan))
	h := PlanHash(base)
	if len(h) != 64 {
		t.Fatalf("PlanHash = %q", h)
	}
	// Whitespace and key order do not matter; any value does.
	reordered := `{"steps":[{"params":{"limit":50,"status":"open","customer":"ACME"},"mcp":"billing","description":"find open invoices","action":"list_invoices"},{"mcp":"docs","action":"summarise","params":{"temperature":0.2,"max_words":200}},{"action":"send_email","mcp":"mail","params":{"subject":"Open invoices \u2014 summary","to":"finance@acme.example"}}],"goal":"Summarise the open invoices of ACME and mail them"}`
	p, err := ParsePlan(json.RawMessage(reordered))
	if err != nil {
		t.Fatal(err)
	}
	if got := PlanHash(p); got != h {
		t.Errorf("reordered plan hash %s, want %s", got, h)
	}
	for _, change := range [][2]string{
		{`"limit": 50`, `"limit": 50.0`},
		{`"limit": 50`, `"limit": 51`},
		{`find open invoices`, `find invoices`},
		{`"goal": "Summarise`, `"extra": 1, "goal": "Summarise`},
		{`"mcp": "docs"`, `"mcp": "docs2"`},
	} {
		changed := strings.Replace(threeStepPlan, change[0], change[1], 1)
		p, err := ParsePlan(json.RawMessage(changed))
		if err != nil {
			t.Fatal(err)
		}
		if PlanHash(p) == h {
			t.Errorf("changing %s to %s kept the plan hash", change[0], change[1])
		}
	}
	// A plan built in Go hashes like the same plan parsed.
	built := &Plan{Goal: base.Goal}
	for _, s := range base.Steps {
		built.Steps = append(built.Steps, s)
	}
	if got := PlanHash(built); got != h {
		t.Errorf("built plan hash %s, want %s", got, h)
	}
}

func TestStepLeafStripsInjected(t *testing.T) {
	params := map[string]any{"q": "x", "_iam_context": map[string]any{"user_id": "u"}, "user_email": "a@b.c"}
	stripped := StripInjected(params)
	if len(params) != 3 || len(stripped) != 1 || stripped["q"] != "x" {
		t.Fatalf("StripInjected = %v (input now %v)", stripped, params)
	}
	if StepLeaf(Step{Action: "a", MCP: "m", Params: params}) != StepLeaf(Step{Action: "a", MCP: "m", Params: map[string]any{"q": "x"}}) {
		t.Error("injected keys change the leaf")
	}
	if StepLeaf(Step{Action: "a", MCP: "m"}) != StepLeaf(Step{Action: "a", MCP: "m", Params: map[string]any{}}) {
		t.Error("nil and empty params differ")
	}
	if StepLeaf(Step{Action: "a", MCP: "m"}) == StepLeaf(Step{Action: "a", MCP: "n"}) {
		t.Error("mcp is not in the leaf")
	}
	if StepLeaf(Step{Action: "a", MCP: "m", Description: "x"}) != StepLeaf(Step{Action: "a", MCP: "m"}) {
		t.Error("description is in the leaf")
	}
	in, _ := StepLeafInput(Step{Action: "a", MCP: "m", Params: map[string]any{"b": 1.0}})
	if string(in) != `{"action":"a","mcp":"m","params":{"b":1.0}}` {
		t.Errorf("StepLeafInput = %s", in)
	}
}

func TestCSRGHelpers(t *testing.T) {
	if StepPath(3) != "/steps/[3]/action" {
		t.Error(StepPath(3))
	}
	for _, ok := range []string{"/steps/[0]/action", "/steps/[12]/action"} {
		if _, err := ParseStepPath(ok); err != nil {
			t.Errorf("ParseStepPath(%s) = %v", ok, err)
		}
	}
	for _, bad := range []string{"", "/steps/[]/action", "/steps/[-1]/action", "/steps/[01]/action", "/steps/[1]/params", "$.params.name", "/steps/[1]/action/", "/steps/[9999999999]/action"} {
		if _, err := ParseStepPath(bad); err == nil {
			t.Errorf("ParseStepPath(%q) accepted", bad)
		}
	}
	// Python: hashlib.sha256(json.dumps(a).encode()).hexdigest()
	for a, want := range map[string]string{
		"search": "6ad21f9d2ea182f9fe66f7791944c3bfa4eb4281c1609ca95e82a89c65e6a413",
		"réad":   "e9bfda5bf393cc9019d6c305ae6631665ac9ecd250f2a0abbacb9d9e07fe6cd6",
	} {
		if got := ValueDigest(a); got != want {
			t.Errorf("ValueDigest(%q) = %s, want %s", a, got, want)
		}
	}
	// Node: crypto.createHash("sha256").update(JSON.stringify("réad\u007f")).digest("hex")
	if got, want := valueDigestJS("réad\u007f"), "95465c5a477300bf854de3676fb5437f5795b58bc490bbf04c0acfe3337a20c4"; got != want {
		t.Errorf("valueDigestJS = %s, want %s", got, want)
	}
	if !MatchValueDigest("réad", ValueDigest("réad")) || !MatchValueDigest("réad", valueDigestJS("réad")) {
		t.Error("MatchValueDigest refuses an SDK form")
	}
	if ValueDigest("réad") == valueDigestJS("réad") {
		t.Error("Python and JS digests agree on non-ASCII; the test is wrong")
	}
	if ValueDigest("search") != valueDigestJS("search") {
		t.Error("Python and JS digests differ on ASCII")
	}
	if MatchValueDigest("search", ValueDigest("searcH")) {
		t.Error("MatchValueDigest accepted another action")
	}
}

func issueThree(t testing.TB, key ed25519.PrivateKey, now time.Time) *Issued {
	t.Helper()
	p, err := ParsePlan(json.RawMessage(threeStepPlan))
	if err != nil {
		t.Fatal(err)
	}
	iss, err := Issue(p, IssueParams{Identity: "agent-1", Policy: map[string]any{}, Now: now, TTL: time.Minute}, key)
	if err != nil {
		t.Fatal(err)
	}
	return iss
}

func TestVerifyCall(t *testing.T) {
	key := testKey(7)
	trusted := []ed25519.PublicKey{key.Public().(ed25519.PublicKey)}
	now := time.Unix(1700000000, 250000000)
	iss := issueThree(t, key, now)
	if iss.Token.IssuedAt != 1700000000.25 || iss.Token.ExpiresAt != 1700000060.25 {
		t.Errorf("issued %v expires %v", iss.Token.IssuedAt, iss.Token.ExpiresAt)
	}
	proof1, _ := json.Marshal(iss.StepProofs[1])
	proof0, _ := json.Marshal(iss.StepProofs[0])
	good := func() Call {
		return Call{
			Plan:   json.RawMessage(threeStepPlan),
			Token:  &iss.Token,
			MCP:    "docs",
			Action: "summarise",
			Params: map[string]any{"max_words": json.Number("200"), "temperature": json.Number("0.2"), "_iam_context": map[string]any{}},
			Path:   "/steps/[1]/action", ValueDigest: ValueDigest("summarise"), Proof: proof1,
			RequireCSRG: true,
		}
	}
	v, err := VerifyCall(good(), trusted, now)
	if err != nil {
		t.Fatalf("VerifyCall(good) = %v", err)
	}
	if v.Step != 1 || v.PlanHash != iss.PlanHash || v.MerkleRoot != iss.MerkleRoot || len(v.Params) != 2 {
		t.Errorf("VerifyCall = %+v", v)
	}
	for _, tc := range []struct {
		name   string
		mutate func(*Call)
		now    time.Time
		want   error
	}{
		{"expired", nil, now.Add(time.Minute), ErrExpired},
		{"no token", func(c *Call) { c.Token = nil }, now, ErrMalformed},
		{"no plan", func(c *Call) { c.Plan = nil }, now, ErrPlanMismatch},
		{"other plan", func(c *Call) { c.Plan = json.RawMessage(strings.Replace(threeStepPlan, "ACME", "EVIL", 1)) }, now, ErrPlanMismatch},
		{"invalid plan", func(c *Call) { c.Plan = json.RawMessage(`{"steps":[]}`) }, now, ErrPlanMismatch},
		{"params changed", func(c *Call) { c.Params["max_words"] = json.Number("100000") }, now, ErrStepMismatch},
		{"param added", func(c *Call) { c.Params["url"] = "http://evil" }, now, ErrStepMismatch},
		{"int for float", func(c *Call) { c.Params["temperature"] = json.Number("0") }, now, ErrStepMismatch},
		{"other mcp", func(c *Call) { c.MCP = "mail" }, now, ErrStepMismatch},
		{"action not planned", func(c *Call) { c.Action = "delete_all"; c.ValueDigest = ValueDigest("delete_all") }, now, ErrStepMismatch},
		{"path to another step", func(c *Call) { c.Path = "/steps/[0]/action" }, now, ErrStepMismatch},
		{"path out of range", func(c *Call) { c.Path = "/steps/[3]/action" }, now, ErrStepMismatch},
		{"digest wrong", func(c *Call) { c.ValueDigest = ValueDigest("send_email") }, now, ErrStepMismatch},
		{"proof of another step", func(c *Call) { c.Proof = proof0 }, now, ErrBadProof},
		{"proof garbage", func(c *Call) { c.Proof = []byte(`{"x":1}`) }, now, ErrBadProof},
		{"proof of another tree size", func(c *Call) {
			// The same proof claiming another number of steps.
			c.Proof = []byte(strings.Replace(string(proof1), `"leaf_count":3`, `"leaf_count":4`, 1))
		}, now, ErrBadProof},
		{"csrg missing", func(c *Call) { c.Path, c.ValueDigest, c.Proof = "", "", nil }, now, ErrStepMismatch},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := good()
			if tc.mutate != nil {
				tc.mutate(&c)
			}
			if _, err := VerifyCall(c, trusted, tc.now); !errors.Is(err, tc.want) {
				t.Errorf("VerifyCall = %v, want %v", err, tc.want)
			}
		})
	}
	// Without RequireCSRG, a call without headers is checked on the plan alone.
	c := good()
	c.Path, c.ValueDigest, c.Proof, c.RequireCSRG = "", "", nil, false
	if _, err := VerifyCall(c, trusted, now); err != nil {
		t.Errorf("VerifyCall without CSRG = %v", err)
	}
}

// A plan that calls one action twice with different params: the SDK names the
// first step in X-CSRG-Path, and the call matches the second.
func TestVerifyCallRepeatedAction(t *testing.T) {
	key := testKey(7)
	trusted := []ed25519.PublicKey{key.Public().(ed25519.PublicKey)}
	now := time.Unix(1700000000, 0)
	raw := `{"steps":[{"action":"search","mcp":"web","params":{"q":"a"}},{"action":"search","mcp":"web","params":{"q":"b"}}]}`
	p, _ := ParsePlan(json.RawMessage(raw))
	iss, err := Issue(p, IssueParams{Now: now, TTL: time.Minute}, key)
	if err != nil {
		t.Fatal(err)
	}
	proof0, _ := json.Marshal(iss.StepProofs[0])
	c := Call{Plan: json.RawMessage(raw), Token: &iss.Token, MCP: "web", Action: "search", Params: map[string]any{"q": "b"},
		Path: StepPath(0), ValueDigest: ValueDigest("search"), Proof: proof0, RequireCSRG: true}
	v, err := VerifyCall(c, trusted, now)
	if err != nil || v.Step != 1 {
		t.Fatalf("VerifyCall = %+v, %v; want step 1", v, err)
	}
	c.Params = map[string]any{"q": "c"}
	if _, err := VerifyCall(c, trusted, now); !errors.Is(err, ErrStepMismatch) {
		t.Errorf("VerifyCall(q=c) = %v, want ErrStepMismatch", err)
	}
}

// TestStepLeafInputIsCanonical: StepLeafInput writes its object by hand;
// each step here says what it holds, and its bytes are Canonical's of the
// map it stands for.
func TestStepLeafInputIsCanonical(t *testing.T) {
	for _, s := range []Step{
		{Action: "echo", MCP: "tools", Params: map[string]any{"text": "hi"}},
		{Action: "echo", MCP: "tools"}, // nil params: {}
		{Action: "a", MCP: "m", Params: map[string]any{"_iam_context": map[string]any{"user_id": "u"}, "user_email": "a@b", "q": json.Number("1.0")}},
		{Action: "ünïcode \"quoted\" \n", MCP: "emoji 😀", Params: map[string]any{"z": []any{nil, true, 2.5}, "a": map[string]any{"b": "c"}}},
		{Action: "", MCP: "", Params: map[string]any{}},
		{Action: "bad utf-8 \xff", MCP: "m"},
	} {
		got, err := StepLeafInput(s)
		params := StripInjected(s.Params)
		if params == nil {
			params = map[string]any{}
		}
		want, werr := Canonical(map[string]any{"action": s.Action, "mcp": s.MCP, "params": params})
		if !bytes.Equal(got, want) || (err == nil) != (werr == nil) {
			t.Errorf("step %+v: StepLeafInput = %s, %v; Canonical = %s, %v", s, got, err, want, werr)
		}
	}
}
