package main

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/armoriq/controlplane/runtime/store"
	"github.com/spf13/pflag"
)

func auditCommand() *command {
	return &command{
		Use:   "audit",
		Short: "List, verify and export the gateway's audit log",
		Long: `Read the hash-chained audit log: from a running gateway (--gateway URL with
a viewer or admin key) or directly from a gateway's store (--data DIR for the
embedded SQLite database, or --store postgres://...).

Every record carries the hash of the one before it: 'armoriq audit verify'
detects an edited, inserted or deleted record and names it.

An allowed call is two records: its request, written before the MCP server is
called, and its outcome when the call ends. A request that no outcome
concludes is listed as "no outcome recorded": the call is still running, or
the gateway stopped (crashed) before it could record how the call ended.`,
		Sub: []*command{auditListCommand(), auditVerifyCommand(), auditExportCommand()},
	}
}

// auditFlags choose where the log is read from and which records.
type auditFlags struct {
	gw       gatewayFlags
	data     string
	storeDSN string
	user     string
	server   string
	tool     string
	decision string
	phase    string
	request  string
	since    string
	limit    int
}

// register declares the flags; with filters, the record filters, with
// --limit defaulting to limit (0: every record).
func (a *auditFlags) register(fs *pflag.FlagSet, filters bool, limit int) {
	a.gw.register(fs)
	fs.StringVar(&a.data, "data", "", "read a gateway's data directory directly (its SQLite store)")
	fs.StringVar(&a.storeDSN, "store", "", "read a store directly: postgres://... or a SQLite file")
	if filters {
		fs.StringVar(&a.user, "user", "", "only records of this end user")
		fs.StringVar(&a.server, "server", "", "only records of this MCP server")
		fs.StringVar(&a.tool, "tool", "", "only records of this tool")
		fs.StringVar(&a.decision, "decision", "", "only records with this decision: allowed, blocked, held, failed")
		fs.StringVar(&a.phase, "phase", "", "only records of this phase: request, outcome, approval")
		fs.StringVar(&a.request, "request-id", "", "only the records of this request id (a call's request and outcome)")
		fs.StringVar(&a.since, "since", "", "only records at or after this time (RFC 3339, or a duration like 1h)")
		help := "at most this many records, oldest first (1 to 1000)"
		if limit == 0 {
			help = "at most this many records, oldest first (1 to 1000; 0: all of them)"
		}
		fs.IntVar(&a.limit, "limit", limit, help)
	}
}

func (a *auditFlags) filter(now time.Time) (store.AuditFilter, error) {
	f := store.AuditFilter{User: a.user, Server: a.server, Tool: a.tool, Decision: store.Decision(a.decision),
		Phase: store.AuditPhase(a.phase), RequestID: a.request, Limit: a.limit}
	if f.Decision != "" && !f.Decision.Valid() {
		return f, usageErrorf("--decision must be allowed, blocked, held or failed, got %q", a.decision)
	}
	if f.Phase != "" && !f.Phase.Valid() {
		return f, usageErrorf("--phase must be request, outcome or approval, got %q", a.phase)
	}
	if a.since != "" {
		if d, err := time.ParseDuration(a.since); err == nil {
			f.Since = now.Add(-d)
		} else if t, err := time.Parse(time.RFC3339, a.since); err == nil {
			f.Since = t
		} else {
			return f, usageErrorf("--since %q is neither an RFC 3339 time nor a duration", a.since)
		}
	}
	if a.limit < 0 || a.limit > 1000 {
		return f, usageErrorf("--limit must be between 0 and 1000")
	}
	return f, nil
}

func filterQuery(f store.AuditFilter) string {
	q := url.Values{}
	set := func(k, v string) {
		if v != "" {
			q.Set(k, v)
		}
	}
	set("user", f.User)
	set("server", f.Server)
	set("tool", f.Tool)
	set("decision", string(f.Decision))
	set("phase", string(f.Phase))
	set("request_id", f.RequestID)
	if !f.Since.IsZero() {
		q.Set("since", f.Since.UTC().Format(time.RFC3339))
	}
	if f.AfterSeq > 0 {
		q.Set("after", strconv.FormatInt(f.AfterSeq, 10))
	}
	if f.Limit > 0 {
		q.Set("limit", strconv.Itoa(f.Limit))
	}
	if len(q) == 0 {
		return ""
	}
	return "?" + q.Encode()
}

// localStore opens the store named by --data or --store, or returns nil
// when the log is to be read from a running gateway.
func (a *auditFlags) localStore(ctx context.Context) (store.Store, error) {
	switch {
	case a.data != "" && a.storeDSN != "":
		return nil, usageErrorf("give --data or --store, not both")
	case a.data != "":
		path := filepath.Join(a.data, "armoriq.db")
		if _, err := os.Stat(path); err != nil {
			return nil, usageErrorf("--data %s: no gateway store there (%v)", a.data, err)
		}
		return store.OpenSQLite(ctx, path)
	case a.storeDSN != "":
		return store.Open(ctx, a.storeDSN)
	}
	return nil, nil
}

