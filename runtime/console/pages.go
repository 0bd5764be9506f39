package console

import (
	"encoding/json"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/armoriq/controlplane/runtime/approval"
	"github.com/armoriq/controlplane/runtime/store"
)

func (c *Console) funcs() template.FuncMap {
	return template.FuncMap{
		"ts": func(t time.Time) string {
			if t.IsZero() {
				return "—"
			}
			return t.UTC().Format("2006-01-02 15:04:05Z")
		},
		"ago": func(t time.Time) string {
			if t.IsZero() {
				return ""
			}
			d := c.now().Sub(t).Round(time.Second)
			if d < 0 {
				return "in " + (-d).String()
			}
			return d.String() + " ago"
		},
		"short": func(s string) string {
			if len(s) > 14 {
				return s[:12] + "…"
			}
			return s
		},
		"hex": func(b []byte) string { return fmt.Sprintf("%x", b) },
		"json": func(b json.RawMessage) string {
			var v any
			if json.Unmarshal(b, &v) != nil {
				return string(b)
			}
			out, _ := json.MarshalIndent(v, "", "  ")
			return string(out)
		},
		"join": strings.Join,
		"phase": func(p store.AuditPhase) string {
			if p == store.PhaseDecision {
				return "decision"
			}
			return string(p)
		},
		"count":   func(m map[store.Decision]int, d string) int { return m[store.Decision(d)] },
		"isAdmin": func(s *session) bool { return s != nil && s.Role == store.RoleAdmin },
		"mayDecide": func(s *session, a store.Approval) bool {
			return s != nil && a.State == store.ApprovalPending && approval.MayDecide(a, approval.Approver{KeyID: s.KeyID, Name: s.Name, Role: s.Role}) == nil
		},
		"whyNot": func(s *session, a store.Approval) string {
			if s == nil {
				return ""
			}
			if err := approval.MayDecide(a, approval.Approver{KeyID: s.KeyID, Name: s.Name, Role: s.Role}); err != nil {
				return err.Error()
			}
			return ""
		},
		"pos": func(file string, line int) string {
			if file == "" {
				return "—"
			}
			if line > 0 {
				return file + ":" + strconv.Itoa(line)
			}
			return file
		},
		"query": func(f auditForm, extra ...string) template.URL {
			q := f.values()
			for i := 0; i+1 < len(extra); i += 2 {
				q.Set(extra[i], extra[i+1])
			}
			return template.URL(q.Encode())
		},
	}
}

// ---- overview

func (c *Console) overview(w http.ResponseWriter, r *http.Request, s *session) {
	o, err := c.b.Overview(r.Context())
	if err != nil {
		c.failErr(w, r, s, err)
		return
	}
	c.render(w, r, http.StatusOK, "overview", page{Title: "Overview", Nav: "overview", S: s, Data: o})
}

// ---- approvals

func (c *Console) approvals(w http.ResponseWriter, r *http.Request, s *session) {
	state := store.ApprovalState(r.URL.Query().Get("state"))
	if state != "" && !state.Valid() {
		c.fail(w, r, s, http.StatusBadRequest, fmt.Sprintf("state %q is not one of pending, approved, denied, expired, executed", state))
		return
	}
	list, err := c.b.Approvals(r.Context(), store.ApprovalFilter{State: state, Limit: 500})
	if err != nil {
		c.failErr(w, r, s, err)
		return
	}
	c.render(w, r, http.StatusOK, "approvals", page{Title: "Approvals", Nav: "approvals", S: s, Data: map[string]any{"List": list, "State": string(state)}})
}

func (c *Console) approvalPage(w http.ResponseWriter, r *http.Request, s *session) {
	a, err := c.b.Approval(r.Context(), r.PathValue("id"))
	if err != nil {
		c.failErr(w, r, s, err)
		return
	}
	// The audit trail of this approval: the held call, the decision, the
	// execution, linked by the approval id.
	var trail []store.AuditRecord
	f := store.AuditFilter{Server: a.Server, Tool: a.Tool, Since: a.CreatedAt.Add(-time.Second)}
	err = c.b.ExportAudit(r.Context(), f, func(rec store.AuditRecord) error {
		if rec.ApprovalID == a.ID {
			trail = append(trail, rec)
		}
		return nil
	})
	if err != nil {
		c.failErr(w, r, s, err)
		return
	}
	c.render(w, r, http.StatusOK, "approval", page{Title: "Approval " + a.ID, Nav: "approvals", S: s, Data: map[string]any{"A": a, "Trail": trail}})
}

