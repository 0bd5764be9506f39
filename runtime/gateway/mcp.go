package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"sync"

	"github.com/armoriq/controlplane/runtime/identity"
	"github.com/armoriq/controlplane/runtime/store"
	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// The MCP endpoint (/mcp) serves MCP clients over Streamable HTTP, both
// protocol eras on one URL: the stateless 2026-07-28 protocol, and the
// initialize handshake of 2025-11-25 and earlier with a session id.
//
// The official Go SDK does the protocol work (version negotiation, SSE and
// JSON answers, header checks, DNS-rebinding protection) in its stateless
// mode; the gateway adds what the SDK keeps in memory in its stateful mode,
// the legacy session, as a sealed id (session.go), so sessions survive a
// restart or a change of replica. The SDK server the handler serves is one
// per catalogue (the active bundle's servers, their tools, resources and
// prompts), rebuilt when the bundle or an upstream changes; tools/call runs
// the same checks as POST /invoke and writes the same audit record.

// Headers of the MCP endpoint.
const (
	headerSessionID = "Mcp-Session-Id"
	headerProtocol  = "Mcp-Protocol-Version"
	// headerUser names the end user an agent key acts for, as the SDK's
	// user_email does on /invoke.
	headerUser = "X-Armoriq-User"
)

// firstStatelessVersion is the first protocol version without sessions.
const firstStatelessVersion = "2026-07-28"

// latestLegacyVersion is what a legacy client asking for an unknown
// version is offered.
const latestLegacyVersion = "2025-11-25"

// mcpEndpoint is the /mcp handler and its state.
type mcpEndpoint struct {
	s       *Server
	sdk     http.Handler
	sealer  *sessionSealer
	cat     catalogs
	metrics *mcpMetrics
	pending sync.Map // server-request id → *pendingRequest (mcp_fast.go)
}

// newMCPEndpoint builds the endpoint for routes.
func (s *Server) newMCPEndpoint() *mcpEndpoint {
	ep := &mcpEndpoint{s: s, sealer: s.newSessionSealer(), metrics: s.mcpMetrics}
	ep.cat.ep = ep
	ep.sdk = mcp.NewStreamableHTTPHandler(ep.server, &mcp.StreamableHTTPOptions{
		// The SDK logs each request at info and client mistakes at error:
		// too loud for a gateway, which logs what it decides itself.
		Stateless:                    true,
		MaxRequestBodyBytes:          s.cfg.Limits.MaxBody,
		PropagateRequestCancellation: true,
	})
	return ep
}

// mcpCallCtx is what the HTTP layer learned about a request, for the MCP
// handlers below it.
type mcpCallCtx struct {
	caller caller
	user   string // the end user policies are decided for
	named  bool   // user came from the X-Armoriq-User header, not the key
	source string // where user came from (store.AuditRecord.UserSource)
	client string // the MCP client's own name (clientInfo.name): recorded, never trusted
	reqID  string
	asks   string // sessionState.Asks of a legacy session
}

type mcpCallKey struct{}

// mcpContext is an /mcp request's context: one node holding the call's
// mcpCallCtx, found under mcpCallKey, and its caller, under callerKey,
// where two context values would take three allocations per request.
type mcpContext struct {
	context.Context
	mc *mcpCallCtx
}

func (c *mcpContext) Value(key any) any {
	switch key.(type) {
	case callerKey:
		return &c.mc.caller
	case mcpCallKey:
		return c.mc
	}
	return c.Context.Value(key)
}

func mcpCallFrom(ctx context.Context) *mcpCallCtx {
	m, _ := ctx.Value(mcpCallKey{}).(*mcpCallCtx)
	return m
}

// server returns the SDK server of the current catalogue.
func (ep *mcpEndpoint) server(r *http.Request) *mcp.Server {
	c := ep.cat.current(r.Context())
	return c.server
}

