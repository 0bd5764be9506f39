package gateway

import (
	"bytes"
	"encoding/json"
	"net/http"
	"unicode/utf8"
)

// The /invoke body is decoded by hand when it is plainly written, which the
// SDKs' bodies are: json.Unmarshal into invokeRequest spends most of its
// time on reflection and on a second pass over the plan and the token it
// keeps as bytes. The gateway checks what it decodes and forwards what it
// checked, so a difference between this decoder and encoding/json would be
// a way around the checks. It therefore decodes only a subset, and gives
// every other body to json.Unmarshal: the body must be valid JSON (by
// validJSON, which answers as json.Valid, the check json.Unmarshal makes
// first) and an object; every key of invokeRequest's and sdkIntentToken's objects must be of printable
// ASCII without escapes, name a field exactly or no field at all (a key
// naming a field in another case, as encoding/json matches it, is given
// away), and appear once; a string field must be a string without escapes
// and of valid UTF-8, a bool field true or false (null, which leaves a field
// as it was, is given away too); the fields' own decoders (numberObject)
// must accept their values. What it takes decodes to exactly what
// json.Unmarshal decodes (FuzzInvokeBody holds it to that), but for the
// raw JSON fields, which refer to the body instead of copying it: the body
// is never reused (unmarshalBody's contract).

// unmarshalInvokeBody reads the /invoke body into req, as unmarshalBody
// would.
func unmarshalInvokeBody(r *http.Request, req *invokeRequest) error {
	body, err := readBody(r)
	if err != nil {
		return err
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return errorf(KindInvalid, "request body is empty: a JSON object is required")
	}
	if validJSON(body) && req.decodePlain(body) {
		return nil
	}
	*req = invokeRequest{}
	if err := json.Unmarshal(body, req); err != nil {
		return errorf(KindInvalid, "request body is not valid JSON: %v", err)
	}
	return nil
}

// invokeFields and intentTokenFields are the JSON names of the fields of
// invokeRequest and sdkIntentToken, by their bits.
var (
	invokeFields = []string{"mcp", "action", "tool", "params", "arguments", "intent_token", "merkle_proof",
		"plan", "token", "csrg_token", "user_email", "enforce_only"}
	intentTokenFields = []string{"plan", "token", "plan_hash", "merkle_root", "intent_reference"}
)

// decodePlain decodes body, valid JSON, into req if it is of the subset
// decoded by hand, and reports whether it was; if not, req is left partly
// filled, to be reset.
func (req *invokeRequest) decodePlain(body []byte) bool {
	var seen int
	return plainMembers(body, func(key, v []byte) bool {
		f := fieldIndex(invokeFields, key)
		if f < 0 {
			return f == -1 // unknown: skipped; -2: named in another case
		}
		if seen&(1<<f) != 0 {
			return false
		}
		seen |= 1 << f
		switch invokeFields[f] {
		case "mcp":
			return plainString(v, &req.MCP)
		case "action":
			return plainString(v, &req.Action)
		case "tool":
			return plainString(v, &req.Tool)
		case "user_email":
			return plainString(v, &req.UserEmail)
		case "enforce_only":
			switch string(v) {
			case "true":
				req.EnforceOnly = true
			case "false":
				req.EnforceOnly = false
			default:
				return false
			}
		case "params":
			return req.Params.UnmarshalJSON(v) == nil
		case "arguments":
			return req.Arguments.UnmarshalJSON(v) == nil
		case "plan":
			req.Plan = v
		case "token":
			req.Token = v
		case "csrg_token":
			req.CSRGToken = v
		case "merkle_proof":
			req.MerkleProof = v
		case "intent_token":
			if string(v) == "null" {
				req.IntentToken = nil
				return true
			}
			it := new(sdkIntentToken)
			req.IntentToken = it
			return it.decodePlain(v)
		}
		return true
	})
}

// decodePlain is invokeRequest.decodePlain for the intent_token object.
func (it *sdkIntentToken) decodePlain(obj []byte) bool {
	var seen int
	return plainMembers(obj, func(key, v []byte) bool {
		f := fieldIndex(intentTokenFields, key)
		if f < 0 {
			return f == -1
		}
		if seen&(1<<f) != 0 {
			return false
		}
		seen |= 1 << f
		switch intentTokenFields[f] {
		case "plan":
			it.Plan = v
		case "token":
			it.Token = v
		case "plan_hash":
			return plainString(v, &it.PlanHash)
		case "merkle_root":
			return plainString(v, &it.MerkleRoot)
		case "intent_reference":
			return plainString(v, &it.IntentReference)
		}
		return true
	})
}

// fieldIndex returns the index of the field key names exactly; -1 if it
// names none, in any case; -2 if it names one in another case only (as
// encoding/json matches a key to a field when no field has it exactly).
// key is printable ASCII (plainMembers), which encoding/json folds by
// ASCII letters alone.
func fieldIndex(fields []string, key []byte) int {
	for i, f := range fields {
		if string(key) == f {
			return i
		}
	}
	for _, f := range fields {
		if len(key) == len(f) && bytes.EqualFold(key, []byte(f)) {
			return -2
		}
	}
	return -1
}

// plainMembers calls member with each key and value of obj, a JSON object
// in valid JSON, in order, and reports whether obj is an object whose keys
// are all printable ASCII without escapes and member returned true for
// each.
func plainMembers(obj []byte, member func(key, val []byte) bool) bool {
	s := objectScanner{b: obj}
	for k, v := range s.fields() {
		for _, c := range k {
			if c < 0x20 || c >= 0x7f {
				return false
			}
		}
		if !member(k, v) {
			return false
		}
	}
	return !s.bad
}

// plainString sets *dst to the JSON string v if it has no escapes and is
// valid UTF-8 (what encoding/json decodes to the same bytes), and reports
// whether it did.
func plainString(v []byte, dst *string) bool {
	if len(v) < 2 || v[0] != '"' {
		return false
	}
	s := v[1 : len(v)-1]
	if bytes.IndexByte(s, '\\') >= 0 || !utf8.Valid(s) {
		return false
	}
	*dst = string(s)
	return true
}
