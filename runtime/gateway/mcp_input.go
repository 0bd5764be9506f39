package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/armoriq/controlplane/plugins"
	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// An upstream whose session speaks 2026-07-28 (a stdio server, or an HTTP
// server that refuses the initialize handshake) asks for input by answering
// a tools/call with an input_required result (SEP-2322): input requests, and
// a state to echo when the call is retried with the answers. A 2026-07-28
// client reads it and retries; a legacy client (2025-11-25 and earlier)
// would read it as an empty success. For a legacy client the gateway does
// what the go-sdk server does for its own legacy clients
// (serverMultiRoundTripMiddleware): it asks the client with one server
// request per input request, on the call's event stream, and retries the
// call with the answers. Each retry is a call of its own to the checks and
// the audit (callTool, checkAndForward): its request record is committed
// before the upstream sees it, and the answers it carries are scanned as
// arguments are. What the client cannot be asked ends the call with an
// error (KindInputRequired), never an empty success.

const (
	// maxInputRounds bounds the rounds of answers a call gets: an upstream
	// still asking after them is answered with an error.
	maxInputRounds = 3
	// maxInputRequests bounds the input requests of one round, each a
	// request the client must answer.
	maxInputRequests = 16
)

// inputMethods are the input requests the gateway relays to a legacy
// client, with the letter of the capability the client must have declared
// (sessionState.Asks). roots/list is not relayed: the gateway does not
// pass a client's roots on.
var inputMethods = map[string]string{"elicitation/create": "e", "sampling/createMessage": "s"}

// clientAnswers reports whether a client that declared asks (its
// sessionState.Asks) answers method.
func clientAnswers(asks, method string) bool {
	need := inputMethods[method]
	return need != "" && strings.Contains(asks, need)
}

// inputRequest is one input request of an input_required result.
type inputRequest struct {
	Method string          `json:"method"`
	Params json.RawMessage `json:"params"`
}

// inputRequired is an input_required result: its requests by id (nil for
// none) and the state the retry must echo.
type inputRequired struct {
	requests map[string]inputRequest
	state    string
}

// inputRetry is what the next round of a call carries: the client's
// answers, encoded as the retry's inputResponses, and the upstream's state.
type inputRetry struct {
	responses json.RawMessage
	state     string
}

// parseInputRequired reports whether raw, an upstream's CallToolResult, is
// an input_required result: its resultType says so, or it carries input
// requests (which a client reads as asking for input whatever the type).
// Keys are matched exactly, as the SDKs' decoders match them (the last of
// duplicates wins); raw must be valid JSON. A malformed one is an error.
func parseInputRequired(raw json.RawMessage) (*inputRequired, error) {
	if !bytes.Contains(raw, []byte("nput")) && !bytes.Contains(raw, []byte(`\u`)) {
		return nil, nil // no key nor value of it can be: spare scanning it
	}
	var resultType, requests, state bodyJSON
	sc := objectScanner{b: raw}
	for k, v := range sc.fields() {
		switch string(k) {
		case "resultType":
			resultType = v
		case "inputRequests":
			requests = v
		case "requestState":
			state = v
		}
	}
	if sc.bad {
		// Not an object, or a key with an escape: decoded, keys still
		// matched exactly once unescaped.
		var m map[string]json.RawMessage
		if json.Unmarshal(raw, &m) != nil {
			return nil, nil // not an object: answerResult refuses it
		}
		resultType, requests, state = bodyJSON(m["resultType"]), bodyJSON(m["inputRequests"]), bodyJSON(m["requestState"])
	}
	var rt string
	if len(resultType) > 0 && resultType[0] == '"' {
		_ = json.Unmarshal(resultType, &rt)
	}
	hasRequests := len(requests) > 0 && string(requests) != "null"
	if rt != "input_required" && !hasRequests {
		return nil, nil
	}
	ir := &inputRequired{}
	if hasRequests {
		if err := json.Unmarshal(requests, &ir.requests); err != nil || ir.requests == nil {
			return nil, errors.New("its inputRequests are not an object of requests")
		}
	}
	if len(state) > 0 && string(state) != "null" {
		if err := json.Unmarshal(state, &ir.state); err != nil {
			return nil, errors.New("its requestState is not a string")
		}
	}
	return ir, nil
}

