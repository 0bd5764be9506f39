package plugins

import (
	"bytes"
	"context"
	"encoding/json"
	"slices"
)

// AdapterRaw is an adapter that forwards a tools/call as bytes (contract
// version 3): the host hands it the JSON-RPC params exactly as the upstream
// must see them and gets the upstream's result as the upstream wrote it,
// with no MCP codec run over the call in between. The built-in adapters
// implement it; plugins.Serve offers contract version 3 only to an adapter
// that does.
type AdapterRaw interface {
	AdapterV2
	// CallRaw forwards call. The hooks in ev, where not nil, receive what
	// the upstream sends during the call, in order, before CallRaw
	// returns. A JSON-RPC error the upstream answered with is an *RPCError,
	// returned with a RawResult that says the path and version all the same.
	CallRaw(ctx context.Context, call *RawCall, ev *CallEvents) (*RawResult, error)
}

// RawCall is a request forwarded as bytes.
type RawCall struct {
	Method string // the JSON-RPC method: "tools/call"
	Name   string // the tool's name, as in Params (for the Mcp-Name header)
	// Params is the JSON-RPC params object as the upstream must see it:
	// name, arguments, and _meta built with UpstreamMeta for
	// ProtocolVersion.
	Params json.RawMessage
	// ProtocolVersion is the upstream protocol version Params' _meta was
	// built for (the one the adapter last reported), "" when unknown. An
	// adapter whose session speaks another version rebuilds the _meta.
	ProtocolVersion string
	// ProgressToken is the progressToken Params._meta carries when the
	// caller wants the upstream's progress notifications (ev.Progress).
	ProgressToken string
	// Traceparent and Tracestate are the call's W3C trace context (also in
	// Params._meta), which an HTTP upstream gets as headers.
	Traceparent, Tracestate string
	// Legacy says the call's client speaks the initialize handshake (a
	// protocol version before FirstStatelessVersion), or none at all (the
	// SDKs' POST /invoke): it can answer a server request during the call
	// (CallEvents.Request) but not an input_required result. An adapter
	// that can keeps an upstream session of that era for such calls
	// (ProtocolVersion is then LegacyVersion, or the upstream's own when
	// it speaks nothing newer); the built-in HTTP adapter does.
	Legacy bool
}

// RawResult is the upstream's answer to a RawCall.
type RawResult struct {
	Result json.RawMessage // the JSON-RPC result, as the upstream wrote it
	// Path says how the adapter forwarded the call: PathRaw, or PathSDK
	// when it fell back to its MCP client (a tool with x-mcp-header
	// parameters, a transport without a raw path, an adapter that speaks
	// contract version 2 or older).
	Path string
	// ProtocolVersion is the protocol version of the upstream session that
	// served the call: the host builds the next call's _meta for it.
	ProtocolVersion string
}

// The paths a call takes through an adapter (RawResult.Path).
const (
	PathRaw = "raw" // forwarded as bytes
	PathSDK = "sdk" // through the adapter's MCP client
)

// Keys of a 2026-07-28 request's _meta that describe the protocol envelope
// of one hop (SEP-2575).
const (
	MetaProtocolVersion    = "io.modelcontextprotocol/protocolVersion"
	MetaClientInfo         = "io.modelcontextprotocol/clientInfo"
	MetaClientCapabilities = "io.modelcontextprotocol/clientCapabilities"
	MetaLogLevel           = "io.modelcontextprotocol/logLevel"
)

// FirstStatelessVersion is the first MCP protocol version without the
// initialize handshake (SEP-2575): every request carries its envelope in
// _meta.
const FirstStatelessVersion = "2026-07-28"

// LegacyVersion is the protocol version a legacy call (RawCall.Legacy)
// asks of an upstream that speaks both eras: the newest with the initialize
// handshake.
const LegacyVersion = "2025-11-25"

// protocolVersions are the MCP protocol versions the built-in adapters
// speak (those of go-sdk v1.8.0), newest first.
var protocolVersions = [...]string{FirstStatelessVersion, LegacyVersion, "2025-06-18", "2025-03-26", "2024-11-05"}

