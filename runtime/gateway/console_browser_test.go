package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/armoriq/controlplane/compiler/bundle"
	"github.com/armoriq/controlplane/runtime/store"
	"github.com/chromedp/chromedp"
)

// chromiumPath finds Debian's chromium (installed by .ci/run), or
// $ARMORIQ_CHROMIUM.
func chromiumPath(t *testing.T) string {
	if p := os.Getenv("ARMORIQ_CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Skip("no chromium on this machine: skipping the console's browser tests (apt-get install chromium; .ci/run does)")
	return ""
}

// browser is a headless Chromium driven over the DevTools protocol, with
// a fresh profile and nothing that reaches the network on its own.
type browser struct {
	t     *testing.T
	ctx   context.Context
	base  string
	shots string
}

func newBrowser(t *testing.T, base string) *browser {
	path := chromiumPath(t)
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.NoFirstRun,
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1400, 900),
	)
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelC := chromedp.NewContext(actx)
	t.Cleanup(func() { cancelC(); cancelA() })
	if err := chromedp.Do(ctx); err != nil { // starts the browser
		t.Fatalf("starting chromium: %v", err)
	}
	shots := os.Getenv("ARMORIQ_SCREENSHOT_DIR")
	if shots == "" {
		shots = t.TempDir()
	}
	return &browser{t: t, ctx: ctx, base: base, shots: shots}
}

// step bounds one interaction.
func (b *browser) step() (context.Context, context.CancelFunc) {
	return context.WithTimeout(b.ctx, 30*time.Second)
}

func (b *browser) fail(what string, err error) {
	b.t.Helper()
	loc, _ := chromedp.Run(b.ctx, chromedp.Location())
	b.t.Fatalf("%s: %v (at %s)", what, err, loc)
}

// do runs steps that do not load a page.
func (b *browser) do(what string, steps ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := b.step()
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		b.fail(what, err)
	}
}

// load runs steps that load a page and waits for it.
func (b *browser) load(what string, steps ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := b.step()
	defer cancel()
	if _, err := chromedp.RunResponse(ctx, steps...); err != nil {
		b.fail(what, err)
	}
}

func (b *browser) open(path string) {
	b.t.Helper()
	b.load("open "+path, chromedp.Navigate(b.base+path))
}

// text returns the visible text of the page's main element.
func (b *browser) text() string {
	b.t.Helper()
	ctx, cancel := b.step()
	defer cancel()
	// innerText of the page's main element (or of the body, on a page
	// that is not the console's, so a failure shows what came instead).
	s, err := chromedp.Run(ctx, chromedp.Evaluate[string](`(document.querySelector('main') || document.body).innerText`))
	if err != nil {
		b.fail("read the page", err)
	}
	return s
}

func (b *browser) mustSee(what string, want ...string) {
	b.t.Helper()
	got := b.text()
	for _, w := range want {
		if !strings.Contains(got, w) {
			b.t.Fatalf("%s: the page does not say %q; it says:\n%s", what, w, got)
		}
	}
}

func (b *browser) shot(name string) {
	b.t.Helper()
	ctx, cancel := b.step()
	defer cancel()
	buf, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		b.fail("screenshot "+name, err)
	}
	p := filepath.Join(b.shots, name+".png")
	if err := os.WriteFile(p, buf, 0o644); err != nil {
		b.t.Fatal(err)
	}
	b.t.Logf("screenshot %s", p)
}

// submit fills fields (CSS selector → value) and clicks button, which
// loads the answer.
func (b *browser) submit(what string, fields map[string]string, button string) {
	b.t.Helper()
	for sel, v := range fields {
		b.do(what+": fill "+sel, chromedp.SetValue(chromedp.CSS(sel), v))
	}
	b.load(what, chromedp.Click(chromedp.CSS(button)))
}

// evaluate runs a script in the page.
func evaluate[T any](b *browser, script string) T {
	b.t.Helper()
	ctx, cancel := b.step()
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](script))
	if err != nil {
		b.fail("evaluate", err)
	}
	return v
}

// forge posts a form the page does not offer, as a script or a crafted
// page would: to path, with fields, from the current page.
func (b *browser) forge(path string, fields map[string]string) {
	b.t.Helper()
	js, _ := json.Marshal(fields)
	script := fmt.Sprintf(`(() => { const f = document.createElement('form'); f.method = 'post'; f.action = %q;
		for (const [k, v] of Object.entries(%s)) { const i = document.createElement('input'); i.type = 'hidden'; i.name = k; i.value = v; f.appendChild(i); }
		document.body.appendChild(f); f.submit(); return true; })()`, path, js)
	b.load("forge a form to "+path, chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		_, err := chromedp.Evaluate[bool](script)(ctx, t)
		return err
	}))
}

