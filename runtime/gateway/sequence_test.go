package gateway

import (
	"strings"
	"testing"
)

// TestBundleSequence: a bundle whose sequence is lower than the active
// one's is refused (409 stale_bundle), a sequence-0 bundle too when a
// sequenced one is active; re-pushing the active revision stays
// idempotent; an equal sequence is accepted; ?force=rollback overrides.
func TestBundleSequence(t *testing.T) {
	g := newTestGateway(t, nil)
	push := func(rev string, seq int64, query string, want int) map[string]any {
		t.Helper()
		var out map[string]any
		g.do("PUT", "/v1/bundle"+query, g.adminKey, g.bundleBytes(rev, seq, testPolicy(), g.signKey, g.signID), want, &out)
		return out
	}
	active := func() (string, int64) {
		t.Helper()
		var st bundleStatus
		g.do("GET", "/v1/bundle/status", g.adminKey, nil, 200, &st)
		return st.Revision, st.Sequence
	}

	// The first bundle is taken whatever its sequence.
	push("unsequenced", 0, "", 200)
	push("rev-a", 1790000000, "", 200)

	tests := []struct {
		name    string
		rev     string
		seq     int64
		query   string
		status  int
		inError string
		active  string
	}{
		{"unsequenced after a sequenced one", "unsequenced-2", 0, "", 409, "has no sequence (0) and cannot be ordered after the active revision rev-a (sequence 1790000000)", "rev-a"},
		{"older", "rev-old", 1789999999, "", 409, "is older than the active revision rev-a (sequence 1790000000)", "rev-a"},
		{"same revision again, another sequence: unchanged", "rev-a", 1, "", 200, "", "rev-a"},
		{"equal sequence, other revision", "rev-b", 1790000000, "", 200, "", "rev-b"},
		{"newer", "rev-c", 1790000100, "", 200, "", "rev-c"},
		{"older again", "rev-b", 1790000000, "", 409, "older than the active revision rev-c", "rev-c"},
		{"rollback forced", "rev-b", 1790000000, "?force=rollback", 200, "", "rev-b"},
		{"unsequenced forced", "unsequenced-3", 0, "?force=rollback", 200, "", "unsequenced-3"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := push(tt.rev, tt.seq, tt.query, tt.status)
			if tt.status != 200 {
				e, _ := out["error"].(map[string]any)
				if e["code"] != "stale_bundle" || !strings.Contains(out["message"].(string), tt.inError) {
					t.Errorf("push %s (sequence %d): %v; want stale_bundle with %q", tt.rev, tt.seq, out, tt.inError)
				}
			}
			if rev, _ := active(); rev != tt.active {
				t.Errorf("after pushing %s (sequence %d): active %s, want %s", tt.rev, tt.seq, rev, tt.active)
			}
		})
	}
}
