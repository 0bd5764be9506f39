package gateway

import (
	"context"
	"fmt"
	"net/http"
	"sort"
	"time"

	"github.com/armoriq/controlplane/runtime/store"
)

// readyTimeout bounds the store check of one /readyz request, well inside
// the probe timeouts of deploy/kubernetes (2 s).
const readyTimeout = time.Second

// handleHealthz answers that the process is alive and serving HTTP. It
// checks nothing else on purpose: a liveness probe that failed when the
// database did would restart every replica during a database outage.
func (s *Server) handleHealthz(w http.ResponseWriter, r *http.Request) error {
	writeJSON(w, http.StatusOK, map[string]any{"status": "alive"})
	return nil
}

// readiness is the body of GET /readyz.
type readiness struct {
	Ready bool `json:"ready"`
	// NotReady says what keeps this replica from serving, one line each.
	NotReady []string `json:"not_ready,omitempty"`
	// Degraded lists what does not keep it from serving but fails some
	// calls: upstream adapters that are down or failed; or a SQLite audit
	// journal whose records do not reach the database yet.
	Degraded []string `json:"degraded,omitempty"`
	// Store is "ok", "unreachable" or "refusing audit records".
	Store string `json:"store"`
	// BundleRevision is the active bundle's revision, "" with none.
	BundleRevision string `json:"bundle_revision"`
	// Adapters is each upstream server's adapter state, by server id.
	Adapters map[string]string `json:"adapters,omitempty"`
}

// handleReadyz answers 200 when this replica can serve calls: its store
// answers, a bundle is active, and every upstream's adapter has finished
// its first start. Otherwise 503, with the reasons in not_ready.
//
// An adapter that is down (its upstream does not answer, or its process
// crashed and a restart is pending) or failed (its configuration is wrong)
// is listed in degraded but keeps the replica ready: every replica reaches
// the same upstreams with the same configuration, so taking them all out
// of service would turn one unreachable MCP server into an outage of every
// other server. Calls to that server fail, and are audited as failed.
func (s *Server) handleReadyz(w http.ResponseWriter, r *http.Request) error {
	rd := s.readiness(r.Context())
	status := http.StatusOK
	if !rd.Ready {
		status = http.StatusServiceUnavailable
	}
	writeJSON(w, status, rd)
	return nil
}

func (s *Server) readiness(ctx context.Context) readiness {
	rd := readiness{Store: "ok"}
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	if _, err := s.store.BundleStatus(ctx); err != nil {
		rd.Store = "unreachable"
		rd.NotReady = append(rd.NotReady, "store: unreachable")
		s.log.Warn("readiness: the store does not answer", "error", err)
	}
	if js, ok := store.JournalState(s.store); ok {
		// A store that refuses audit appends refuses every call (no record,
		// no call); one whose journal cannot reach its database still
		// serves, until the journal is full.
		switch {
		case js.Refused != nil:
			if rd.Store == "ok" {
				rd.Store = "refusing audit records"
			}
			rd.NotReady = append(rd.NotReady, "store: audit records refused: "+js.Refused.Error())
		case js.ApplyError != nil:
			rd.Degraded = append(rd.Degraded, fmt.Sprintf("store: %d audit records not yet in the database: %v", js.Pending, js.ApplyError))
		}
	}
	if ab := s.active.Load(); ab != nil {
		rd.BundleRevision = ab.b.Manifest.Revision
	} else {
		rd.NotReady = append(rd.NotReady, "bundle: no policy bundle is active")
	}
	sts := s.cfg.Upstream.Status()
	sort.Slice(sts, func(i, j int) bool { return sts[i].ID < sts[j].ID })
	for _, st := range sts {
		if rd.Adapters == nil {
			rd.Adapters = make(map[string]string, len(sts))
		}
		rd.Adapters[st.ID] = st.State
		switch {
		case st.State == "up":
		case st.State == "starting" && st.Restarts == 0 && st.LastError == "":
			rd.NotReady = append(rd.NotReady, "adapter "+st.ID+": starting")
		default:
			rd.Degraded = append(rd.Degraded, "adapter "+st.ID+": "+st.State)
		}
	}
	rd.Ready = len(rd.NotReady) == 0
	return rd
}
