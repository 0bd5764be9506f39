package gateway

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/armoriq/controlplane/compiler/bundle"
	"github.com/armoriq/controlplane/runtime/store"
	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// redteamPolicy holds every large payment for approval, for anyone; bob's
// calls are denied outright.
func redteamPolicy() bundle.Policy {
	return bundle.Policy{Rules: []bundle.Rule{
		{ID: "pay", Effect: bundle.Allow, Tools: []string{"tools/pay", "tools/echo"}},
		{ID: "big-payments", Effect: bundle.Hold, Tools: []string{"tools/pay"}, When: "args.amount > 1000", Reason: "payments over 1000 need approval"},
		{ID: "no-bob", Effect: bundle.Deny, Tools: []string{"tools/*"}, Users: []string{"bob@customer.com"}, Reason: "bob may not use tools"},
	}}
}

// sdkUser is what @armoriq/sdk 0.2.6 adds to params for invoke(..., email).
func sdkUser(params map[string]any, email string) map[string]any {
	out := map[string]any{"user_email": email, "_iam_context": map[string]any{"email": email, "user_email": email, "user_id": "svc", "agent_id": "agent-1"}}
	for k, v := range params {
		out[k] = v
	}
	return out
}

// TestApprovalIsForOneEndUser: an approval a person gave for alice's held
// call does not let the same call run for another end user, whether the
// retry names the approval or not. A service key names its end users, so
// an approval granted for one of them must not carry over to the others.
func TestApprovalIsForOneEndUser(t *testing.T) {
	g := newTestGateway(t, nil)
	g.pushBundle("rev1", 1, redteamPolicy())
	params := map[string]any{"amount": 5000}
	tok := g.issue("svc", step("tools", "pay", params))

	resp, out := g.sdkInvoke(g.agentKey, tok, "tools", "pay", sdkUser(params, "alice@customer.com"), nil)
	action, dc, _ := enforcementOf(out)
	id, _ := dc["delegationId"].(string)
	if resp.StatusCode != 403 || action != "hold" || id == "" {
		t.Fatalf("alice's payment: %d %v, want held", resp.StatusCode, out)
	}
	g.do("POST", "/v1/approvals/"+id+"/approve", g.adminKey, map[string]any{"comment": "alice's invoice"}, 200, nil)
	before := g.execs.Load()

	// carol, same token, same step, same arguments: not alice's approval.
	// One approval is open per token, step and arguments, so hers waits
	// until alice's is settled.
	resp, out = g.sdkInvoke(g.agentKey, tok, "tools", "pay", sdkUser(params, "carol@customer.com"), nil)
	if msg, _ := out["message"].(string); resp.StatusCode != 400 || !strings.Contains(msg, "already held for another end user") {
		t.Errorf("carol's identical payment after alice's approval: %d %v; want 400 saying it is held for another end user", resp.StatusCode, out)
	}
	// carol presenting alice's approval id: refused.
	withID := map[string]any{"amount": 5000, "_delegation_id": id}
	resp, out = g.sdkInvoke(g.agentKey, tok, "tools", "pay", sdkUser(withID, "carol@customer.com"), nil)
	if action, _, _ := enforcementOf(out); resp.StatusCode != 403 || action != "block" {
		t.Errorf("carol retrying with alice's approval: %d %v; want blocked", resp.StatusCode, out)
	}
	if got := g.execs.Load(); got != before {
		t.Fatalf("alice's approval ran %d payment(s) for carol", got-before)
	}
	// alice's own retry still runs, once.
	if resp, out := g.sdkInvoke(g.agentKey, tok, "tools", "pay", sdkUser(withID, "alice@customer.com"), nil); resp.StatusCode != 200 {
		t.Errorf("alice's approved retry: %d %v, want 200", resp.StatusCode, out)
	}
	g.checkNoUnauditedExecution()
}