func (b *browser) csrf() string {
	b.t.Helper()
	return evaluate[string](b, `document.querySelector('form[action$="/logout"] input[name=csrf]').value`)
}

// TestConsoleInBrowser drives the console in a real headless Chromium: sign
// in, keys, a device login, an approval of a held call that then runs
// once, the audit filter, the policy; a viewer cannot act; a form without
// its CSRF token is refused; a session ends with its key.
func TestConsoleInBrowser(t *testing.T) {
	g := newTestGateway(t, nil)
	pol := testPolicy()
	pol.Rules[3].Reason = "payments by eve need a second person"
	g.pushBundle("rev-2026-05-01", 7, pol)
	b := newBrowser(t, g.http.URL)

	// Sign in.
	b.open("/console/")
	b.mustSee("sign-in page", "Sign in", "With an API key", "With a code")
	b.shot("01-login")
	b.submit("wrong key", map[string]string{"#key": "ak_live_nope"}, `form[action$="/login"] button`)
	b.mustSee("a wrong key", "that API key is not valid")
	b.submit("sign in", map[string]string{"#key": g.adminKey}, `form[action$="/login"] button`)
	b.mustSee("overview", "Overview", "rev-2026-05-01", "Upstream servers", "tools")

	// A held call, before anything else, so the overview counts it.
	params := map[string]any{"text": "pay 5000 to acct-9"}
	// Valid for longer than the browser's steps take on a loaded machine.
	tok := g.issueTTL("eve@example.com", 900, step("tools", "echo", params))
	resp, out := g.sdkInvoke(g.agentKey, tok, "tools", "echo", params, nil)
	_, dc, _ := enforcementOf(out)
	approvalID, _ := dc["delegationId"].(string)
	if resp.StatusCode != 403 || approvalID == "" {
		t.Fatalf("held call: %d %v", resp.StatusCode, out)
	}
	g.do("PUT", "/v1/reconciler/status", g.adminKey, map[string]any{"source": "https://github.com/acme/policy@main", "revision": "rev-2026-05-01", "state": "Ready", "reason": "Applied"}, 200, nil)
	g.do("PUT", "/v1/reconciler/status", g.adminKey, map[string]any{"state": "Fine"}, 400, nil)
	g.do("PUT", "/v1/reconciler/status", g.agentKey, map[string]any{"state": "Ready"}, 403, nil)
	b.open("/console/")
	b.mustSee("overview with a pending approval and the reconciler", "1 approval(s) pending", "https://github.com/acme/policy@main", "Ready")
	b.shot("02-overview")

	// API keys: create an agent key with its agent identity, shown once; revoke it.
	b.open("/console/keys")
	b.submit("create a key", map[string]string{`input[name=name]`: "ci-agent", `select[name=role]`: "agent", `input[name=agent]`: "support-bot"}, `form[action$="/keys"] button`)
	b.mustSee("the new key", "Copy it now", "ak_live_", "ci-agent")
	secret := evaluate[string](b, `document.getElementById('new-key').textContent`)
	if !strings.HasPrefix(strings.TrimSpace(secret), "ak_live_") {
		t.Fatalf("new key = %q", secret)
	}
	b.shot("03-keys-created")
	newID := strings.Split(strings.TrimPrefix(strings.TrimSpace(secret), "ak_live_"), "_")[0]
	g.do("GET", "/v1/whoami", strings.TrimSpace(secret), nil, 200, nil)
	b.open("/console/keys") // the secret is not shown again
	if strings.Contains(b.text(), strings.TrimSpace(secret)) {
		t.Fatal("the key's secret is shown a second time")
	}
	adminKeyID := g.caller(g.adminKey).KeyID
	b.submit("revoke the last admin key", nil, fmt.Sprintf(`form[action$="/keys/%s/revoke"] button`, adminKeyID))
	b.mustSee("the last admin key stays", "the last active admin key")
	b.open("/console/keys")
	b.submit("revoke the key", nil, fmt.Sprintf(`form[action$="/keys/%s/revoke"] button`, newID))
	b.mustSee("revoked", "key "+newID+" revoked")
	g.do("GET", "/v1/whoami", strings.TrimSpace(secret), nil, 401, nil)
	b.shot("04-keys")

	// A device login (armoriq login) approved in the console as a viewer key for vera.
	var st DeviceStart
	g.do("POST", "/auth/device/code", "", map[string]any{"client": "armoriq CLI on vera-laptop"}, 200, &st)
	b.open("/console/device?code=" + st.UserCode)
	b.mustSee("device page", "Approve a code", "armoriq CLI on vera-laptop")
	b.submit("approve the device", map[string]string{`select[name=role]`: "viewer", `input[name=email]`: "vera@example.com"}, `form[action$="/device"] button[value=approve]`)
	b.mustSee("device approved", "approved as viewer")
	b.shot("05-device-logins")
	g.clock.advance(6 * time.Second)
	status, grant := pollCode(g, st.DeviceCode)
	viewerKey, _ := grant["apiKey"].(string)
	if status != 200 || viewerKey == "" {
		t.Fatalf("device poll after approval: %d %v", status, grant)
	}

	// Another browser signs in with a code, which the admin approves; its
	// sign-out revokes the key made for it.
	b2 := newBrowser(t, g.http.URL)
	b2.open("/console/login")
	b2.load("ask for a code", chromedp.Click(chromedp.CSS(`form[action$="/login/device"] button`)))
	b2.mustSee("waiting page", "Waiting for approval")
	code := strings.TrimSpace(evaluate[string](b2, `document.querySelector('.usercode').textContent`))
	b2.shot("05b-sign-in-with-a-code")
	b.open("/console/device")
	b.mustSee("the console sign-in request", code, "console sign-in")
	b.submit("approve the console sign-in", map[string]string{`input[name=code]`: code, `select[name=role]`: "viewer", `input[name=email]`: "wes@example.com"}, `form[action$="/device"] button[value=approve]`)
	g.clock.advance(6 * time.Second)
	b2.open("/console/login/device")
	b2.mustSee("signed in by code", "Overview")
	if who := evaluate[string](b2, `document.querySelector('.who .mono').textContent`); who != "wes@example.com" {
		t.Errorf("signed in by code as %q, want wes@example.com", who)
	}
	b2.load("sign out", chromedp.Click(chromedp.CSS(`form[action$="/logout"] button`)))
	var keys struct {
		Keys []struct {
			Name      string  `json:"name"`
			RevokedAt *string `json:"revoked_at"`
		} `json:"keys"`
	}
	g.do("GET", "/v1/keys", g.adminKey, nil, 200, &keys)
	for _, k := range keys.Keys {
		if k.Name == "wes@example.com" && k.RevokedAt == nil {
			t.Error("signing out of a session made by code did not revoke its key")
		}
	}

	// The approval: pending first; approve with a comment; the call runs once.
	b.open("/console/approvals")
	b.mustSee("approvals", "pending", "tools/echo", "eve@example.com", "hold-eve")
	b.shot("06-approvals")
	b.open("/console/approvals/" + approvalID)
	b.mustSee("approval page", "payments by eve need a second person", "any admin", "pay 5000 to acct-9")
	b.submit("approve", map[string]string{"#comment": "invoice 42 checked with eve"}, `button[value=approve]`)
	b.mustSee("approved", "approved", "invoice 42 checked with eve")
	b.shot("07-approval-decided")
	retry := map[string]any{"text": "pay 5000 to acct-9", "_delegation_id": approvalID}
	if resp, out := g.sdkInvoke(g.agentKey, tok, "tools", "echo", retry, nil); resp.StatusCode != 200 {
		t.Fatalf("the approved call: %d %v", resp.StatusCode, out)
	}
	if resp, _ := g.sdkInvoke(g.agentKey, tok, "tools", "echo", retry, nil); resp.StatusCode != 403 {
		t.Fatalf("the approved call a second time: %d, want 403", resp.StatusCode)
	}
	b.open("/console/approvals/" + approvalID)
	b.mustSee("executed, with its audit trail", "executed", "Audit trail",
		"approved by bootstrap admin: invoice 42 checked with eve", "forwarded", "outcome")
	if n := evaluate[int](b, `document.querySelectorAll('table.list tbody tr').length`); n < 4 {
		t.Errorf("the approval's audit trail has %d records, want held, approval, request and outcome", n)
	}
	b.shot("07b-approval-executed")

	// The audit: filter by user and decision; a record's details; the chain.
	b.open("/console/audit")
	b.mustSee("audit", "chain verified")
	b.submit("filter the audit", map[string]string{`input[name=user]`: "eve@example.com", `select[name=decision]`: "held"}, `.filters-form button`)
	b.mustSee("filtered audit", "held", "eve@example.com")
	rows := evaluate[int](b, `document.querySelectorAll('table.list tbody tr').length`)
	decisions := evaluate[string](b, `[...document.querySelectorAll('table.list tbody td:nth-child(4)')].map(e => e.textContent.trim()).join(',')`)
	if rows < 1 || strings.Trim(strings.ReplaceAll(decisions, "held", ""), ",") != "" {
		t.Fatalf("filtered audit: %d rows, decisions %q; want only held", rows, decisions)
	}
	b.shot("08-audit-filtered")
	b.open("/console/audit")
	b.load("open the newest record", chromedp.Click(chromedp.CSS(`table.list tbody tr:first-child td a`)))
	b.mustSee("record", "Previous hash", "Hash")
	b.shot("09-audit-record")

	// The policy, with source positions and approvers.
	b.open("/console/policy")
	b.mustSee("policy", "rev-2026-05-01", "no-big-sums", "armoriq.yaml:20", "hold-eve", "any admin")
	b.shot("10-policy")

	// A form without its CSRF token is refused.
	b.open("/console/keys")
	b.forge("/console/keys", map[string]string{"name": "sneaky", "role": "admin"})
	b.mustSee("no CSRF token", "CSRF token is missing or wrong")
	b.forge("/console/keys", map[string]string{"name": "sneaky", "role": "admin", "csrf": "guess"})
	b.mustSee("a wrong CSRF token", "CSRF token is missing or wrong")
	b.open("/console/keys")
	if strings.Contains(b.text(), "sneaky") {
		t.Fatal("a key was created without a valid CSRF token")
	}

	// A viewer sees but does not act.
	b.open("/console/")
	b.submit("sign out", nil, `form[action$="/logout"] button`)
	b.mustSee("signed out", "signed out")
	b.submit("sign in as viewer", map[string]string{"#key": viewerKey}, `form[action$="/login"] button`)
	b.mustSee("viewer overview", "Overview")
	b.open("/console/keys")
	b.mustSee("viewer keys page", "you can see keys but not create or revoke them")
	b.shot("11-viewer-keys")
	csrf := b.csrf()
	b.forge("/console/keys", map[string]string{"name": "by-viewer", "role": "admin", "csrf": csrf})
	b.mustSee("viewer creating a key", "only an admin creates keys")
	adminID := g.caller(g.adminKey).KeyID
	b.open("/console/keys")
	b.forge("/console/keys/"+adminID+"/revoke", map[string]string{"csrf": csrf})
	b.mustSee("viewer revoking a key", "only an admin revokes keys")
	g.do("GET", "/v1/whoami", g.adminKey, nil, 200, nil)
	tok2 := g.issueTTL("eve@example.com", 900, step("tools", "echo", map[string]any{"text": "another"}))
	_, out = g.sdkInvoke(g.agentKey, tok2, "tools", "echo", map[string]any{"text": "another"}, nil)
	_, dc, _ = enforcementOf(out)
	second := dc["delegationId"].(string)
	b.open("/console/approvals/" + second)
	b.mustSee("viewer on a pending approval", "You cannot decide this approval", "only an admin decides")
	b.open("/console/approvals/" + second)
	b.forge("/console/approvals/"+second, map[string]string{"csrf": csrf, "decision": "approve"})
	b.mustSee("viewer approving", "only an admin decides")
	if a, _ := g.srv.human.approvals.Get(context.Background(), second); a.State != "pending" {
		t.Fatalf("a viewer's forged approval changed the state to %s", a.State)
	}

	// A session ends when its key is revoked.
	vid := g.caller(viewerKey).KeyID
	g.do("DELETE", "/v1/keys/"+vid, g.adminKey, nil, 200, nil)
	b.open("/console/approvals")
	b.mustSee("after revocation", "Sign in")
}

