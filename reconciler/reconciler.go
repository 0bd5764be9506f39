package reconciler

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"
)

// Artifact is a commit built into a signed bundle: what targets should run.
type Artifact struct {
	Revision string
	Sequence int64
	Rules    int
	Data     []byte // the signed bundle file
}

// BuildFunc validates and compiles a config file read at a revision and
// signs the result. An invalid config is a Stalled outcome carrying its
// diagnostics, never an error: building is deterministic, retrying the same
// commit cannot help.
type BuildFunc func(filename string, data []byte, revision string, createdAt time.Time) (*Artifact, Outcome)

// CommitReporter is told the outcome of each commit the reconciler
// attempted (a GitHub commit status, for instance). Errors are logged.
type CommitReporter interface {
	ReportCommit(ctx context.Context, revision string, o Outcome) error
}

// Options configures a Reconciler.
type Options struct {
	Source  *Source
	Targets []*Gateway
	Build   BuildFunc

	// Interval between polls (default 30s).
	Interval time.Duration
	// Suspend pauses applying: passes still read and report.
	Suspend bool
	// TrustedSigners, when set, is an armored PGP key ring: only commits
	// whose signature verifies with it are applied.
	TrustedSigners string
	// Reporter, if set, is told about each commit's outcome.
	Reporter CommitReporter

	// Retries is how many times one pass retries a Waiting target before
	// giving up until the next pass (default 2); --once relies on it.
	Retries int
	// BackoffBase and BackoffMax bound the exponential backoff between
	// attempts at a Waiting target (defaults 1s and 5m). A Stalled target
	// is retried every BackoffMax, or at once on a new commit.
	BackoffBase, BackoffMax time.Duration
	// History is how many attempts the status keeps per source and
	// target (default 10).
	History int

	Logger *slog.Logger
	Now    func() time.Time
}

// Reconciler keeps a source's targets at the source's head.
type Reconciler struct {
	opts    Options
	log     *slog.Logger
	trigger chan struct{}
	passMu  sync.Mutex // one pass at a time

	mu        sync.Mutex // guards the fields below
	suspended bool
	status    SourceStatus
	targets   []*targetState
	built     builtCommit // the last commit built, so a pass at the same head skips the build
	lastGood  *Artifact
	reported  Attempt // the last report: one per change of the head's condition
}

type builtCommit struct {
	revision string
	art      *Artifact
	outcome  Outcome
}

type targetState struct {
	gw      *Gateway
	status  TargetStatus
	nextTry time.Time
}

// New checks opts and returns a Reconciler ready to Run.
func New(opts Options) (*Reconciler, error) {
	if opts.Source == nil {
		return nil, errors.New("reconciler: no source")
	}
	if len(opts.Targets) == 0 {
		return nil, errors.New("reconciler: no target gateway")
	}
	if opts.Build == nil {
		return nil, errors.New("reconciler: no build function")
	}
	if opts.Interval <= 0 {
		opts.Interval = 30 * time.Second
	}
	if opts.Retries < 0 {
		opts.Retries = 0
	} else if opts.Retries == 0 {
		opts.Retries = 2
	}
	if opts.BackoffBase <= 0 {
		opts.BackoffBase = time.Second
	}
	if opts.BackoffMax <= 0 {
		opts.BackoffMax = 5 * time.Minute
	}
	if opts.History <= 0 {
		opts.History = 10
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	so := opts.Source.Options()
	r := &Reconciler{
		opts:      opts,
		log:       opts.Logger.With("source", opts.Source.String()),
		trigger:   make(chan struct{}, 1),
		suspended: opts.Suspend,
		status: SourceStatus{
			URL: redactURL(so.URL), Branch: so.Branch, Path: so.Path, Suspended: opts.Suspend,
		},
	}
	for _, g := range opts.Targets {
		r.targets = append(r.targets, &targetState{gw: g, status: TargetStatus{Name: g.name(), URL: g.URL}})
	}
	return r, nil
}

// Trigger asks for a pass as soon as possible without waiting for it.
// Bursts coalesce into one pass.
func (r *Reconciler) Trigger() {
	select {
	case r.trigger <- struct{}{}:
	default:
	}
}

// SetSuspended pauses or resumes applying.
func (r *Reconciler) SetSuspended(v bool) {
	r.mu.Lock()
	r.suspended = v
	r.status.Suspended = v
	r.mu.Unlock()
}

// Branch is the watched branch, for the webhook.
func (r *Reconciler) Branch() string { return r.opts.Source.Options().Branch }

// Status returns a copy of the current status.
func (r *Reconciler) Status() SourceStatus {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.status
	s.History = append([]Attempt(nil), s.History...)
	s.Targets = nil
	for _, t := range r.targets {
		ts := t.status
		ts.History = append([]Attempt(nil), ts.History...)
		s.Targets = append(s.Targets, ts)
	}
	return s
}

// Run does a pass at once, then on every interval, trigger and due retry,
// until ctx is done.
func (r *Reconciler) Run(ctx context.Context) error {
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-timer.C:
		case <-r.trigger:
		}
		r.Pass(ctx)
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
		timer.Reset(r.nextWake())
	}
}