// TestApprovalCommentIsClean: an approver's comment is stored in the
// approvals table and the audit log; a credential pasted into it is
// redacted, and text that could hide or reorder what a reader sees is
// refused.
func TestApprovalCommentIsClean(t *testing.T) {
	g := newTestGateway(t, nil)
	g.pushBundle("rev1", 1, redteamPolicy())
	params := map[string]any{"amount": 5000}
	held := func(email string) string {
		t.Helper()
		tok := g.issue("svc", step("tools", "pay", params)) // one open approval per token and step
		resp, out := g.sdkInvoke(g.agentKey, tok, "tools", "pay", sdkUser(params, email), nil)
		_, dc, _ := enforcementOf(out)
		id, _ := dc["delegationId"].(string)
		if resp.StatusCode != 403 || id == "" {
			t.Fatalf("payment for %s: %d %v, want held", email, resp.StatusCode, out)
		}
		return id
	}
	for _, tc := range []struct {
		name, comment string
		status        int
	}{
		{"right-to-left override", "ok \u202egnp.exe", 400},
		{"zero-width space", "o\u200bk", 400},
		{"C1 control", "o\u0085k", 400},
		{"escape", "ok \x1b[2J", 400},
	} {
		id := held(tc.name[:1] + "x@customer.com")
		resp, data := g.send("POST", "/v1/approvals/"+id+"/approve", g.adminKey, map[string]any{"comment": tc.comment}, nil)
		if resp.StatusCode != tc.status {
			t.Errorf("%s: status %d, want %d: %s", tc.name, resp.StatusCode, tc.status, data)
		}
	}
	id := held("key@customer.com")
	g.do("POST", "/v1/approvals/"+id+"/approve", g.adminKey, map[string]any{"comment": "approved, use " + g.agentKey + " and Authorization: Bearer abcdefgh.ijkl-mnop"}, 200, nil)
	a, err := g.srv.human.approvals.Get(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(a.Comment, "ak_live_") || strings.Contains(a.Comment, "abcdefgh.ijkl") || !strings.Contains(a.Comment, "approved, use") {
		t.Errorf("stored comment %q, want the credentials redacted and the rest kept", a.Comment)
	}
	g.checkNoCredentialStored()
}

// checkNoCredentialStored dumps every text column of every table of the
// gateway's SQLite file and fails on anything that looks like one of our
// API keys.
func (g *testGateway) checkNoCredentialStored() {
	g.t.Helper()
	g.srv.waitOutcomes(5 * time.Second)
	db := g.sqliteDB()
	rows, err := db.Query(`SELECT name FROM sqlite_master WHERE type = 'table'`)
	if err != nil {
		g.t.Fatal(err)
	}
	var tables []string
	for rows.Next() {
		var n string
		rows.Scan(&n)
		tables = append(tables, n)
	}
	rows.Close()
	for _, tbl := range tables {
		rows, err := db.Query(`SELECT * FROM "` + tbl + `"`)
		if err != nil {
			g.t.Fatal(err)
		}
		cols, _ := rows.Columns()
		for rows.Next() {
			vals := make([]any, len(cols))
			ptrs := make([]any, len(cols))
			for i := range vals {
				ptrs[i] = &vals[i]
			}
			if err := rows.Scan(ptrs...); err != nil {
				g.t.Fatal(err)
			}
			for i, v := range vals {
				var s string
				switch x := v.(type) {
				case string:
					s = x
				case []byte:
					s = string(x)
				}
				if strings.Contains(strings.ToLower(s), "ak_live_") {
					g.t.Errorf("table %s column %s holds an API key: %.200q", tbl, cols[i], s)
				}
			}
		}
		rows.Close()
	}
}

// sqliteDB opens the gateway's SQLite file for reading.
func (g *testGateway) sqliteDB() *sql.DB {
	g.t.Helper()
	if g.dbPath == "" {
		g.t.Fatal("the store is not the harness's SQLite file")
	}
	db, err := sql.Open("sqlite", "file:"+g.dbPath+"?mode=ro")
	if err != nil {
		g.t.Fatal(err)
	}
	g.t.Cleanup(func() { db.Close() })
	return db
}

// TestBatchCountsEveryCall: a JSON-RPC batch is one HTTP request but runs
// each of its calls; each takes one of the key's --max-concurrent-per-key
// slots, so a batch cannot multiply what one key runs at once.
func TestBatchCountsEveryCall(t *testing.T) {
	g := newTestGateway(t, nil, withLimits(Limits{MaxConcurrentPerKey: 2, MaxBatch: 32}))
	g.pushBundle("rev1", 100, testPolicy())
	post := func(ctx context.Context, body string, hdr map[string]string) (int, string) {
		req, _ := http.NewRequestWithContext(ctx, "POST", g.http.URL+"/mcp", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		req.Header.Set("Authorization", "Bearer "+g.agentKey)
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	status, msg := post(context.Background(), `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-03-26","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}`, nil)
	if status != 200 {
		t.Fatalf("initialize: %d %s", status, msg)
	}
	resp, _ := g.send("POST", "/mcp", g.agentKey, []byte(`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-03-26","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}`),
		map[string]string{"Accept": "application/json, text/event-stream", "Content-Type": "application/json"})
	hdr := map[string]string{headerSessionID: resp.Header.Get(headerSessionID), headerProtocol: "2025-03-26"}
	batch := func(n int, tool string) string {
		var b strings.Builder
		b.WriteString("[")
		for i := 0; i < n; i++ {
			if i > 0 {
				b.WriteString(",")
			}
			fmt.Fprintf(&b, `{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":%q,"arguments":{}}}`, i+1, tool)
		}
		return b.String() + "]"
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	status, msg = post(ctx, batch(5, "tools_slow"), hdr)
	if status != http.StatusTooManyRequests {
		t.Errorf("a batch of 5 slow calls with a limit of 2: status %d: %.300s; want 429", status, msg)
	}
	if n := g.execs.Load(); n > 2 {
		t.Errorf("the upstream ran %d calls of one key at once, over its limit of 2", n)
	}
	cancel()
	// A batch within the limit runs.
	if status, msg := post(context.Background(), `[{"jsonrpc":"2.0","id":1,"method":"ping"},{"jsonrpc":"2.0","id":2,"method":"ping"}]`, hdr); status != 200 {
		t.Errorf("a batch of 2 pings: status %d: %s", status, msg)
	}
}

// TestLookalikeUsersDoNotEscapeADeny: bob written with a fullwidth @,
// fullwidth letters, a trailing dot or in capitals is bob; bob written with
// a Cyrillic о or a lookalike domain is refused. On /invoke (the SDK's
// params) and on /mcp (X-Armoriq-User).
func TestLookalikeUsersDoNotEscapeADeny(t *testing.T) {
	g := newTestGateway(t, nil)
	g.pushBundle("rev1", 1, redteamPolicy())
	echo := map[string]any{"text": "hi"}
	tok := g.issue("svc", step("tools", "echo", echo))
	cs := func(user string) (int, string) {
		body := `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"tools_echo","arguments":{"text":"hi"},"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}}}`
		resp, data := g.send("POST", "/mcp", g.agentKey, []byte(body), map[string]string{
			"Accept": "application/json, text/event-stream", "Content-Type": "application/json", headerProtocol: firstStatelessVersion,
			"Mcp-Method": "tools/call", "Mcp-Name": "tools_echo", headerUser: user,
		})
		return resp.StatusCode, string(data)
	}
	for _, tc := range []struct {
		name, user string
		status     int // on /invoke; /mcp answers 400 with it, or a JSON-RPC block for 403
	}{
		{"bob", "bob@customer.com", 403},
		{"fullwidth at sign", "bob\uff20customer.com", 403},
		{"fullwidth letters", "\uff42\uff4f\uff42@customer.com", 403},
		{"trailing dot", "Bob@Customer.com.", 403},
		{"Cyrillic o", "b\u043eb@customer.com", 400},
		{"Cyrillic s in the domain", "bob@cu\u0455tomer.com", 400},
		{"two at signs", "bob@customer.com@x.com", 400},
	} {
		resp, out := g.sdkInvoke(g.agentKey, tok, "tools", "echo", sdkUser(echo, tc.user), nil)
		if resp.StatusCode != tc.status {
			t.Errorf("/invoke for %s (%q): status %d, want %d: %v", tc.name, tc.user, resp.StatusCode, tc.status, out)
		}
		status, body := cs(tc.user)
		switch {
		case tc.status == 400 && status != 400:
			t.Errorf("/mcp for %s (%q): status %d, want 400: %s", tc.name, tc.user, status, body)
		case tc.status == 403 && !strings.Contains(body, "bob may not use tools"):
			t.Errorf("/mcp for %s (%q): %d %s, want blocked by no-bob", tc.name, tc.user, status, body)
		}
	}
	if n := g.execs.Load(); n != 0 {
		t.Errorf("the upstream ran %d of bob's calls", n)
	}
	g.checkNoUnauditedExecution()
}

// TestHoldConditionOnOddNumbers: `when: args.amount > 1000` on a hold rule
// is never skipped by writing the amount another way: every form either
// holds (it is over 1000), or fails the condition and is denied (fail
// closed). Through /invoke and /mcp, as the gateway decodes them.
func TestHoldConditionOnOddNumbers(t *testing.T) {
	g := newTestGateway(t, nil)
	g.pushBundle("rev1", 1, redteamPolicy())
	amounts := []struct {
		name string
		raw  string // the JSON of the amount
		// mcpOnly: no plan can hold it (no canonical JSON form: the token
		// is refused), so only a token-less /mcp call can send it.
		mcpOnly bool
	}{
		{"thousands separator", `"5,000"`, false},
		{"padded", `" 5000 "`, false},
		{"exponent string", `"5e3"`, false},
		{"hex string", `"0x1388"`, false},
		{"Infinity", `"Infinity"`, false},
		{"inf", `"inf"`, false},
		{"+Inf", `"+Inf"`, false},
		{"NaN", `"NaN"`, false},
		{"overflowing number", `1e309`, true},
		{"overflowing negative number", `-1e309`, true},
		{"huge integer string", `"1` + strings.Repeat("0", 400) + `"`, false},
		{"huge integer", `1` + strings.Repeat("0", 400), false},
		{"object", `{"value":5000}`, false},
		{"array", `[5000]`, false},
		{"boolean", `true`, false},
		{"null", `null`, false},
		{"empty string", `""`, false},
		{"fullwidth digits", `"\uff15\uff10\uff10\uff10"`, false},
		{"underscores", `"5_000"`, false},
	}
	for _, a := range amounts {
		short := a.raw[:min(len(a.raw), 20)]
		// /invoke: the token's issue-time check may refuse the step
		// already (its condition fails there too); else the call must not
		// run unapproved.
		plan := `{"goal":"pay","steps":[{"action":"pay","mcp":"tools","params":{"amount":` + a.raw + `}}]}`
		resp, data := g.send("POST", "/iap/sdk/token", g.agentKey, []byte(`{"user_id":"svc","agent_id":"a","plan":`+plan+`,"expires_in":60}`), nil)
		switch {
		case resp.StatusCode == 200:
			var tok map[string]any
			json.Unmarshal(data, &tok)
			body := `{"mcp":"tools","action":"pay","params":{"amount":` + a.raw + `},"plan":` + plan + `,"token":` + string(mustJSON(tok["token"])) + `}`
			if resp, data := g.send("POST", "/invoke", g.agentKey, []byte(body), nil); resp.StatusCode == 200 {
				t.Errorf("/invoke amount %s (%s): 200, ran without approval: %s", short, a.name, data)
			}
		case resp.StatusCode != 403 && resp.StatusCode != 400:
			t.Errorf("token for amount %s (%s): %d %s, want 200, 400 or 403", short, a.name, resp.StatusCode, data)
		}
		mbody := `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"tools_pay","arguments":{"amount":` + a.raw + `},"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}}}`
		_, mdata := g.send("POST", "/mcp", g.agentKey, []byte(mbody), map[string]string{
			"Accept": "application/json, text/event-stream", "Content-Type": "application/json", headerProtocol: firstStatelessVersion,
			"Mcp-Method": "tools/call", "Mcp-Name": "tools_pay",
		})
		if !strings.Contains(string(mdata), `"error"`) {
			t.Errorf("/mcp amount %s (%s): ran without approval: %s", short, a.name, mdata)
		}
	}
	if n := g.execs.Load(); n != 0 {
		t.Errorf("the upstream ran %d payments without approval", n)
	}
	g.checkNoUnauditedExecution()
}

// panickyUpstream panics on the tool "pay" after counting it as executed:
// an upstream client (an adapter's code in this process) that crashes
// mid-call.
type panickyUpstream struct {
	Upstream
	execs *atomic.Int64
}

func (u panickyUpstream) CallTool(ctx context.Context, srv bundle.Server, tool string, args map[string]any) (json.RawMessage, error) {
	if tool == "pay" {
		u.execs.Add(1)
		panic("adapter bug")
	}
	return u.Upstream.CallTool(ctx, srv, tool, args)
}

// TestUpstreamPanicKeepsTheRecord: an upstream call that panics, on
// /invoke, the /mcp fast path and the SDK's path (a legacy batch), ends as
// a failed call: its request record was committed before, its outcome says
// it failed, the caller gets an error, and the gateway keeps serving.
func TestUpstreamPanicKeepsTheRecord(t *testing.T) {
	var paid atomic.Int64
	g := newTestGateway(t, nil, func(c *Config) { c.Upstream = panickyUpstream{Upstream: c.Upstream, execs: &paid} })
	g.pushBundle("rev1", 1, bundle.Policy{Rules: []bundle.Rule{{ID: "all", Effect: bundle.Allow, Tools: []string{"*/*"}}}})
	pay := map[string]any{"amount": 5}
	tok := g.issue("alice@customer.com", step("tools", "pay", pay))
	if resp, out := g.sdkInvoke(g.agentKey, tok, "tools", "pay", pay, nil); resp.StatusCode != 500 {
		t.Errorf("/invoke of a panicking call: %d %v, want 500", resp.StatusCode, out)
	}
	call := `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"tools_pay","arguments":{"amount":5},"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}}}`
	resp, data := g.send("POST", "/mcp", g.agentKey, []byte(call), map[string]string{
		"Accept": "application/json, text/event-stream", "Content-Type": "application/json", headerProtocol: firstStatelessVersion,
		"Mcp-Method": "tools/call", "Mcp-Name": "tools_pay",
	})
	if !strings.Contains(string(data), `"error"`) {
		t.Errorf("/mcp (fast path) of a panicking call: %d %s, want a JSON-RPC error", resp.StatusCode, data)
	}
	mh := map[string]string{"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
	resp, _ = g.send("POST", "/mcp", g.agentKey, []byte(`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-03-26","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}`), mh)
	mh[headerSessionID], mh[headerProtocol] = resp.Header.Get(headerSessionID), "2025-03-26"
	_, data = g.send("POST", "/mcp", g.agentKey, []byte(`[{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"tools_pay","arguments":{"amount":5}}}]`), mh)
	if !strings.Contains(string(data), `"error"`) {
		t.Errorf("/mcp (SDK path, batch) of a panicking call: %s, want a JSON-RPC error", data)
	}
	// Still serving.
	if resp, out := g.sdkInvoke(g.agentKey, g.issue("alice@customer.com", step("tools", "echo", map[string]any{"text": "x"})), "tools", "echo", map[string]any{"text": "x"}, nil); resp.StatusCode != 200 {
		t.Errorf("a call after the panics: %d %v", resp.StatusCode, out)
	}
	if got := paid.Load(); got != 3 {
		t.Errorf("panicking calls reached = %d, want 3", got)
	}
	reqs := g.records(store.AuditFilter{Phase: store.PhaseRequest, Tool: "pay"})
	if int64(len(reqs)) != paid.Load() {
		t.Errorf("request records of pay = %d, want %d", len(reqs), paid.Load())
	}
	for _, r := range reqs {
		if r.OutcomeMissing {
			t.Errorf("request %d (%s) has no outcome: the panic skipped it", r.Seq, r.RequestID)
		}
	}
}

// TestDeviceLoginLabelsAreClean: the client label of a device login comes
// from an unauthenticated request and is shown to the person who approves
// it; the email an admin grants becomes a key's name. A credential in
// either is never stored, and text that reorders what the approver reads
// (a bidi override) never reaches the console.
func TestDeviceLoginLabelsAreClean(t *testing.T) {
	g := newTestGateway(t, nil)
	var st DeviceStart
	g.do("POST", "/auth/device/code", "", map[string]any{"client": "armoriq CLI \u202eexe.nigol\u202c " + g.agentKey}, 200, &st)
	var list struct {
		Devices []store.DeviceLogin `json:"devices"`
	}
	g.do("GET", "/v1/devices", g.adminKey, nil, 200, &list)
	for _, d := range list.Devices {
		if strings.Contains(d.Client, "ak_live_") || strings.ContainsRune(d.Client, '\u202e') {
			t.Errorf("device login client label stored as %q", d.Client)
		}
	}
	for _, email := range []string{g.agentKey, "bob\u202e@example.com", "b\u043eb@example.com", "bob@example.com\xff"} {
		resp, data := g.send("POST", "/v1/devices/"+st.UserCode+"/approve", g.adminKey, []byte(`{"role":"agent","email":`+string(mustJSON(email))+`}`), nil)
		if resp.StatusCode != 400 {
			t.Errorf("approving a device login as %q: %d %s, want 400", email, resp.StatusCode, data)
		}
	}
	g.checkNoCredentialStored()
}

// TestTwoUserHeaders: a request that names two end users in two
// X-Armoriq-User headers is refused, as two users in one /invoke call are:
// a proxy in front of the gateway may read the other one.
func TestTwoUserHeaders(t *testing.T) {
	g := newTestGateway(t, nil)
	g.pushBundle("rev1", 1, redteamPolicy())
	hdr := [][2]string{{"Authorization", "Bearer " + g.agentKey}, {"Accept", "application/json, text/event-stream"},
		{headerProtocol, firstStatelessVersion}, {"Mcp-Method", "tools/call"}, {"Mcp-Name", "tools_echo"}}
	call := `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"tools_echo","arguments":{"text":"hi"},"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}}}`
	if got := g.rawRequest("POST", "/mcp", append(hdr, [2]string{headerUser, "alice@customer.com"}, [2]string{headerUser, "bob@customer.com"}), call); got != 400 {
		t.Errorf("two X-Armoriq-User headers: status %d, want 400", got)
	}
	if got := g.rawRequest("POST", "/mcp", append(hdr, [2]string{headerUser, "Alice@customer.com"}, [2]string{headerUser, "alice@customer.com "}), call); got != 200 {
		t.Errorf("the same user twice: status %d, want 200", got)
	}
	if n := g.execs.Load(); n != 1 {
		t.Errorf("upstream executions %d, want 1", n)
	}
}

// TestKeyPastedEverywhere sends an API key in every field a caller
// controls, on every route that may store something, then dumps every
// table of the SQLite file: no API key may be found in any of them.
func TestKeyPastedEverywhere(t *testing.T) {
	g := newTestGateway(t, nil)
	g.pushBundle("rev1", 1, redteamPolicy())
	k := g.agentKey
	upper := strings.ToUpper(k[:8]) + k[8:]
	echo := map[string]any{"text": "hi"}
	tok := g.issue("svc", step("tools", "echo", echo), step("tools", "pay", map[string]any{"amount": 5000, "memo": "use " + k}))
	hdr := map[string]string{"X-Request-ID": k}
	// Identities (refused or replaced), arguments and their names (redacted).
	g.sdkInvoke(k, tok, "tools", "echo", sdkUser(echo, k), nil)
	g.sdkInvoke(k, tok, "tools", "echo", echo, map[string]any{"user_email": upper})
	g.sdkInvoke(k, tok, "tools", "pay", sdkUser(map[string]any{"amount": 5000, "memo": "use " + k}, "alice@customer.com"), nil)
	g.sdkInvoke(k, tok, "tools", "echo", map[string]any{"text": k, k: 1}, nil)
	g.sdkInvoke(k, tok, "tools", "echo", echo, map[string]any{"intent_token": map[string]any{"intent_reference": k}})
	g.sdkInvoke(k, tok, "tools", "echo", map[string]any{"text": "hi", "_delegation_id": k}, nil)
	g.send("POST", "/invoke", k, []byte(`{"mcp":"`+k+`","action":"echo"}`), hdr)
	g.send("POST", "/invoke", k, []byte(`{"mcp":"tools","action":"`+k+`"}`), hdr)
	g.send("POST", "/iap/sdk/token", k, map[string]any{"user_id": "svc", "agent_id": k, "plan": map[string]any{"goal": k, "steps": []any{step("tools", "echo", map[string]any{"text": k})}}}, hdr)
	g.send("POST", "/iap/sdk/token", k, map[string]any{"user_id": "svc", "agent_id": "a", "context_id": k, "plan": map[string]any{"goal": k, "steps": []any{step("tools", "delete_all", map[string]any{"why": k})}}}, hdr)
	g.send("POST", "/delegation/request", k, map[string]any{"tool": k, "intentReference": k, "arguments": map[string]any{"x": k}}, hdr)
	g.send("GET", "/delegation/check-approved?tool="+k, k, nil, hdr)
	g.send("POST", "/delegation/mark-executed", k, map[string]any{"delegationId": k}, hdr)
	g.send("POST", "/v1/keys", g.adminKey, map[string]any{"name": "ci " + k, "role": "agent"}, hdr)
	g.send("POST", "/v1/keys", g.adminKey, map[string]any{"name": "ci", "role": "agent", "agent": k}, hdr)
	g.send("POST", "/auth/device/code", "", map[string]any{"client": k}, map[string]string{"User-Agent": k})
	// /mcp: identity headers, client names, tool arguments, resources.
	mh := map[string]string{"Accept": "application/json, text/event-stream", "Content-Type": "application/json", "X-Request-ID": k}
	g.send("POST", "/mcp", k, []byte(`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-03-26","capabilities":{},"clientInfo":{"name":"`+k+`","version":"1"}}}`), mh)
	modern := map[string]string{"Accept": "application/json, text/event-stream", "Content-Type": "application/json", headerProtocol: firstStatelessVersion, "Mcp-Method": "tools/call", "Mcp-Name": "tools_echo", headerUser: k}
	call := `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"tools_echo","arguments":{"text":"` + k + `"},"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{},"io.modelcontextprotocol/clientInfo":{"name":"` + k + `","version":"1"}}}}`
	g.send("POST", "/mcp", k, []byte(call), modern)
	delete(modern, headerUser)
	g.send("POST", "/mcp", k, []byte(call), modern)
	call = strings.Replace(call, `"name":"`+k+`"`, `"name":"c"`, 1)
	g.send("POST", "/mcp", k, []byte(call), modern)
	for _, m := range []string{`{"jsonrpc":"2.0","id":2,"method":"resources/read","params":{"uri":"test://` + k + `"}}`, `{"jsonrpc":"2.0","id":3,"method":"prompts/get","params":{"name":"p","arguments":{"a":"` + k + `"}}}`} {
		g.send("POST", "/mcp", k, []byte(m), map[string]string{"Accept": "application/json, text/event-stream", "Content-Type": "application/json", headerProtocol: firstStatelessVersion})
	}
	// An approval with the key in its comment, and the device email.
	resp, out := g.sdkInvoke(k, tok, "tools", "pay", sdkUser(map[string]any{"amount": 5000, "memo": "use " + k}, "alice@customer.com"), nil)
	if _, dc, _ := enforcementOf(out); resp.StatusCode == 403 && dc["delegationId"] != nil {
		g.send("POST", "/v1/approvals/"+dc["delegationId"].(string)+"/approve", g.adminKey, map[string]any{"comment": k}, nil)
	}
	if got := len(g.records(store.AuditFilter{})); got < 10 {
		t.Fatalf("only %d audit records: the attack run did not reach the gateway", got)
	}
	g.checkNoCredentialStored()
}

// TestSuspendedCallerReadsNoResources: resources and prompts have no
// rules of their own, but a caller that may call no tool of a server (an
// agent suspended by `agents: [bad-bot]` on */*, a user denied the
// server's tools) may not read its resources or get its prompts either.
func TestSuspendedCallerReadsNoResources(t *testing.T) {
	g := adapterGateway(t, "1", nil)
	pol := bundle.Policy{Rules: []bundle.Rule{
		{ID: "all", Effect: bundle.Allow, Tools: []string{"*/*"}},
		{ID: "no-bad-bot", Effect: bundle.Deny, Tools: []string{"*/*"}, Agents: []string{"bad-bot"}, Reason: "bad-bot is suspended"},
		{ID: "no-bob", Effect: bundle.Deny, Tools: []string{"local/*"}, Users: []string{"bob@customer.com"}, Reason: "bob may not use local"},
	}}
	g.pushServers("r1", 1, pol, stdioServer("local", "conditional"))
	var out struct {
		Key string `json:"key"`
	}
	g.do("POST", "/v1/keys", g.adminKey, map[string]any{"name": "ci", "role": "agent", "agent": "bad-bot"}, 201, &out)
	read := func(cs *mcp.ClientSession) error {
		_, err := cs.ReadResource(context.Background(), &mcp.ReadResourceParams{URI: "test://stdio-upstream/readme"})
		if err != nil {
			return err
		}
		_, err = cs.GetPrompt(context.Background(), &mcp.GetPromptParams{Name: "greet", Arguments: map[string]string{"who": "ann"}})
		return err
	}
	if err := read(g.mcpClient(g.agentKey, nil)); err != nil {
		t.Fatalf("the agent key reading a resource and a prompt: %v", err)
	}
	if err := read(g.mcpClient(out.Key, nil)); err == nil || !strings.Contains(err.Error(), "blocked") {
		t.Errorf("bad-bot reading a resource: %v, want blocked", err)
	}
	if err := read(g.mcpClient(g.agentKey, map[string]string{headerUser: "bob@customer.com"})); err == nil || !strings.Contains(err.Error(), "blocked") {
		t.Errorf("bob reading a resource of local: %v, want blocked", err)
	}
	g.checkNoUnauditedExecution()
}

// lockedBuffer is a log sink safe for the gateway's goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestNoKeyInLogs: an API key a caller puts where an error message or a
// log line quotes it (an approval id, an intent reference, a path) never
// reaches the log.
func TestNoKeyInLogs(t *testing.T) {
	var logs lockedBuffer
	g := newTestGateway(t, nil, func(c *Config) {
		c.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	})
	g.pushBundle("rev1", 1, redteamPolicy())
	k := g.agentKey
	echo := map[string]any{"text": "hi"}
	tok := g.issue("svc", step("tools", "echo", echo))
	g.sdkInvoke(k, tok, "tools", "echo", map[string]any{"text": "hi", "_delegation_id": k}, nil)
	g.sdkInvoke(k, tok, "tools", "echo", echo, map[string]any{"intent_token": map[string]any{"intent_reference": k}})
	g.send("POST", "/delegation/request", k, map[string]any{"tool": "echo", "intentReference": k}, nil)
	g.send("GET", "/v1/approvals/"+k, g.adminKey, nil, nil)
	g.send("POST", "/v1/approvals/"+k+"/approve", g.adminKey, nil, nil)
	g.send("POST", "/v1/devices/"+k+"/approve", g.adminKey, map[string]any{"role": "agent"}, nil)
	g.send("DELETE", "/v1/tokens/"+k, g.adminKey, nil, nil)
	g.send("GET", "/v1/audit?decision="+k, g.adminKey, nil, nil)
	if strings.Count(logs.String(), "request failed") < 4 {
		t.Fatalf("the attacks were not logged as failed requests: %s", logs.String())
	}
	if i := strings.Index(strings.ToLower(logs.String()), "ak_live_"); i >= 0 {
		t.Errorf("an API key reached the log: …%s…", logs.String()[max(0, i-200):min(len(logs.String()), i+80)])
	}
}
