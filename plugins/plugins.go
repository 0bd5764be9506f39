// Package plugins is the adapter contract between the armoriq gateway and
// the processes that reach upstream MCP servers, and the host that runs them.
//
// An adapter is a separate process started with hashicorp/go-plugin and
// spoken to over gRPC. The contract has five versions, negotiated by
// go-plugin: 1 (proto/adapter.proto, the Adapter interface), 2
// (proto/v2/adapter.proto, AdapterV2: a request's _meta and multi-round-trip
// answers, and the upstream's log messages and server-to-client requests
// during a tool call), 3 (proto/v3/adapter.proto, AdapterRaw: a
// tools/call forwarded as the bytes of its params, with no MCP codec in the
// adapter), 4 (every raw call on one Raw.Session stream) and 5 (raw calls
// on the adapter's own unix socket in frames of our own, hop.go). It carries MCP payloads as the JSON the MCP
// specification defines, so an adapter and the gateway agree on what a
// tool, a result or a prompt is without this package restating the MCP
// schema.
//
// The package holds three things: the contract (Adapter, ServerConfig, the
// handshake and the gRPC glue, Serve for an adapter's main), and the Host
// that starts, supervises and calls adapters for the gateway. The built-in
// adapters live in plugins/mcpadapter; the armoriq binary serves them when
// the host re-executes it as "armoriq adapter http|stdio".
//
// This package imports nothing else of armoriq: the runtime maps its bundle's
// server catalogue to ServerConfig values.
package plugins

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Adapter is one upstream MCP server as the gateway sees it. An adapter
// process implements it and passes it to Serve; the host's side of the gRPC
// connection implements it too, and Host.Get returns one that adds the
// host's timeouts, concurrency limit and crash handling.
//
// MCP results travel as JSON: ListTools returns an MCP ListToolsResult,
// CallTool a CallToolResult, and so on. When the upstream answers with a
// JSON-RPC error the method returns an *RPCError.
type Adapter interface {
	// Configure gives the adapter its server's configuration, with
	// credentials already resolved. The host calls it once, right after the
	// process starts and before any other method.
	Configure(ctx context.Context, cfg ServerConfig) error
	// ListTools returns one page of the upstream's tools/list result.
	ListTools(ctx context.Context, cursor string) (json.RawMessage, error)
	// CallTool calls a tool. args is a JSON object (nil means none).
	// progress, if not nil, receives the upstream's progress
	// notifications for this call, in order, before CallTool returns.
	CallTool(ctx context.Context, name string, args json.RawMessage, progress func(Progress)) (json.RawMessage, error)
	// ListResources returns one page of resources/list.
	ListResources(ctx context.Context, cursor string) (json.RawMessage, error)
	// ReadResource returns the resources/read result for uri.
	ReadResource(ctx context.Context, uri string) (json.RawMessage, error)
	// ListPrompts returns one page of prompts/list.
	ListPrompts(ctx context.Context, cursor string) (json.RawMessage, error)
	// GetPrompt returns the prompts/get result.
	GetPrompt(ctx context.Context, name string, args map[string]string) (json.RawMessage, error)
	// Health reports whether the upstream server answers.
	Health(ctx context.Context) error
}

// AdapterV2 is an Adapter that speaks contract version 2: its requests
// carry what an MCP request carries besides its name and arguments (the
// client's _meta; inputResponses and requestState on a multi-round-trip
// retry, SEP-2322), and its tool calls relay the upstream's log messages
// and server-to-client requests as well as progress.
//
// An adapter implements it to get these features; one that implements only
// Adapter is served under both contract versions all the same, without
// them. What Host.Get returns implements it too, and falls back to the
// Adapter methods when the adapter process speaks only version 1.
type AdapterV2 interface {
	Adapter
	// CallToolV2 calls a tool. The hooks in ev, where not nil, receive
	// what the upstream sends during the call, in order, before
	// CallToolV2 returns.
	CallToolV2(ctx context.Context, call *ToolCall, ev *CallEvents) (json.RawMessage, error)
	// GetPromptV2 is GetPrompt with the request's extras.
	GetPromptV2(ctx context.Context, name string, args map[string]string, x *RequestExtra) (json.RawMessage, error)
	// ReadResourceV2 is ReadResource with the request's extras.
	ReadResourceV2(ctx context.Context, uri string, x *RequestExtra) (json.RawMessage, error)
}

