package gateway

import (
	"context"
	"database/sql"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/armoriq/controlplane/compiler/bundle"
	"github.com/armoriq/controlplane/runtime/store"
	"github.com/modelcontextprotocol/go-sdk/mcp"
)

func getReadyz(t *testing.T, g *testGateway) (int, readiness) {
	t.Helper()
	resp, data := g.send("GET", "/readyz", "", nil, nil)
	var rd readiness
	if err := json.Unmarshal(data, &rd); err != nil {
		t.Fatalf("/readyz body %s: %v", data, err)
	}
	return resp.StatusCode, rd
}

func TestHealthzAndReadyz(t *testing.T) {
	dbPath := filepath.Join(t.TempDir(), "armoriq.db")
	st, err := store.OpenSQLite(context.Background(), dbPath)
	if err != nil {
		t.Fatal(err)
	}
	g := adapterGateway(t, "1", st)

	// Alive without a key, a bundle or anything else.
	resp, data := g.send("GET", "/healthz", "", nil, nil)
	if resp.StatusCode != 200 || string(data) != "{\"status\":\"alive\"}\n" {
		t.Fatalf("/healthz = %d %s, want 200 alive", resp.StatusCode, data)
	}

	// No bundle yet: not ready, saying so.
	code, rd := getReadyz(t, g)
	if code != 503 || rd.Ready || !slices.Contains(rd.NotReady, "bundle: no policy bundle is active") || rd.Store != "ok" {
		t.Fatalf("/readyz without a bundle = %d %+v, want 503 naming the bundle", code, rd)
	}

	// A bundle whose one server's adapter comes up: ready.
	up := httptest.NewServer(mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return testMCPServer("web") }, nil))
	t.Cleanup(up.Close)
	web := bundle.Server{ID: "web", Transport: "http", URL: up.URL + "/", ToolPrefix: "never"}
	g.pushServers("r1", 1, allowAll(), web)
	deadline := time.Now().Add(10 * time.Second)
	for {
		code, rd = getReadyz(t, g)
		if code == 200 || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if code != 200 || !rd.Ready || rd.BundleRevision != "r1" || rd.Adapters["web"] != "up" || len(rd.NotReady) != 0 {
		t.Fatalf("/readyz with an adapter up = %d %+v, want 200 ready at r1", code, rd)
	}

	// A server whose custom adapter is misconfigured (its pinned digest
	// cannot match) is listed but keeps the replica ready.
	bad := bundle.Server{ID: "custom", Transport: "plugin", Path: filepath.Join(t.TempDir(), "missing-adapter"), SHA256: "00", ToolPrefix: "never"}
	g.pushServers("r2", 2, allowAll(), web, bad)
	deadline = time.Now().Add(10 * time.Second)
	for {
		code, rd = getReadyz(t, g)
		if (rd.Adapters["custom"] != "starting" && rd.Adapters["custom"] != "") || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if code != 200 || !rd.Ready || !slices.Contains(rd.Degraded, "adapter custom: "+rd.Adapters["custom"]) {
		t.Fatalf("/readyz with a failed adapter = %d %+v, want 200 listing it as degraded: a configuration error is not this replica's fault", code, rd)
	}

	// The database refuses an audit record the journal already holds: the
	// store refuses every append from then on, so this replica can serve
	// no call: not ready, saying why.
	db, err := sql.Open("sqlite", "file:"+dbPath+"?_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(`CREATE TRIGGER refuse BEFORE INSERT ON audit_log WHEN NEW.request_id = 'refuse-me'
		BEGIN SELECT RAISE(ABORT, 'emulated refusal'); END`); err != nil {
		t.Fatal(err)
	}
	if _, err := st.AppendAudit(context.Background(), store.AuditRecord{RequestID: "refuse-me", Decision: store.Blocked}); err != nil {
		t.Fatalf("AppendAudit: %v (journaled before the database sees it)", err)
	}
	deadline = time.Now().Add(10 * time.Second)
	for {
		code, rd = getReadyz(t, g)
		if code == 503 || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if code != 503 || rd.Store != "refusing audit records" || len(rd.NotReady) != 1 || !strings.Contains(rd.NotReady[0], "emulated refusal") {
		t.Fatalf("/readyz with audit records refused = %d %+v, want 503 saying why", code, rd)
	}

	// The store goes away: not ready; alive all the same.
	st.Close()
	code, rd = getReadyz(t, g)
	if code != 503 || rd.Store != "unreachable" || !slices.Contains(rd.NotReady, "store: unreachable") {
		t.Fatalf("/readyz with the store closed = %d %+v, want 503 naming the store", code, rd)
	}
	if resp, _ := g.send("GET", "/healthz", "", nil, nil); resp.StatusCode != 200 {
		t.Fatalf("/healthz with the store closed = %d, want 200", resp.StatusCode)
	}
}

func TestEnsureAdminKey(t *testing.T) {
	ctx := context.Background()
	g := newTestGateway(t, nil)
	full, _, _ := store.GenerateAPIKey()
	created, err := g.srv.EnsureAdminKey(ctx, full)
	if err != nil || !created {
		t.Fatalf("EnsureAdminKey(new) = %v, %v; want created", created, err)
	}
	g.do("GET", "/v1/keys", full, nil, 200, nil) // it is an admin key
	if created, err := g.srv.EnsureAdminKey(ctx, full); err != nil || created {
		t.Fatalf("EnsureAdminKey(again) = %v, %v; want accepted, not created", created, err)
	}

	id, _, _ := store.ParseAPIKey(full)
	other, _, _ := store.GenerateAPIKey()
	sameID := "ak_live_" + id + "_" + other[len(other)-43:] // same id, another secret
	agent := g.createKey("agent2", "agent")
	tests := []struct{ name, key, want string }{
		{"not a key", "hunter2", "not an API key"},
		{"same id, other secret", sameID, "another key with id " + id},
		{"agent key", agent, "not admin"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := g.srv.EnsureAdminKey(ctx, tt.key)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("EnsureAdminKey = %v, want an error containing %q", err, tt.want)
			}
			if secret := tt.key[max(0, len(tt.key)-20):]; strings.Contains(err.Error(), secret) {
				t.Fatalf("error %q contains the key", err)
			}
		})
	}
	g.do("DELETE", "/v1/keys/"+id, g.adminKey, nil, 200, nil)
	if _, err := g.srv.EnsureAdminKey(ctx, full); err == nil || !strings.Contains(err.Error(), "was revoked") {
		t.Fatalf("EnsureAdminKey(revoked) = %v, want refused: a file never resurrects a key", err)
	}
}