// nextWake is the time until the next poll or the earliest due retry.
func (r *Reconciler) nextWake() time.Duration {
	d := r.opts.Interval
	now := r.opts.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, t := range r.targets {
		if !t.nextTry.IsZero() {
			if w := t.nextTry.Sub(now); w < d {
				d = max(w, 10*time.Millisecond)
			}
		}
	}
	return d
}

// Result sums up a pass.
type Result struct {
	Head   string
	Source Outcome
	// Targets in the order given, each with its outcome.
	Targets []Outcome
}

// Exit codes of a one-shot pass, as "armoriq reconcile --once" returns them.
const (
	ExitReady       = 0 // every target runs the head commit
	ExitInvalid     = 1 // the commit is invalid, or a gateway refused it
	ExitUnreachable = 3 // the source or a target could not be reached
)

// ExitCode maps a pass's result to the one-shot exit code.
func (res Result) ExitCode() int {
	code := ExitReady
	if res.Source.Condition == Stalled {
		return ExitInvalid
	}
	if res.Source.Condition == Waiting {
		code = ExitUnreachable
	}
	for _, o := range res.Targets {
		switch o.Condition {
		case Stalled:
			return ExitInvalid
		case Waiting:
			code = ExitUnreachable
		}
	}
	return code
}

// Pass runs the steps once: ls-remote the head; for a commit not seen
// before fetch → verify → validate → compile → sign; then, for every target,
// read its status and push the desired bundle when it runs anything else.
func (r *Reconciler) Pass(ctx context.Context) Result {
	r.passMu.Lock()
	defer r.passMu.Unlock()
	var res Result

	head, art, src := r.sourceSteps(ctx)
	res.Head, res.Source = head, src

	r.mu.Lock()
	if art != nil {
		r.lastGood = art
	}
	desired := r.lastGood
	suspended := r.suspended
	r.mu.Unlock()

	res.Targets = make([]Outcome, len(r.targets))
	var wg sync.WaitGroup
	for i, t := range r.targets {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res.Targets[i] = r.targetSteps(ctx, t, desired, head, suspended)
		}()
	}
	wg.Wait()
	r.report(ctx, head, src, res.Targets)
	return res
}

// sourceSteps runs ls-remote, then the build steps for a new head. It
// returns the head and, when the head built, its artifact.
func (r *Reconciler) sourceSteps(ctx context.Context) (string, *Artifact, Outcome) {
	now := r.opts.Now()
	head, err := r.opts.Source.Head(ctx)
	if err != nil {
		o := Outcome{Condition: Waiting, Reason: ReasonSourceUnavailable, Message: err.Error()}
		r.log.Warn("source unavailable", "err", err)
		r.setSource(head, now, o, false)
		return "", nil, o
	}
	r.mu.Lock()
	b := r.built
	r.mu.Unlock()
	if b.revision == head {
		r.setSource(head, now, b.outcome, false)
		return head, b.art, b.outcome
	}
	art, o := r.build(ctx, head)
	if o.Condition == Waiting {
		r.setSource(head, now, o, false)
		return head, nil, o
	}
	r.mu.Lock()
	r.built = builtCommit{revision: head, art: art, outcome: o}
	r.mu.Unlock()
	r.setSource(head, now, o, true)
	if o.Condition == Stalled {
		r.log.Error("commit stalled", "revision", head, "reason", o.Reason, "message", o.Message, "diagnostics", len(o.Diagnostics))
	} else {
		r.log.Info("commit built", "revision", head, "sequence", art.Sequence, "rules", art.Rules)
	}
	return head, art, o
}

