package gateway

import (
	"crypto/ed25519"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

func testSealer(seed byte, kid string) *sessionSealer {
	s := make([]byte, ed25519.SeedSize)
	for i := range s {
		s[i] = seed
	}
	key := ed25519.NewKeyFromSeed(s)
	return &sessionSealer{keys: func() (string, ed25519.PrivateKey) { return kid, key }}
}

// TestSessionIDOneSpelling: a session id spelled another way that decodes
// to the same bytes (the unused low bits of its last base64 character set)
// does not open: one session has one id.
func TestSessionIDOneSpelling(t *testing.T) {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	now := time.Unix(1_800_000_000, 0)
	z := testSealer(1, "tk_a")
	tried := 0
	for _, client := range []string{"a", "ab", "abc"} { // sealed lengths of every remainder mod 3
		st := sessionState{KeyID: "k1", Protocol: "2025-11-25", Client: client, Issued: now.Unix()}
		id, err := z.seal(st)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := z.open(id, now); err != nil {
			t.Fatalf("open(%q) = %v", id, err)
		}
		rest := strings.TrimPrefix(id, sessionPrefix)
		var unused int // low bits of the last character that encode nothing
		switch len(rest) % 4 {
		case 2:
			unused = 4
		case 3:
			unused = 2
		default:
			continue // the last character is all data
		}
		last := strings.IndexByte(alphabet, rest[len(rest)-1])
		for v := 1; v < 1<<unused; v++ {
			alt := id[:len(id)-1] + string(alphabet[last|v])
			tried++
			if _, err := z.open(alt, now); err == nil {
				t.Errorf("client %q: the id %q opened spelled %q", client, id, alt)
			}
		}
	}
	if tried == 0 {
		t.Fatal("no sealed id had unused bits to set")
	}
}

func TestSessionSealing(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	z := testSealer(1, "tk_a")
	st := sessionState{KeyID: "k1", Protocol: "2025-11-25", Client: "cli", Issued: now.Unix()}
	id, err := z.seal(st)
	if err != nil || !strings.HasPrefix(id, sessionPrefix) {
		t.Fatalf("seal = %q, %v", id, err)
	}
	got, err := z.open(id, now.Add(time.Hour))
	if err != nil || got != st {
		t.Fatalf("open = %+v, %v; want %+v", got, err, st)
	}
	// Another replica with the same signing key opens it; another key, an
	// edit, or age does not.
	if _, err := testSealer(1, "tk_a").open(id, now); err != nil {
		t.Fatalf("same key: %v", err)
	}
	if _, err := testSealer(2, "tk_b").open(id, now); err == nil {
		t.Fatal("opened with another signing key")
	}
	if _, err := z.open(id, now.Add(sessionTTL+time.Minute)); err == nil {
		t.Fatal("opened an expired session")
	}
	b := []byte(id)
	b[len(b)/2] ^= 1
	if _, err := z.open(string(b), now); err == nil {
		t.Fatal("opened an altered session id")
	}
	// Opened ids are kept, but for the key they were sealed under: once
	// the signing key changes, the id no longer opens.
	if _, err := z.open(id, now); err != nil {
		t.Fatalf("again: %v", err)
	}
	other := testSealer(2, "tk_b")
	z.keys = other.keys
	if _, err := z.open(id, now); err == nil {
		t.Fatal("opened after the signing key changed")
	}
}

func FuzzSessionOpen(f *testing.F) {
	z := testSealer(3, "tk_f")
	id, _ := z.seal(sessionState{KeyID: "k", Protocol: "2025-06-18", Issued: time.Now().Unix()})
	f.Add(id)
	f.Add(sessionPrefix)
	f.Add("ms1.AAAA")
	f.Fuzz(func(t *testing.T, s string) {
		st, err := z.open(s, time.Now())
		if err == nil && s != id {
			// Forging requires the key: only ids this sealer made open.
			if _, err2 := testSealer(4, "tk_g").open(s, time.Now()); err2 == nil {
				t.Fatalf("%q opens under two keys: %+v", s, st)
			}
		}
	})
}

// FuzzResultAnnotation checks that relaying an upstream result to a
// 2026-07-28 client keeps it valid JSON with resultType set.
func FuzzResultAnnotation(f *testing.F) {
	f.Add(`{"content":[]}`)
	f.Add(`{ }`)
	f.Add(`{"x":{"resultType":"a"}}`)
	f.Add(`{"resultType":"input_required","inputRequests":{}}`)
	f.Add(`{"_meta":{"a":1},"content":[{"type":"text","text":"x"}]}`)
	req := &mcp.ReadResourceRequest{Extra: &mcp.RequestExtra{Header: http.Header{headerProtocol: {firstStatelessVersion}}}}
	f.Fuzz(func(t *testing.T, s string) {
		var v map[string]any
		if json.Unmarshal([]byte(s), &v) != nil || v == nil {
			return
		}
		outs := map[string][]byte{"withResultType": withResultType(req, json.RawMessage(s))}
		if out, ok := answerResult(json.RawMessage(s), true); ok {
			outs["answerResult"] = out
		} else if _, isObject := v["_meta"].(map[string]any); isObject || v["_meta"] == nil {
			t.Fatalf("answerResult(%s) refused an object whose _meta is an object or null", s)
		}
		for name, out := range outs {
			var got map[string]any
			if err := json.Unmarshal(out, &got); err != nil {
				t.Fatalf("%s(%s) = %s: not JSON: %v", name, s, out, err)
			}
			if _, ok := got["resultType"]; !ok {
				t.Fatalf("%s(%s) = %s: no resultType", name, s, out)
			}
		}
	})
}