// TestOfficialSDKHeldPaymentApprovedInConsole: a payment through the real
// @armoriq/sdk is held; the SDK's delegation calls find its approval; a
// person approves it in the console (headless Chromium); the SDK retries
// and the payment runs exactly once; the audit chain links the hold, the
// approval and the execution by the approval id.
func TestOfficialSDKHeldPaymentApprovedInConsole(t *testing.T) {
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node is not installed: this test needs Node.js and @armoriq/sdk (.ci/run installs them)")
	}
	dir, _ := filepath.Abs("testdata/sdk-e2e")
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "@armoriq", "sdk")); err != nil {
		t.Skip("@armoriq/sdk is not installed: run `npm install` in runtime/gateway/testdata/sdk-e2e (.ci/run does)")
	}
	g := newTestGateway(t, nil)
	g.pushBundle("rev1", 100, bundle.Policy{Rules: []bundle.Rule{
		{ID: "payments", Effect: bundle.Allow, Tools: []string{"tools/pay"}},
		{ID: "big-payments", Effect: bundle.Hold, Tools: []string{"tools/pay"}, When: "args.amount > 1000", Reason: "payments over 1000 need a human",
			Pos: bundle.Pos{File: "armoriq.yaml", Line: 12, Col: 7}},
	}})
	b := newBrowser(t, g.http.URL)

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "approval.js")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GATEWAY="+g.http.URL, "ARMORIQ_API_KEY="+g.agentKey)
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()

	// A person sees the pending approval in the console and approves it.
	var id string
	for deadline := time.Now().Add(60 * time.Second); id == "" && time.Now().Before(deadline); {
		var list struct {
			Approvals []struct {
				ID string `json:"id"`
			} `json:"approvals"`
		}
		g.do("GET", "/v1/approvals?state=pending", g.adminKey, nil, 200, &list)
		if len(list.Approvals) > 0 {
			id = list.Approvals[0].ID
		}
		time.Sleep(100 * time.Millisecond)
	}
	if id == "" {
		t.Fatalf("no pending approval appeared; node stdout:\n%s\nstderr:\n%s", stdout.String(), stderr.String())
	}
	b.open("/console/login")
	b.submit("sign in", map[string]string{"#key": g.adminKey}, `form[action$="/login"] button`)
	b.open("/console/approvals")
	b.mustSee("pending payment", "tools/pay", "alice@customer.com", "payments over 1000 need a human")
	b.load("review", chromedp.Click(chromedp.CSS(`a[href$="/approvals/`+id+`"]`)))
	b.mustSee("the payment", `"amount": 5000`, `"to": "acme"`)
	b.submit("approve", map[string]string{"#comment": "invoice 42 matches"}, `button[value=approve]`)
	b.mustSee("approved", "approved")

	if err := <-done; err != nil || !strings.Contains(stdout.String(), "\nDONE") {
		t.Fatalf("node approval.js: %v\nstdout:\n%s\nstderr:\n%s", err, stdout.String(), stderr.String())
	}
	res := map[string]map[string]any{}
	for _, line := range strings.Split(stdout.String(), "\n") {
		if l, ok := strings.CutPrefix(line, "RESULT "); ok {
			var r map[string]any
			if err := json.Unmarshal([]byte(l), &r); err != nil {
				t.Fatalf("bad result line %q: %v", l, err)
			}
			res[r["scenario"].(string)] = r
		}
	}
	if r := res["held"]; r["ok"] != false || !strings.Contains(fmt.Sprint(r["message"]), "HTTP 403") {
		t.Errorf("held: %v, want the SDK to raise on HTTP 403", r)
	}
	if r := res["requested"]; r["status"] != float64(200) || r["delegationId"] != id || r["state"] != "pending" {
		t.Errorf("/delegation/request: %v, want %s pending", r, id)
	}
	if r := res["approved"]; r["approved"] != true || r["approverEmail"] != "bootstrap admin" {
		t.Errorf("check-approved: %v", r)
	}
	if r := res["retried"]; r["ok"] != true || !strings.Contains(fmt.Sprint(r["value"]), "paid 5000") {
		t.Errorf("the retried payment: %v, want it paid", r)
	}
	if r := res["retried-again"]; r["ok"] != false || !strings.Contains(fmt.Sprint(r["message"]), "HTTP 403") {
		t.Errorf("the payment retried a second time: %v, want refused", r)
	}
	if r := res["mark-executed"]; r["status"] != float64(200) {
		t.Errorf("mark-executed: %v", r)
	}
	if n := g.execs.Load(); n != 1 {
		t.Errorf("the upstream ran %d payments, want exactly 1", n)
	}

	// The chain: held → approved (who, why) → request → outcome, all naming
	// the approval; it verifies.
	var phases []string
	for _, r := range g.records(store.AuditFilter{}) {
		if r.ApprovalID != id {
			continue
		}
		p := string(r.Phase)
		if p == "" {
			p = "decision"
		}
		phases = append(phases, p+":"+string(r.Decision))
		if r.Phase == store.PhaseApproval && (r.Service != "bootstrap admin" || !strings.Contains(r.Outcome, "invoice 42 matches")) {
			t.Errorf("approval record %d: %+v", r.Seq, r)
		}
	}
	got := strings.Join(phases, " ")
	for _, want := range []string{"decision:held", "approval:allowed", "request:allowed", "outcome:allowed"} {
		if !strings.Contains(got, want) {
			t.Errorf("records of %s: %s; missing %s", id, got, want)
		}
	}
	if strings.Count(got, "request:") != 1 {
		t.Errorf("records of %s: %s; want exactly one request", id, got)
	}
	g.checkNoUnauditedExecution()
}