// build is the ordered list of a commit's steps: fetch, verify the commit's
// signature, then validate, compile and sign (BuildFunc).
func (r *Reconciler) build(ctx context.Context, head string) (*Artifact, Outcome) {
	c, err := r.opts.Source.Fetch(ctx, head)
	if err != nil {
		return nil, Outcome{Condition: Waiting, Reason: ReasonSourceUnavailable, Message: err.Error()}
	}
	if r.opts.TrustedSigners != "" {
		signer, err := c.VerifySignature(r.opts.TrustedSigners)
		if err != nil {
			return nil, Outcome{Condition: Stalled, Reason: ReasonUntrustedCommit, Message: err.Error()}
		}
		r.log.Info("commit signature verified", "revision", head, "signer", signer)
	}
	if c.ConfigErr != nil {
		so := r.opts.Source.Options()
		return nil, Outcome{Condition: Stalled, Reason: ReasonInvalidConfig, Message: c.ConfigErr.Error(),
			Diagnostics: []Diagnostic{{Severity: "error", File: so.Path, Summary: c.ConfigErr.Error()}}}
	}
	art, o := r.opts.Build(r.opts.Source.Options().Path, c.Config, head, c.Time)
	if o.Condition == "" {
		o = Outcome{Condition: Ready, Reason: ReasonBuilt}
	}
	if o.Condition == Ready && art == nil {
		return nil, Outcome{Condition: Stalled, Reason: ReasonCompileFailed, Message: "build produced no bundle"}
	}
	return art, o
}

func (r *Reconciler) setSource(head string, now time.Time, o Outcome, attempted bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if head != "" {
		r.status.Head = head
	}
	r.status.Branch = r.opts.Source.Options().Branch // resolved at the first Head
	r.status.Time = now
	r.status.Outcome = o
	if attempted {
		r.status.LastAttemptedRevision = head
		if o.Condition == Ready {
			r.status.LastAppliedRevision = head
		}
		r.status.History = pushHistory(r.status.History, Attempt{Revision: head, Time: now, Outcome: o}, r.opts.History)
	}
}

// targetSteps reads a target's status and, when it runs something other
// than the desired artifact, pushes it (with in-pass retries for transient
// failures) and reads the status back.
func (r *Reconciler) targetSteps(ctx context.Context, t *targetState, desired *Artifact, head string, suspended bool) Outcome {
	log := r.log.With("target", t.gw.name())
	for attempt := 0; ; attempt++ {
		o, pushed := r.targetOnce(ctx, t, desired, suspended)
		r.recordTarget(t, desired, o, pushed)
		if pushed {
			r.reportTo(ctx, t, desired, o)
		}
		if o.Condition == Waiting && pushed {
			log.Warn("target waiting", "reason", o.Reason, "message", o.Message, "attempt", t.status.Attempts)
		} else if o.Condition == Stalled && pushed {
			log.Error("target stalled", "reason", o.Reason, "message", o.Message)
		} else if pushed {
			log.Info("bundle applied", "revision", desired.Revision)
		}
		if o.Condition != Waiting || attempt >= r.opts.Retries || ctx.Err() != nil {
			return o
		}
		// Wait until the retry recordTarget scheduled, so the next attempt
		// is due and pushes again.
		r.mu.Lock()
		d := t.nextTry.Sub(r.opts.Now())
		r.mu.Unlock()
		d = max(d, time.Millisecond)
		select {
		case <-ctx.Done():
			return o
		case <-time.After(d):
		}
	}
}

// targetOnce is one attempt: status → (push → status). pushed says whether
// it tried to apply (only those count as attempts in the history).
func (r *Reconciler) targetOnce(ctx context.Context, t *targetState, desired *Artifact, suspended bool) (Outcome, bool) {
	st, err := t.gw.Status(ctx)
	if err != nil {
		return classify(err), false
	}
	r.mu.Lock()
	t.status.GatewayRevision, t.status.GatewayLastError = st.Revision, st.LastError
	due := t.nextTry.IsZero() || !r.opts.Now().Before(t.nextTry) || t.status.LastAttemptedRevision != revisionOf(desired)
	r.mu.Unlock()
	switch {
	case desired == nil:
		return Outcome{Condition: Waiting, Reason: ReasonNoArtifact, Message: "waiting for a commit of the source that builds"}, false
	case st.Revision == desired.Revision:
		return Outcome{Condition: Ready, Reason: ReasonUpToDate, Message: "running " + short(desired.Revision)}, false
	case suspended:
		return Outcome{Condition: Waiting, Reason: ReasonSuspended,
			Message: fmt.Sprintf("suspended: gateway runs %q, desired %s", short(st.Revision), short(desired.Revision))}, false
	case !due:
		r.mu.Lock()
		o := t.status.Outcome
		r.mu.Unlock()
		return o, false
	}
	if _, err := t.gw.Push(ctx, desired.Data); err != nil {
		return classify(err), true
	}
	st, err = t.gw.Status(ctx)
	if err != nil {
		return classify(err), true
	}
	r.mu.Lock()
	t.status.GatewayRevision, t.status.GatewayLastError = st.Revision, st.LastError
	r.mu.Unlock()
	if st.Revision != desired.Revision {
		return Outcome{Condition: Waiting, Reason: ReasonNotApplied,
			Message: fmt.Sprintf("pushed %s but the gateway reports %q", short(desired.Revision), st.Revision)}, true
	}
	return Outcome{Condition: Ready, Reason: ReasonApplied, Message: "applied " + short(desired.Revision)}, true
}

