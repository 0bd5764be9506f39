package reconciler

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"
)

// Condition is where a source or a target stands, as in Flux.
type Condition string

// Conditions. Ready: the target runs the desired revision. Waiting: a
// transient failure (network, 5xx), retried with backoff. Stalled: retrying
// will not help until someone acts (an invalid commit, a gateway refusing
// the bundle's signature or its age).
const (
	Ready   Condition = "Ready"
	Waiting Condition = "Waiting"
	Stalled Condition = "Stalled"
)

// Reasons name why an outcome has its condition; they are stable strings
// for dashboards and alerts.
const (
	ReasonApplied            = "Applied"            // Ready: the gateway runs the revision
	ReasonUpToDate           = "UpToDate"           // Ready: nothing to push
	ReasonBuilt              = "Built"              // Ready (source): the commit compiled and was signed
	ReasonSourceUnavailable  = "SourceUnavailable"  // Waiting: ls-remote or fetch failed
	ReasonInvalidConfig      = "InvalidConfig"      // Stalled: diagnostics at positions
	ReasonCompileFailed      = "CompileFailed"      // Stalled: the compiler refused the config
	ReasonUntrustedCommit    = "UntrustedCommit"    // Stalled: the commit's signature does not verify
	ReasonUnreachable        = "Unreachable"        // Waiting: network error talking to a gateway
	ReasonGatewayUnavailable = "GatewayUnavailable" // Waiting: 5xx, 429, 503
	ReasonVerificationFailed = "VerificationFailed" // Stalled: 422 from the gateway
	ReasonStaleBundle        = "StaleBundle"        // Stalled: 409 stale_bundle from the gateway
	ReasonRefused            = "Refused"            // Stalled: another 4xx (bad key, too large…)
	ReasonNotApplied         = "NotApplied"         // Waiting: the push succeeded but status shows another revision
	ReasonSuspended          = "Suspended"          // applying is paused
	ReasonNoArtifact         = "NoArtifact"         // Waiting: no commit has built yet
)

// Diagnostic is one positioned problem of a commit's config, as kept in the
// status (the same list validate prints and GitHub annotates).
type Diagnostic struct {
	Severity string `json:"severity"`
	File     string `json:"file,omitempty"`
	Line     int    `json:"line,omitempty"`
	Col      int    `json:"col,omitempty"`
	Path     string `json:"path,omitempty"`
	Summary  string `json:"summary"`
	Detail   string `json:"detail,omitempty"`
}

// String formats d as "file:line:col: path: summary", the form validate
// prints ("warning: " before the path for warnings).
func (d Diagnostic) String() string {
	var b strings.Builder
	b.WriteString(d.File)
	if b.Len() == 0 {
		b.WriteString("-")
	}
	if d.Line > 0 {
		fmt.Fprintf(&b, ":%d", d.Line)
		if d.Col > 0 {
			fmt.Fprintf(&b, ":%d", d.Col)
		}
	}
	b.WriteString(": ")
	if d.Severity == "warning" {
		b.WriteString("warning: ")
	}
	if d.Path != "" {
		b.WriteString(d.Path + ": ")
	}
	b.WriteString(d.Summary)
	return b.String()
}

// Outcome is what one step (or a whole pass for one target) came to.
type Outcome struct {
	Condition   Condition    `json:"condition"`
	Reason      string       `json:"reason"`
	Message     string       `json:"message,omitempty"`
	Diagnostics []Diagnostic `json:"diagnostics,omitempty"`
}

// Attempt is one entry of a history: an outcome for a revision at a time.
type Attempt struct {
	Revision string    `json:"revision"`
	Time     time.Time `json:"time"`
	Outcome
}

// SourceStatus is what the reconciler knows of one source and its targets.
type SourceStatus struct {
	URL       string `json:"url"`
	Branch    string `json:"branch"`
	Path      string `json:"path"`
	Suspended bool   `json:"suspended"`
	// Head is the branch head as last seen by ls-remote.
	Head                  string    `json:"head,omitempty"`
	LastAttemptedRevision string    `json:"last_attempted_revision,omitempty"`
	LastAppliedRevision   string    `json:"last_applied_revision,omitempty"` // last revision that built
	Time                  time.Time `json:"time"`
	Outcome
	History []Attempt      `json:"history,omitempty"`
	Targets []TargetStatus `json:"targets"`
}

// TargetStatus is one gateway's state.
type TargetStatus struct {
	Name string `json:"name"`
	URL  string `json:"url"`
	// GatewayRevision is what the gateway said it runs, at the last read.
	GatewayRevision       string    `json:"gateway_revision,omitempty"`
	GatewayLastError      string    `json:"gateway_last_error,omitempty"`
	LastAttemptedRevision string    `json:"last_attempted_revision,omitempty"`
	LastAppliedRevision   string    `json:"last_applied_revision,omitempty"`
	Time                  time.Time `json:"time"`
	Outcome
	Attempts  int        `json:"attempts,omitempty"` // consecutive failures
	NextRetry *time.Time `json:"next_retry,omitempty"`
	History   []Attempt  `json:"history,omitempty"`
}

// Status is the reconciler's whole report, served as GET /status.
type Status struct {
	Sources []SourceStatus `json:"sources"`
}

// StatusHandler serves GET /status as JSON from report.
func StatusHandler(report func() Status) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(report())
	})
}

func pushHistory(h []Attempt, a Attempt, n int) []Attempt {
	h = append(h, a)
	if len(h) > n {
		h = append([]Attempt(nil), h[len(h)-n:]...)
	}
	return h
}