func (ep *mcpEndpoint) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s := ep.s
	ep.metrics.requests.Add(1)
	if rebound(r) {
		// The SDK's DNS-rebinding protection, applied here too because the
		// fast path answers before the SDK sees the request.
		http.Error(w, fmt.Sprintf("Forbidden: invalid Host header %q", r.Host), http.StatusForbidden)
		return
	}
	c, err := s.authenticate(r.Context(), r)
	if err != nil {
		ep.unauthorized(w, r, asError(err))
		return
	}
	if !roleAllows(c.Role, store.RoleAgent) {
		writeError(w, errorf(KindForbidden, "API key %s has role %s; /mcp needs agent or admin", c.KeyID, c.Role))
		return
	}
	mc := &mcpCallCtx{caller: c, user: c.Name, source: sourceAPIKey, reqID: requestID(r)}
	if p := c.Principal; p != nil {
		mc.source = sourceAccessTokenClient
		if p.User != "" {
			mc.user, mc.source = p.User, sourceAccessToken
		}
	}
	w.Header().Set(headerRequestID, mc.reqID)
	if h := r.Header.Get(headerUser); h != "" {
		u, err := identity.User(headerUser, h)
		if err != nil {
			writeError(w, errorf(KindInvalid, "%v", err))
			return
		}
		// Two headers naming two users: refused, as two users in one
		// /invoke call are (a proxy may read the other one).
		for _, v := range r.Header.Values(headerUser)[1:] {
			if u2, err := identity.User(headerUser, v); err != nil || u2 != u {
				writeError(w, errorf(KindInvalid, "%s is sent more than once, naming different users", headerUser))
				return
			}
		}
		switch {
		case c.Principal != nil && c.Principal.User != "":
			// The identity provider said who the user is; a header
			// cannot say otherwise.
			if u != "" && u != c.Principal.User {
				writeError(w, errorf(KindForbidden, "%s names %q, but the access token is %q's: the end user is the token's", headerUser, u, c.Principal.User))
				return
			}
		case c.Principal != nil:
			writeError(w, errorf(KindForbidden, "%s is not accepted with an access token: the end user is the token's user claim", headerUser))
			return
		case c.Role != store.RoleAgent:
			writeError(w, errorf(KindForbidden, "%s is accepted from agent keys only", headerUser))
			return
		case !c.AssertUsers:
			writeError(w, errorf(KindForbidden, "API key %s may not assert end users: %s is accepted only from keys created with --assert-users (a service acting for its users)", c.KeyID, headerUser))
			return
		case u != "":
			mc.user, mc.named, mc.source = u, true, headerUser
		}
	}

	sid := r.Header.Get(headerSessionID)
	var st sessionState
	if sid != "" {
		st, err = ep.sealer.open(sid, s.now())
		if err != nil || st.KeyID != c.KeyID {
			// 404 tells a client to initialize a new session.
			http.Error(w, "session not found", http.StatusNotFound)
			return
		}
		mc.client, mc.asks = st.Client, st.Asks
		if r.Header.Get(headerProtocol) == "" && st.Protocol != "" {
			r.Header.Set(headerProtocol, st.Protocol)
		}
		if r.Method == http.MethodDelete {
			// Nothing is held for the session: forgetting it is the
			// client's part. The id expires after sessionTTL.
			w.WriteHeader(http.StatusNoContent)
			return
		}
	}

	var body []byte
	batch := 0 // the number of requests of a JSON-RPC batch
	if r.Method == http.MethodPost {
		body, err = readBody(r) // bounded by limitBodies, read into one buffer
		r.Body.Close()
		if err != nil {
			writeError(w, asError(err))
			return
		}
		batch = batchSize(body)
		if batch > s.cfg.Limits.MaxBatch {
			batchTooLarge(w, batch, s.cfg.Limits.MaxBatch)
			return
		}
	}

	// A legacy initialize gets a sealed session id.
	if r.Method == http.MethodPost && sid == "" {
		if init, ok := parseInitialize(body); ok {
			st = sessionState{KeyID: c.KeyID, Protocol: negotiate(init.ProtocolVersion), Issued: s.now().Unix()}
			if init.ClientInfo != nil {
				if err := identity.Check("clientInfo.name", init.ClientInfo.Name, identity.MaxClient); err != nil {
					writeError(w, errorf(KindInvalid, "%v", err))
					return
				}
				st.Client = init.ClientInfo.Name
			}
			if init.Capabilities.Sampling != nil {
				st.Asks += "s"
			}
			if init.Capabilities.Elicitation != nil {
				st.Asks += "e"
			}
			mc.client = st.Client
			if st.Protocol < firstStatelessVersion {
				id, err := ep.sealer.seal(st)
				if err != nil {
					writeError(w, internal(err, "sealing the MCP session"))
					return
				}
				w = &sessionWriter{ResponseWriter: w, id: id}
			}
		}
	}

	if body != nil && ep.answered(c.KeyID, body) {
		// The client's answer to a request the gateway relayed from an
		// upstream during one of this key's calls. It starts nothing, so it
		// takes no slot of the key's concurrency limit: the call waiting
		// for it holds one, and with a limit of 1 the answer could never
		// get in.
		w.WriteHeader(http.StatusAccepted)
		return
	}
	ctx, cancel := context.WithCancelCause(&mcpContext{Context: r.Context(), mc: mc})
	defer cancel(nil)
	// Each request of a batch runs, so each takes a slot of the key's
	// concurrency limit: a batch cannot multiply what one key runs.
	done, ok := s.inflight.acquire(c.KeyID, s.cfg.Limits.MaxConcurrentPerKey, batch, cancel)
	if !ok {
		writeError(w, tooManyCalls(c.KeyID, s.cfg.Limits.MaxConcurrentPerKey))
		return
	}
	defer done()
	if body != nil && ep.fastToolCall(ctx, w, r, body) {
		return
	}
	if body != nil {
		r.Body = io.NopCloser(bytes.NewReader(body)) // read again by the SDK
	}
	ep.sdk.ServeHTTP(w, r.WithContext(ctx))
}