func auditListCommand() *command {
	var a auditFlags
	var asJSON bool
	return &command{
		Use:   "list",
		Short: "List audit records, oldest first",
		Example: `  armoriq audit list --data .armoriq-data --decision blocked
  armoriq audit list --gateway https://gw.example.com --since 1h --json`,
		Flags: func(fs *pflag.FlagSet) {
			a.register(fs, true, 100)
			fs.BoolVar(&asJSON, "json", false, "print JSON Lines")
		},
		Run: func(ctx context.Context, e *env, args []string) error {
			f, err := a.filter(time.Now())
			if err != nil {
				return err
			}
			var recs []store.AuditRecord
			st, err := a.localStore(ctx)
			if err != nil {
				return err
			}
			if st != nil {
				defer st.Close()
				if recs, err = st.ListAudit(ctx, f); err != nil {
					return err
				}
			} else {
				c, err := a.gw.client(e)
				if err != nil {
					return err
				}
				var out struct {
					Records []store.AuditRecord `json:"records"`
				}
				if err := c.do(ctx, "GET", "/v1/audit"+filterQuery(f), nil, &out); err != nil {
					return err
				}
				recs = out.Records
			}
			if asJSON {
				enc := json.NewEncoder(e.Stdout)
				for _, r := range recs {
					if err := enc.Encode(r); err != nil {
						return err
					}
				}
				return nil
			}
			printAudit(e.Stdout, recs)
			return nil
		},
	}
}

func printAudit(w io.Writer, recs []store.AuditRecord) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SEQ\tTIME\tDECISION\tPHASE\tUSER\tAGENT\tSERVER/TOOL\tRULE\tOUTCOME")
	for _, r := range recs {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s/%s\t%s\t%s\n", r.Seq, r.Time.UTC().Format(time.RFC3339), r.Decision,
			dash(string(r.Phase)), r.User, r.Agent, r.Server, r.Tool, dash(r.Rule), auditOutcome(r))
	}
	tw.Flush()
	if len(recs) == 0 {
		fmt.Fprintln(w, "(no records)")
	}
}

// auditOutcome is the OUTCOME column: how the call ended, and which
// record of the pair holds it.
func auditOutcome(r store.AuditRecord) string {
	outcome := r.Outcome
	if len(outcome) > 60 {
		outcome = strings.ToValidUTF8(outcome[:57], "") + "..."
	}
	switch {
	case r.Phase == store.PhaseOutcome:
		return fmt.Sprintf("%s, concluding #%d", dash(outcome), r.Concludes)
	case r.OutcomeMissing:
		return "no outcome recorded"
	case r.ConcludedBy > 0:
		return fmt.Sprintf("see #%d", r.ConcludedBy)
	}
	return dash(outcome)
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func auditVerifyCommand() *command {
	var a auditFlags
	return &command{
		Use:   "verify",
		Short: "Check the hash chain; exit 1 naming the first edited, inserted or deleted record",
		Flags: func(fs *pflag.FlagSet) { a.register(fs, false, 0) },
		Run: func(ctx context.Context, e *env, args []string) error {
			st, err := a.localStore(ctx)
			if err != nil {
				return err
			}
			var (
				ok           bool
				records      int64
				head         string
				problem      string
				pending      int64
				firstPending int64
			)
			if st != nil {
				defer st.Close()
				rep, err := st.VerifyAudit(ctx)
				if err != nil {
					return err
				}
				ok, records, head = rep.OK(), rep.Records, hex.EncodeToString(rep.HeadHash)
				pending, firstPending = rep.PendingOutcomes, rep.FirstPending
				if rep.Problem != nil {
					problem = rep.Problem.String()
				}
			} else {
				c, err := a.gw.client(e)
				if err != nil {
					return err
				}
				var out struct {
					OK              bool   `json:"ok"`
					Records         int64  `json:"records"`
					HeadHash        []byte `json:"head_hash"`
					Problem         string `json:"problem"`
					PendingOutcomes int64  `json:"pending_outcomes"`
					FirstPending    int64  `json:"first_pending"`
				}
				if err := c.do(ctx, "GET", "/v1/audit/verify", nil, &out); err != nil {
					return err
				}
				ok, records, head, problem = out.OK, out.Records, hex.EncodeToString(out.HeadHash), out.Problem
				pending, firstPending = out.PendingOutcomes, out.FirstPending
			}
			if !ok {
				fmt.Fprintf(e.Stdout, "audit log BROKEN: %s\n", problem)
				return silentExit(exitFailure)
			}
			fmt.Fprintf(e.Stdout, "audit log verified: %d records, head %s\n", records, head)
			switch {
			case pending == 1:
				fmt.Fprintf(e.Stdout, "1 request has no outcome recorded (#%d): still running, or the gateway stopped before the call ended\n", firstPending)
			case pending > 1:
				fmt.Fprintf(e.Stdout, "%d requests have no outcome recorded (the first is #%d): still running, or the gateway stopped before the calls ended\n", pending, firstPending)
			}
			return nil
		},
	}
}

func auditExportCommand() *command {
	var a auditFlags
	var output string
	return &command{
		Use:   "export",
		Short: "Export audit records as JSON Lines",
		Flags: func(fs *pflag.FlagSet) {
			a.register(fs, true, 0)
			fs.StringVarP(&output, "output", "o", "-", "file to write, - for stdout")
		},
		Run: func(ctx context.Context, e *env, args []string) error {
			f, err := a.filter(time.Now())
			if err != nil {
				return err
			}
			w := e.Stdout
			if output != "-" {
				file, err := os.OpenFile(output, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
				if err != nil {
					return usageErrorf("--output: %v", err)
				}
				defer file.Close()
				w = file
			}
			st, err := a.localStore(ctx)
			if err != nil {
				return err
			}
			if st != nil {
				defer st.Close()
				enc := json.NewEncoder(w)
				return st.ExportAudit(ctx, f, func(r store.AuditRecord) error { return enc.Encode(r) })
			}
			c, err := a.gw.client(e)
			if err != nil {
				return err
			}
			resp, err := c.send(ctx, "GET", "/v1/audit/export"+filterQuery(f), nil)
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			if resp.StatusCode != 200 {
				b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
				return fmt.Errorf("gateway answered %d: %s", resp.StatusCode, b)
			}
			_, err = io.Copy(w, resp.Body)
			return err
		},
	}
}