func (c *Console) decideApproval(w http.ResponseWriter, r *http.Request, s *session) {
	id := r.PathValue("id")
	var approve bool
	switch r.PostFormValue("decision") {
	case "approve":
		approve = true
	case "deny":
	default:
		c.fail(w, r, s, http.StatusBadRequest, "decision must be approve or deny")
		return
	}
	scheme := "http"
	if secure(r) {
		scheme = "https"
	}
	link := scheme + "://" + r.Host + c.prefix + "/approvals/" + url.PathEscape(id)
	a, err := c.b.DecideApproval(r.Context(), s.Identity, id, approve, r.PostFormValue("comment"), link)
	if err != nil {
		c.failErr(w, r, s, err)
		return
	}
	c.back(w, r, "/approvals/"+url.PathEscape(a.ID), "approval "+a.ID+" "+string(a.State))
}

// ---- keys

func (c *Console) keys(w http.ResponseWriter, r *http.Request, s *session) {
	c.keysPage(w, r, s, http.StatusOK, nil)
}

func (c *Console) keysPage(w http.ResponseWriter, r *http.Request, s *session, status int, created map[string]string) {
	list, err := c.b.Keys(r.Context())
	if err != nil {
		c.failErr(w, r, s, err)
		return
	}
	// Newest first.
	for i, j := 0, len(list)-1; i < j; i, j = i+1, j-1 {
		list[i], list[j] = list[j], list[i]
	}
	c.render(w, r, status, "keys", page{Title: "API keys", Nav: "keys", S: s, Data: map[string]any{"List": list, "Created": created}})
}

func (c *Console) createKey(w http.ResponseWriter, r *http.Request, s *session) {
	if s.Role != store.RoleAdmin {
		c.fail(w, r, s, http.StatusForbidden, "only an admin creates keys; you are signed in as "+string(s.Role))
		return
	}
	role := store.Role(r.PostFormValue("role"))
	full, id, err := c.b.CreateKey(r.Context(), s.Identity, r.PostFormValue("name"), role, r.PostFormValue("agent"))
	if err != nil {
		c.failErr(w, r, s, err)
		return
	}
	// The secret is rendered in this answer only, never stored or redirected.
	c.keysPage(w, r, s, http.StatusCreated, map[string]string{"Key": full, "ID": id, "Role": string(role)})
}

func (c *Console) revokeKey(w http.ResponseWriter, r *http.Request, s *session) {
	if s.Role != store.RoleAdmin {
		c.fail(w, r, s, http.StatusForbidden, "only an admin revokes keys; you are signed in as "+string(s.Role))
		return
	}
	id := r.PathValue("id")
	if err := c.b.RevokeKey(r.Context(), s.Identity, id); err != nil {
		c.failErr(w, r, s, err)
		return
	}
	c.back(w, r, "/keys", "key "+id+" revoked")
}

// ---- audit

// auditForm is the audit page's filter as typed.
type auditForm struct {
	User, Server, Tool, Decision, Since, Until string
	After                                      int64
}

func (f auditForm) values() url.Values {
	q := url.Values{}
	for k, v := range map[string]string{"user": f.User, "server": f.Server, "tool": f.Tool, "decision": f.Decision, "since": f.Since, "until": f.Until} {
		if v != "" {
			q.Set(k, v)
		}
	}
	return q
}

// parseAuditForm reads the filter; times are RFC 3339 or the
// "2006-01-02T15:04" of a datetime-local input, in UTC.
func parseAuditForm(q url.Values) (auditForm, store.AuditFilter, error) {
	f := auditForm{User: strings.TrimSpace(q.Get("user")), Server: strings.TrimSpace(q.Get("server")), Tool: strings.TrimSpace(q.Get("tool")),
		Decision: q.Get("decision"), Since: q.Get("since"), Until: q.Get("until")}
	af := store.AuditFilter{User: f.User, Server: f.Server, Tool: f.Tool, Decision: store.Decision(f.Decision)}
	if af.Decision != "" && !af.Decision.Valid() {
		return f, af, fmt.Errorf("decision %q is not one of allowed, blocked, held, failed", f.Decision)
	}
	for name, p := range map[string]struct {
		s   string
		dst *time.Time
	}{"since": {f.Since, &af.Since}, "until": {f.Until, &af.Until}} {
		if p.s == "" {
			continue
		}
		t, err := time.Parse(time.RFC3339, p.s)
		if err != nil {
			t, err = time.Parse("2006-01-02T15:04", p.s)
		}
		if err != nil {
			return f, af, fmt.Errorf("%s %q is not a time (2006-01-02T15:04 or RFC 3339)", name, p.s)
		}
		*p.dst = t.UTC()
	}
	if v := q.Get("after"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			return f, af, fmt.Errorf("after %q is not a record number", v)
		}
		f.After, af.AfterSeq = n, n
	}
	return f, af, nil
}

