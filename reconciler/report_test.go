package reconciler

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"sync"
	"testing"
)

// TestReportsToTheGateway: after each push the reconciler tells the gateway
// its state (for the console); a gateway without the route changes nothing.
func TestReportsToTheGateway(t *testing.T) {
	var mu sync.Mutex
	var reports []TargetReport
	f := newLoopFixture(t, 2, func(o *Options) {
		u, _ := url.Parse(o.Targets[0].URL)
		proxy := httputil.NewSingleHostReverseProxy(u)
		front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodPut && r.URL.Path == "/v1/reconciler/status" {
				var rep TargetReport
				json.NewDecoder(r.Body).Decode(&rep)
				mu.Lock()
				reports = append(reports, rep)
				mu.Unlock()
				w.Write([]byte(`{"ok":true}`))
				return
			}
			proxy.ServeHTTP(w, r)
		}))
		t.Cleanup(front.Close)
		o.Targets[0].URL = front.URL
	})
	c1 := f.repo.commit("first", map[string]string{"armoriq.yaml": policy("github/*")})
	res := f.rec.Pass(ctxT(t))
	if res.ExitCode() != ExitReady {
		t.Fatalf("pass: %+v", res)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(reports) != 1 || reports[0].Revision != c1 || reports[0].State != Ready || reports[0].Source == "" {
		t.Errorf("reports = %+v, want one Ready report of %s", reports, c1)
	}
}