// rebound reports a request that reached a loopback address under a
// non-loopback Host: the signature of a DNS-rebinding attack from a
// browser. A reverse proxy on the same host must send a loopback Host.
func rebound(r *http.Request) bool {
	la, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr)
	return ok && la != nil && isLoopback(la.String()) && !isLoopback(r.Host)
}

func isLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		host = strings.Trim(addr, "[]")
	}
	if host == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

// unauthorized answers a request without a valid key, pointing the client
// at the protected-resource metadata (RFC 9728) as MCP authorization asks.
func (ep *mcpEndpoint) unauthorized(w http.ResponseWriter, r *http.Request, e *Error) {
	v := e.Challenge
	if v == "" && presentedKey(r) != "" {
		v = `Bearer error="invalid_token"`
	}
	if e.Kind == KindRevoked {
		w.Header().Set("X-Armoriq-Revoked", "true")
	}
	status, code := statusOf(e.Kind)
	if status == http.StatusUnauthorized || e.Challenge != "" {
		w.Header().Set("WWW-Authenticate", withResourceMetadata(r, v))
	}
	writeJSON(w, status, errorBody{Message: e.Message, Error: errorDetail{Code: code, Message: e.Message}})
}

// handleResourceMetadata serves the RFC 9728 protected-resource metadata
// of /mcp: the authorization servers are the issuers of the active
// bundle's identity providers, and the scopes those providers require, so
// a client following the MCP authorization spec finds where to sign in.
// With none configured the list is empty: API keys come from the gateway's
// admin API, not from an OAuth server.
func (s *Server) handleResourceMetadata(w http.ResponseWriter, r *http.Request) error {
	servers, scopes := []string{}, []string{}
	for _, p := range s.oauth.Providers() {
		servers = appendUnique(servers, p.Issuer)
		for _, sc := range p.RequiredScopes {
			scopes = appendUnique(scopes, sc)
		}
	}
	md := map[string]any{
		"resource":                 baseURL(r) + "/mcp",
		"authorization_servers":    servers,
		"bearer_methods_supported": []string{"header"},
		"resource_name":            "armoriq gateway MCP endpoint",
	}
	if len(scopes) > 0 {
		md["scopes_supported"] = scopes
	}
	w.Header().Set("Access-Control-Allow-Origin", "*")
	writeJSON(w, http.StatusOK, md)
	return nil
}

// baseURL is the gateway's address as the client reached it.
func baseURL(r *http.Request) string {
	scheme := "http"
	if r.TLS != nil || strings.EqualFold(r.Header.Get("X-Forwarded-Proto"), "https") {
		scheme = "https"
	}
	return scheme + "://" + r.Host
}

// initializeParams is the part of an initialize request the gateway reads.
type initializeParams struct {
	ProtocolVersion string `json:"protocolVersion"`
	Capabilities    struct {
		Sampling    json.RawMessage `json:"sampling"`
		Elicitation json.RawMessage `json:"elicitation"`
	} `json:"capabilities"`
	ClientInfo *struct {
		Name string `json:"name"`
	} `json:"clientInfo"`
}

// parseInitialize reports whether body is an initialize request.
func parseInitialize(body []byte) (initializeParams, bool) {
	var p initializeParams
	if !bytes.Contains(body, []byte(`"initialize"`)) {
		return p, false
	}
	var msg struct {
		Method string           `json:"method"`
		Params initializeParams `json:"params"`
	}
	if json.Unmarshal(body, &msg) != nil || msg.Method != "initialize" {
		return p, false
	}
	return msg.Params, true
}

// negotiate is the version the SDK answers a legacy initialize with.
func negotiate(asked string) string {
	if asked < firstStatelessVersion && slices.Contains(supportedVersions, asked) {
		return asked
	}
	return latestLegacyVersion
}

// sessionWriter adds the sealed session id to a successful initialize.
type sessionWriter struct {
	http.ResponseWriter
	id   string
	done bool
}

func (w *sessionWriter) WriteHeader(status int) {
	if !w.done {
		w.done = true
		if status == http.StatusOK {
			w.Header().Set(headerSessionID, w.id)
		}
	}
	w.ResponseWriter.WriteHeader(status)
}

func (w *sessionWriter) Write(b []byte) (int, error) {
	if !w.done {
		w.WriteHeader(http.StatusOK)
	}
	return w.ResponseWriter.Write(b)
}

func (w *sessionWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (w *sessionWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