func (c *Console) verify(r *http.Request) verifyResult {
	c.verifyMu.Lock()
	defer c.verifyMu.Unlock()
	if c.verified.At.IsZero() || c.now().Sub(c.verified.At) > 30*time.Second || r.URL.Query().Get("verify") == "1" {
		rep, err := c.b.VerifyAudit(r.Context())
		c.verified = verifyResult{At: c.now().UTC(), Report: rep, Err: err}
	}
	return c.verified
}

func (c *Console) audit(w http.ResponseWriter, r *http.Request, s *session) {
	f, af, err := parseAuditForm(r.URL.Query())
	if err != nil {
		c.fail(w, r, s, http.StatusBadRequest, err.Error())
		return
	}
	af.Limit = 200
	recs, err := c.b.Audit(r.Context(), af)
	if err != nil {
		c.failErr(w, r, s, err)
		return
	}
	var next int64
	if len(recs) == af.Limit {
		next = recs[len(recs)-1].Seq
	}
	// Newest first on screen.
	for i, j := 0, len(recs)-1; i < j; i, j = i+1, j-1 {
		recs[i], recs[j] = recs[j], recs[i]
	}
	c.render(w, r, http.StatusOK, "audit", page{Title: "Audit", Nav: "audit", S: s, Data: map[string]any{
		"Form": f, "Records": recs, "Next": next, "Verify": c.verify(r),
	}})
}

func (c *Console) auditRecord(w http.ResponseWriter, r *http.Request, s *session) {
	seq, err := strconv.ParseInt(r.PathValue("seq"), 10, 64)
	if err != nil || seq < 1 {
		c.fail(w, r, s, http.StatusBadRequest, fmt.Sprintf("%q is not a record number", r.PathValue("seq")))
		return
	}
	recs, err := c.b.Audit(r.Context(), store.AuditFilter{AfterSeq: seq - 1, Limit: 1})
	if err != nil {
		c.failErr(w, r, s, err)
		return
	}
	if len(recs) == 0 || recs[0].Seq != seq {
		c.fail(w, r, s, http.StatusNotFound, fmt.Sprintf("no audit record %d", seq))
		return
	}
	c.render(w, r, http.StatusOK, "record", page{Title: fmt.Sprintf("Audit record %d", seq), Nav: "audit", S: s, Data: recs[0]})
}

func (c *Console) exportAudit(w http.ResponseWriter, r *http.Request, s *session) {
	_, af, err := parseAuditForm(r.URL.Query())
	if err != nil {
		c.fail(w, r, s, http.StatusBadRequest, err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.Header().Set("Content-Disposition", `attachment; filename="armoriq-audit.jsonl"`)
	enc := json.NewEncoder(w)
	if err := c.b.ExportAudit(r.Context(), af, func(rec store.AuditRecord) error { return enc.Encode(rec) }); err != nil {
		c.log.Error("console audit export interrupted", "error", err)
	}
}

// ---- policy

func (c *Console) policy(w http.ResponseWriter, r *http.Request, s *session) {
	b, err := c.b.Policy(r.Context())
	if err != nil {
		c.failErr(w, r, s, err)
		return
	}
	c.render(w, r, http.StatusOK, "policy", page{Title: "Policy", Nav: "policy", S: s, Data: b})
}

// ---- device logins

func (c *Console) devices(w http.ResponseWriter, r *http.Request, s *session) {
	list, err := c.b.DeviceLogins(r.Context())
	if err != nil {
		c.failErr(w, r, s, err)
		return
	}
	c.render(w, r, http.StatusOK, "device", page{Title: "Device logins", Nav: "device", S: s, Data: map[string]any{
		"List": list, "Code": r.URL.Query().Get("code"),
	}})
}

func (c *Console) decideDevice(w http.ResponseWriter, r *http.Request, s *session) {
	code := r.PostFormValue("code")
	approve := r.PostFormValue("decision") == "approve"
	if !approve && r.PostFormValue("decision") != "deny" {
		c.fail(w, r, s, http.StatusBadRequest, "decision must be approve or deny")
		return
	}
	role := store.Role(r.PostFormValue("role"))
	if err := c.b.DecideDevice(r.Context(), s.Identity, code, approve, role, r.PostFormValue("email")); err != nil {
		c.failErr(w, r, s, err)
		return
	}
	verb := "denied"
	if approve {
		verb = "approved as " + string(role)
	}
	c.back(w, r, "/device", "device login "+strings.ToUpper(code)+" "+verb)
}
