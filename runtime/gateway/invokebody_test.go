package gateway

import (
	"encoding/json"
	"reflect"
	"testing"
)

// decodeBoth decodes body with the hand decoder (if it takes it) and with
// json.Unmarshal, and fails t if the decoder took a body that
// json.Unmarshal refuses or decodes otherwise. It reports whether the
// decoder took the body.
func decodeBoth(t *testing.T, body []byte) bool {
	t.Helper()
	var plain invokeRequest
	took := validJSON(body) && plain.decodePlain(body)
	var want invokeRequest
	err := json.Unmarshal(body, &want)
	if !took {
		return false
	}
	if err != nil {
		t.Fatalf("body %q: decoded by hand, but json.Unmarshal says %v", body, err)
	}
	if !reflect.DeepEqual(plain, want) {
		t.Fatalf("body %q: decoded by hand to\n%#v\njson.Unmarshal decodes\n%#v", body, plain, want)
	}
	return true
}

// TestInvokeBodyPlain: which /invoke bodies the hand decoder takes (and
// then decodes as json.Unmarshal does) and which it gives to
// json.Unmarshal.
func TestInvokeBodyPlain(t *testing.T) {
	for _, tc := range []struct {
		body string
		took bool
	}{
		{`{"mcp":"tools","action":"echo","params":{"text":"hi"}}`, true},
		{" \n{ \"mcp\" : \"tools\" ,\t\"action\":\"echo\" }\r\n", true},
		{`{}`, true},
		{`{"mcp":"tools","unknown":[1,{"a":"\"}"}],"action":"echo"}`, true},
		{`{"intent_token":{"plan":{"steps":[]},"token":{"sig":"x"},"plan_hash":"h","merkle_root":"r","intent_reference":"ref","step_proofs":[]},"plan":null,"token":"t","csrg_token":5,"merkle_proof":{"leaf_index":0}}`, true},
		{`{"intent_token":null}`, true},
		{`{"enforce_only":true,"user_email":"ann@example.com"}`, true},
		{`{"enforce_only":false}`, true},
		{`{"arguments":"not an object","params":null}`, true},
		{`{"mcp":"tööls"}`, true},                     // UTF-8 without escapes
		{`{"mcp":"a","mcp":"b"}`, false},              // duplicate key: the last wins in encoding/json
		{`{"mcp":"a","MCP":"b"}`, false},              // a key in another case names the field too
		{`{"Action":"echo"}`, false},                  // in another case only
		{`{"intent_token":{"PLAN_HASH":"h"}}`, false}, // the same, in intent_token
		{`{"intent_token":{"plan_hash":"a","plan_hash":"b"}}`, false},
		{`{"intent_token":{"plan":1},"intent_token":{"token":2}}`, false}, // encoding/json merges the two
		{`{"mcſ":"tools"}`, false},                                        // a key beyond ASCII (ſ folds to S)
		{`{"m\u0063p":"tools"}`, false},                                   // an escape in a key
		{`{"mcp":"to\u006fls"}`, false},                                   // an escape in a string
		{`{"mcp":"a\nb"}`, false},                                         // an escape in a string
		{"{\"mcp\":\"\xff\"}", false},                                     // invalid UTF-8, which encoding/json replaces
		{`{"mcp":null}`, false},                                           // null leaves a field as it was
		{`{"mcp":5}`, false},                                              // a type error
		{`{"enforce_only":"true"}`, false},                                // a type error
		{`{"enforce_only":null}`, false},                                  // null
		{`{"params":"text"}`, false},                                      // numberObject refuses it
		{`{"params":[1]}`, false},                                         // numberObject refuses it
		{`{"intent_token":"x"}`, false},                                   // not an object
		{`{"intent_token":[]}`, false},                                    // not an object
		{`{"intent_token":{"plan_hash":7}}`, false},
		{`{"amount":5,000}`, false},                // not JSON
		{`{"mcp":"tools"} {"mcp":"other"}`, false}, // trailing data
		{`{"mcp":"tools"`, false},                  // truncated
		{`null`, false},                            // json.Unmarshal leaves req as it is
		{`[{"mcp":"tools"}]`, false},
		{`"mcp"`, false},
		{``, false},
	} {
		if got := decodeBoth(t, []byte(tc.body)); got != tc.took {
			t.Errorf("body %q: taken by the hand decoder = %v, want %v", tc.body, got, tc.took)
		}
	}
}

// FuzzInvokeBody holds the hand decoder of /invoke bodies to
// json.Unmarshal: whatever it takes, json.Unmarshal takes too and decodes
// to the same invokeRequest.
func FuzzInvokeBody(f *testing.F) {
	f.Add([]byte(`{"mcp":"tools","action":"echo","tool":"echo","params":{"text":"hi","n":5},"arguments":{"text":"hi"},"intent_token":{"plan":{"goal":"g","steps":[{"action":"echo","mcp":"tools"}]},"token":{"plan_hash":"h","signature":"s"},"plan_hash":"h","merkle_root":"r","intent_reference":"ref","step_proofs":[{"leaf_index":0}]},"plan":{"goal":"g"},"token":{"plan_hash":"h"},"user_email":"ann@example.com","enforce_only":false}`))
	for _, s := range []string{
		`{"mcp":"a","MCP":"b"}`, `{"intent_token":{"plan":1},"intent_token":{"token":2}}`, `{"mcſ":"x"}`, `{"m\u0063p":"x"}`,
		`{"mcp":"\u00e9"}`, "{\"mcp\":\"\xff\"}", `{"mcp":null}`, `{"params":null,"arguments":null}`, `{"amount":5,000}`,
		`{"enforce_only":true}`, `{"intent_token":null,"plan":[]}`, `{"ACTION":1}`, `{"tool":"a\"b"}`, ` {"csrg_token":{}} `,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		decodeBoth(t, body)
	})
}
