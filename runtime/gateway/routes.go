package gateway

import (
	"net/http"

	"github.com/armoriq/controlplane/runtime/store"
)

// routes lists every route the gateway serves.
func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	admin := func(h handlerFunc) http.Handler { return s.handle(s.authed(store.RoleAdmin, h)) }
	viewer := func(h handlerFunc) http.Handler { return s.handle(s.authed(store.RoleViewer, h)) }
	agent := func(h handlerFunc) http.Handler { return s.handle(s.authed(store.RoleAgent, h)) }

	// ArmorIQ SDK API (armoriq-compat).
	mux.Handle("GET /health", s.handle(s.handleHealth))
	// Probes (docs/operations.md): alive, and ready to serve calls.
	mux.Handle("GET /healthz", s.handle(s.handleHealthz))
	mux.Handle("GET /readyz", s.handle(s.handleReadyz))
	mux.Handle("POST /iap/sdk/token", agent(s.handleSDKToken))
	mux.Handle("POST /v1/tokens", agent(s.handleSDKToken))
	mux.Handle("POST /invoke", agent(s.handleInvoke))
	mux.Handle("POST /iap/sdk/register", admin(s.handleRegister))

	// Admin API (docs/api.md).
	mux.Handle("PUT /v1/bundle", admin(s.handlePutBundle))
	mux.Handle("GET /v1/bundle", viewer(s.handleGetBundle))
	mux.Handle("GET /v1/bundle/status", viewer(s.handleBundleStatus))
	mux.Handle("POST /v1/keys", admin(s.handleCreateKey))
	mux.Handle("GET /v1/keys", admin(s.handleListKeys))
	mux.Handle("DELETE /v1/keys/{id}", admin(s.handleRevokeKey))
	mux.Handle("DELETE /v1/tokens/{id}", admin(s.handleRevokeToken))
	mux.Handle("GET /v1/audit", viewer(s.handleListAudit))
	mux.Handle("GET /v1/audit/verify", viewer(s.handleVerifyAudit))
	mux.Handle("GET /v1/audit/export", viewer(s.handleExportAudit))

	// The human side (human.go): approvals, device logins, the console.
	mux.Handle("GET /v1/whoami", s.handle(s.anyRole(s.handleWhoami)))
	mux.Handle("DELETE /v1/keys/self", s.handle(s.anyRole(s.handleRevokeSelf)))
	mux.Handle("GET /v1/approvals", viewer(s.handleListApprovals))
	mux.Handle("GET /v1/approvals/{id}", viewer(s.handleGetApproval))
	mux.Handle("POST /v1/approvals/{id}/approve", viewer(s.handleDecideApproval(true)))
	mux.Handle("POST /v1/approvals/{id}/deny", viewer(s.handleDecideApproval(false)))
	mux.Handle("POST /delegation/request", agent(s.handleDelegationRequest))
	mux.Handle("GET /delegation/check-approved", agent(s.handleCheckApproved))
	mux.Handle("POST /delegation/mark-executed", agent(s.handleMarkExecuted))
	mux.Handle("GET /delegation/my-role", s.handle(s.anyRole(s.handleMyRole)))
	mux.Handle("POST /delegation/create", agent(s.handleDelegationCreate))
	mux.Handle("PUT /v1/reconciler/status", admin(s.handleReconcilerStatus))
	mux.Handle("GET /v1/devices", viewer(s.handleListDevices))
	mux.Handle("POST /v1/devices/{code}/approve", viewer(s.handleDecideDevice(true)))
	mux.Handle("POST /v1/devices/{code}/deny", viewer(s.handleDecideDevice(false)))
	mux.Handle("POST /auth/device/code", s.handle(s.handleDeviceCode))
	mux.Handle("POST /auth/device/token", s.handle(s.handleDeviceToken))
	if c := s.consoleHandler(); c != nil {
		mux.Handle("/console", c)
		mux.Handle("/console/", c)
	}

	// Public documents.
	mux.Handle("GET /.well-known/armoriq-keys.json", s.handle(s.handleKeysDocument))

	// MCP endpoint (docs/mcp.md): it authenticates itself, to answer 401
	// with the protected-resource metadata MCP clients look for.
	ep := s.newMCPEndpoint()
	mux.Handle("/mcp", ep)
	mux.Handle("GET /.well-known/oauth-protected-resource", s.handle(s.handleResourceMetadata))
	mux.Handle("GET /.well-known/oauth-protected-resource/mcp", s.handle(s.handleResourceMetadata))
	mux.Handle("GET /metrics", viewer(s.handleMetrics))

	mux.Handle("/", s.handle(func(w http.ResponseWriter, r *http.Request) error {
		return errorf(KindNotFound, "no route for %s %s", r.Method, r.URL.Path)
	}))
	return s.limitBodies(mux)
}