// ProtocolVersions returns the MCP protocol versions the built-in adapters
// speak, newest first: what ServerConfig.Protocol may name.
func ProtocolVersions() []string { return slices.Clone(protocolVersions[:]) }

// KnownProtocol reports whether v is one of ProtocolVersions.
func KnownProtocol(v string) bool { return slices.Contains(protocolVersions[:], v) }

// SameEnvelope reports whether params whose _meta was built with
// UpstreamMeta for protocol version built can go to a session speaking pv
// as they are: under the initialize handshake the envelope is the same for
// every version; under 2026-07-28 it names the version.
func SameEnvelope(built, pv string) bool {
	if built == pv {
		return true
	}
	return built != "" && built < FirstStatelessVersion && pv != "" && pv < FirstStatelessVersion
}

// AdapterClientInfo is how the built-in adapters name themselves to an
// upstream (the clientInfo of their MCP client).
var AdapterClientInfo = map[string]any{"name": "armoriq-adapter", "version": "1"}

// UpstreamMeta returns the _meta a request whose client sent meta carries
// to an upstream session speaking protocolVersion, as a new map (meta is
// not modified); nil means none. Keys pass unchanged but for those in
// drop, progressToken (the hop sets its own) and the protocol envelope:
// under 2026-07-28 the protocol version is the upstream session's, the
// client's capabilities and name pass through (the client is the one that
// answers an input_required result; without them, none and the adapter's
// name), and a request without a log level asks for "debug" (the gateway
// filters by its own client's level). Under the initialize handshake the
// envelope keys are dropped: they would describe a client this hop does not
// speak for.
//
// The gateway builds a RawCall's _meta with it, and the built-in adapters
// their MCP client's, so both paths send the same.
func UpstreamMeta(meta map[string]any, protocolVersion string, drop ...string) map[string]any {
	modern := protocolVersion >= FirstStatelessVersion
	m := make(map[string]any, len(meta)+4)
	for k, v := range meta {
		switch k {
		case "progressToken":
			continue
		case MetaProtocolVersion, MetaClientInfo, MetaClientCapabilities, MetaLogLevel:
			if !modern {
				continue
			}
		}
		if slices.Contains(drop, k) {
			continue
		}
		m[k] = v
	}
	if !modern {
		if len(m) == 0 {
			return nil
		}
		return m
	}
	m[MetaProtocolVersion] = protocolVersion
	if _, ok := m[MetaClientCapabilities]; !ok {
		// The client declared none, and the adapter cannot answer an
		// input_required result itself.
		m[MetaClientCapabilities] = map[string]any{}
	}
	if _, ok := m[MetaClientInfo]; !ok {
		m[MetaClientInfo] = AdapterClientInfo
	}
	if _, ok := m[MetaLogLevel]; !ok {
		m[MetaLogLevel] = "debug"
	}
	return m
}

// AppendToolCallParams appends to dst the params object of a tools/call:
// name, arguments (a JSON object, copied as it is; empty means {}), _meta
// when not empty, and a multi-round-trip retry's inputResponses and
// requestState when set.
func AppendToolCallParams(dst []byte, name string, args json.RawMessage, meta map[string]any, inputResponses json.RawMessage, requestState string) ([]byte, error) {
	dst = append(dst, `{"name":`...)
	dst = appendString(dst, name)
	dst = append(dst, `,"arguments":`...)
	if a := bytes.TrimSpace(args); len(a) == 0 || string(a) == "null" {
		dst = append(dst, "{}"...)
	} else {
		dst = append(dst, args...)
	}
	if len(meta) > 0 {
		b, err := json.Marshal(meta)
		if err != nil {
			return nil, err
		}
		dst = append(dst, `,"_meta":`...)
		dst = append(dst, b...)
	}
	if r := bytes.TrimSpace(inputResponses); len(r) > 0 && string(r) != "null" {
		dst = append(dst, `,"inputResponses":`...)
		dst = append(dst, inputResponses...)
	}
	if requestState != "" {
		dst = append(dst, `,"requestState":`...)
		dst = appendString(dst, requestState)
	}
	return append(dst, '}'), nil
}

// appendString appends s as a JSON string.
func appendString(dst []byte, s string) []byte {
	b, _ := json.Marshal(s) // a string always encodes
	return append(dst, b...)
}