// RequestExtra is what an MCP request carries besides its own parameters,
// as MCP JSON, passed on to the upstream unchanged.
type RequestExtra struct {
	// Meta is the request's _meta object (empty for none): the client's
	// capabilities, name and protocol version under 2026-07-28, and any
	// other key the client set.
	Meta json.RawMessage
	// InputResponses is the inputResponses object of a retry after an
	// input_required result (SEP-2322), empty for none.
	InputResponses json.RawMessage
	// RequestState is the requestState the client echoes on that retry.
	RequestState string
}

// ToolCall is a tools/call as contract version 2 carries it.
type ToolCall struct {
	Name      string
	Arguments json.RawMessage // a JSON object; empty means none
	RequestExtra
}

// CallEvents receives what the upstream sends while it serves a tool
// call. A nil hook drops that kind of event (a nil Request refuses the
// upstream's requests).
type CallEvents struct {
	Progress func(Progress)
	Log      func(LogMessage)
	// Request relays a server-to-client request (sampling/createMessage,
	// elicitation/create, roots/list) to the client the call came from and
	// returns its result as JSON, or an *RPCError the client answered with.
	Request func(ctx context.Context, method string, params json.RawMessage) (json.RawMessage, error)
}

// LogMessage is one notifications/message the upstream sent during a call.
type LogMessage struct {
	Level  string // debug, info, notice, warning, error, critical, alert, emergency
	Logger string // may be empty
	Data   json.RawMessage
}

// Transports an upstream server can be reached by.
const (
	TransportHTTP   = "http"   // built-in: Streamable HTTP
	TransportStdio  = "stdio"  // built-in: spawn a command, MCP over stdin/stdout
	TransportPlugin = "plugin" // a custom adapter binary pinned by sha256
)

// ServerConfig is one upstream MCP server. The host receives it with $VAR
// and ${VAR} references in Headers and Env values, and resolves them each
// time it configures an adapter process (at start and at every restart), so
// resolved secrets live only in the adapter, never in a bundle or in the
// host's state.
type ServerConfig struct {
	ID        string
	Transport string // TransportHTTP, TransportStdio or TransportPlugin
	URL       string // http
	Command   string // stdio
	Args      []string
	Env       map[string]string // stdio: added to the command's environment
	// Headers are sent with every upstream HTTP request, for example
	// "Authorization": "Bearer $GITHUB_TOKEN".
	Headers map[string]string
	// Path and SHA256 name a custom adapter binary and its pinned
	// hex-encoded SHA-256 digest (TransportPlugin).
	Path   string
	SHA256 string
	// Timeout bounds each call; zero means the host's default.
	Timeout time.Duration
	// MaxConcurrent bounds the calls in flight; zero means the host's default.
	MaxConcurrent int
	// Protocol caps the MCP protocol version the adapter offers its
	// upstream (one of ProtocolVersions); empty means the newest first.
	// Below FirstStatelessVersion the adapter opens its one session with
	// the initialize handshake at that version, as with an upstream that
	// speaks nothing newer. Only the built-in adapters honour it: the host
	// refuses to run a pinned server on a custom one (TransportPlugin),
	// which may have been built before the field and ignore it.
	Protocol string
}

// Progress is one progress notification of a tool call.
type Progress struct {
	Progress float64
	Total    float64 // zero when unknown
	Message  string
}

// RPCError is a JSON-RPC error the upstream MCP server answered with, such
// as an unknown tool or invalid arguments. It is the upstream's answer, not
// a failure of the adapter.
type RPCError struct {
	Code    int64
	Message string
	Data    json.RawMessage
}

func (e *RPCError) Error() string {
	return fmt.Sprintf("upstream error %d: %s", e.Code, e.Message)
}

// Errors the host's adapters return, for errors.Is. The messages around
// them name the server and what happened.
var (
	// ErrUnknownServer: no adapter runs for this server id.
	ErrUnknownServer = errors.New("unknown server")
	// ErrUnavailable: the adapter is down, restarting, or crashed during
	// the call.
	ErrUnavailable = errors.New("adapter unavailable")
	// ErrTimeout: the call did not finish within the adapter's timeout.
	ErrTimeout = errors.New("adapter call timed out")
	// ErrBusy: the context ended while waiting for one of the adapter's
	// concurrent call slots.
	ErrBusy = errors.New("adapter busy")
)
