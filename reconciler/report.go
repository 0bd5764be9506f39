package reconciler

import (
	"context"
	"encoding/json"
	"time"
)

// TargetReport is what the reconciler tells a gateway about itself after
// each attempt at that gateway, for the gateway's console. A gateway that
// does not know the route (an older one) answers 404; the report is best
// effort and never changes an outcome.
type TargetReport struct {
	Source   string    `json:"source"`
	Revision string    `json:"revision"`
	State    Condition `json:"state"`
	Reason   string    `json:"reason,omitempty"`
	Message  string    `json:"message,omitempty"`
	At       time.Time `json:"at"`
}

// Report sends rep to the gateway (PUT /v1/reconciler/status).
func (g *Gateway) Report(ctx context.Context, rep TargetReport) error {
	body, err := json.Marshal(rep)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	return g.do(ctx, "PUT", "/v1/reconciler/status", "application/json", body, nil)
}

// report tells the target what the reconciler last did there; errors are
// only logged at debug level.
func (r *Reconciler) reportTo(ctx context.Context, t *targetState, desired *Artifact, o Outcome) {
	rep := TargetReport{Source: r.opts.Source.String(), Revision: revisionOf(desired), State: o.Condition, Reason: o.Reason, Message: o.Message, At: r.opts.Now().UTC()}
	if err := t.gw.Report(ctx, rep); err != nil {
		r.log.Debug("reporting to the gateway failed", "target", t.gw.name(), "err", err)
	}
}