// askClient runs one round of a legacy client's call that the upstream
// answered with input_required: it checks that the client can be asked
// every input request (the capability each needs, a way to ask on this
// call, the round and count bounds), asks them all at once, and returns
// the retry's answers. ctx carries the call's deadline, which bounds the
// wait. Every error is one the client is answered with (and the round's
// audit outcome records).
func (ep *mcpEndpoint) askClient(ctx context.Context, tc *toolCall, ir *inputRequired) (*inputRetry, error) {
	id := tc.rt.server.ID
	cannot := func(format string, args ...any) error {
		return errorf(KindInputRequired, "MCP server %q needs input the client cannot give: "+format, append([]any{id}, args...)...)
	}
	if len(ir.requests) == 0 {
		// The load-shedding answer of SEP-2322, as the go-sdk reads it.
		return nil, errorf(KindInputRequired, "MCP server %q is busy (it answered input_required with no input requests): retry the call later", id)
	}
	if tc.round >= maxInputRounds {
		return nil, errorf(KindInputRequired, "MCP server %q still asks for input after %d rounds of answers; the gateway relays no more", id, maxInputRounds)
	}
	if len(ir.requests) > maxInputRequests {
		return nil, cannot("it asks %d questions at once; the gateway relays at most %d", len(ir.requests), maxInputRequests)
	}
	ids := make([]string, 0, len(ir.requests))
	for k := range ir.requests {
		ids = append(ids, k)
	}
	slices.Sort(ids)
	asks := ""
	if mc := mcpCallFrom(ctx); mc != nil {
		asks = mc.asks
	}
	for _, k := range ids {
		m := ir.requests[k].Method
		switch {
		case inputMethods[m] == "":
			return nil, cannot("input request %q is %q, which the gateway does not relay to a client (it relays elicitation/create and sampling/createMessage)", k, m)
		case !clientAnswers(asks, m):
			return nil, cannot("input request %q is %s, and the client did not declare %s in its initialize capabilities", k, m, capabilityOf(m))
		case tc.request == nil:
			return nil, cannot("input request %q is %s, and this request gives the gateway no event stream to ask on (a batch, or a request the MCP SDK answers)", k, m)
		}
	}

	// One server request per input request, all at once, as the go-sdk
	// asks; the first failure cancels the others.
	request := tc.request // the goroutines see it, not tc
	actx, cancel := context.WithCancel(ctx)
	defer cancel()
	answers := make(map[string]json.RawMessage, len(ids))
	errs := make([]error, len(ids))
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i, k := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := ir.requests[k]
			res, err := request(actx, r.Method, r.Params)
			if err != nil {
				errs[i] = err
				cancel()
				return
			}
			mu.Lock()
			answers[k] = res
			mu.Unlock()
		}()
	}
	wg.Wait()
	for i, err := range errs {
		k, m := ids[i], ir.requests[ids[i]].Method
		var rpc *plugins.RPCError
		switch {
		case err == nil:
		case context.Cause(ctx) == errRevokedInFlight:
			return nil, errorf(KindRevoked, "the API key or intent token was revoked while the client was being asked for input")
		case errors.Is(ctx.Err(), context.DeadlineExceeded):
			return nil, errorf(KindInputRequired, "the client did not answer MCP server %q's input request %q (%s) within the call's time limit (%s)", id, k, m, ep.s.callTimeout())
		case ctx.Err() != nil:
			return nil, errorf(KindInputRequired, "the call ended while the client was being asked MCP server %q's input request %q (%s)", id, k, m)
		case errors.Is(err, context.Canceled):
			// Cancelled because another request failed: that one says why.
		case errors.As(err, &rpc):
			return nil, errorf(KindInputRequired, "the client answered MCP server %q's input request %q (%s) with an error: %s", id, k, m, rpc.Message)
		default:
			return nil, errorf(KindInputRequired, "the client could not be asked MCP server %q's input request %q (%s): %v", id, k, m, err)
		}
	}
	if len(answers) != len(ids) {
		return nil, errorf(KindInputRequired, "the client did not answer all of MCP server %q's input requests", id)
	}

	// The answers as the retry carries them: decoded and encoded as the
	// SDK's path and the fast path do a 2026-07-28 client's inputResponses,
	// so that the upstream gets the same bytes either way.
	b, err := json.Marshal(answers)
	if err != nil {
		return nil, errorf(KindInputRequired, "the client's answers to MCP server %q's input requests are not JSON", id)
	}
	var m mcp.InputResponseMap
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, errorf(KindInputRequired, "the client's answers to MCP server %q's input requests are not elicitation or sampling results: %v", id, err)
	}
	if b, err = json.Marshal(m); err != nil {
		return nil, errorf(KindInputRequired, "the client's answers to MCP server %q's input requests do not encode: %v", id, err)
	}
	// A 2026-07-28 client's retry carries its arguments and answers in one
	// body, within the body limit: so does the gateway's.
	if limit := ep.s.cfg.Limits.MaxBody; int64(len(b)+len(tc.args)) > limit {
		return nil, errorf(KindInputRequired, "the client's answers to MCP server %q's input requests take %d bytes, which with the arguments is over the %d-byte limit of a request body (--max-body)", id, len(b), limit)
	}
	return &inputRetry{responses: b, state: ir.state}, nil
}

// capabilityOf names the client capability method needs.
func capabilityOf(method string) string {
	if method == "sampling/createMessage" {
		return "sampling"
	}
	return "elicitation"
}

// methodsOf lists the methods of an input_required result's requests, for
// the audit outcome.
func (ir *inputRequired) methodsOf() string {
	var ms []string
	for _, r := range ir.requests {
		if !slices.Contains(ms, r.Method) {
			ms = append(ms, r.Method)
		}
	}
	if len(ms) == 0 {
		return "no input requests"
	}
	slices.Sort(ms)
	return strings.Join(ms, ", ")
}

// inputOutcome is the audit outcome of a round the upstream answered with
// input_required, once the client was asked.
func inputOutcome(ir *inputRequired, round int) string {
	return fmt.Sprintf("input required (%s): the client was asked and answered; the call is retried with the answers (round %d of at most %d)", ir.methodsOf(), round+1, maxInputRounds)
}