func revisionOf(a *Artifact) string {
	if a == nil {
		return ""
	}
	return a.Revision
}

// classify turns a gateway error into an outcome: the one place that decides
// what is transient.
func classify(err error) Outcome {
	var ae *APIError
	if errors.As(err, &ae) {
		switch {
		case ae.Transient():
			return Outcome{Condition: Waiting, Reason: ReasonGatewayUnavailable, Message: err.Error()}
		case ae.Status == 422:
			return Outcome{Condition: Stalled, Reason: ReasonVerificationFailed, Message: err.Error()}
		case ae.Code == "stale_bundle":
			return Outcome{Condition: Stalled, Reason: ReasonStaleBundle, Message: err.Error()}
		default:
			return Outcome{Condition: Stalled, Reason: ReasonRefused, Message: err.Error()}
		}
	}
	return Outcome{Condition: Waiting, Reason: ReasonUnreachable, Message: err.Error()}
}

func (r *Reconciler) recordTarget(t *targetState, desired *Artifact, o Outcome, pushed bool) {
	now := r.opts.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	t.status.Outcome = o
	t.status.Time = now
	rev := revisionOf(desired)
	if o.Condition == Ready {
		t.status.Attempts = 0
		t.nextTry = time.Time{}
		t.status.NextRetry = nil
		if rev != "" {
			t.status.LastAppliedRevision = rev
		}
	}
	if !pushed {
		if o.Condition == Waiting && o.Reason != ReasonSuspended {
			r.scheduleLocked(t, now)
		}
		return
	}
	t.status.LastAttemptedRevision = rev
	t.status.History = pushHistory(t.status.History, Attempt{Revision: rev, Time: now, Outcome: o}, r.opts.History)
	switch o.Condition {
	case Waiting:
		r.scheduleLocked(t, now)
	case Stalled:
		t.status.Attempts++
		t.nextTry = now.Add(r.opts.BackoffMax)
		nt := t.nextTry
		t.status.NextRetry = &nt
	}
}

func (r *Reconciler) scheduleLocked(t *targetState, now time.Time) {
	t.status.Attempts++
	t.nextTry = now.Add(r.backoff(t.status.Attempts - 1))
	nt := t.nextTry
	t.status.NextRetry = &nt
}

// backoff is the delay before retry n (0-based): exponential from
// BackoffBase, capped at BackoffMax, with the upper half jittered so
// reconcilers restarted together do not retry in step.
func (r *Reconciler) backoff(n int) time.Duration {
	d := r.opts.BackoffBase
	for i := 0; i < n && d < r.opts.BackoffMax; i++ {
		d *= 2
	}
	d = min(d, r.opts.BackoffMax)
	half := d / 2
	return half + rand.N(half+1)
}

// report tells the reporter about the head commit's outcome once per
// change of condition.
func (r *Reconciler) report(ctx context.Context, head string, src Outcome, targets []Outcome) {
	if r.opts.Reporter == nil || head == "" {
		return
	}
	o := src
	if src.Condition == Ready {
		o = Outcome{Condition: Ready, Reason: ReasonApplied, Message: fmt.Sprintf("applied to %d gateway(s)", len(targets))}
		for i, t := range targets {
			if t.Condition != Ready {
				o = t
				o.Message = r.targets[i].gw.name() + ": " + t.Message
				break
			}
		}
	}
	r.mu.Lock()
	if r.reported.Revision == head && r.reported.Condition == o.Condition {
		r.mu.Unlock()
		return
	}
	r.mu.Unlock()
	if err := r.opts.Reporter.ReportCommit(ctx, head, o); err != nil {
		r.log.Warn("reporting commit status (retried next pass)", "revision", head, "err", err)
		return
	}
	r.mu.Lock()
	r.reported = Attempt{Revision: head, Outcome: o}
	r.mu.Unlock()
}
