package gateway

import (
	"mime"
	"net/textproto"
	"testing"
)

// TestHeaderNamesCanonical checks that the header names the gateway reads
// on every call are spelled as net/http keys them, which is what spares a
// rewrite of the name on each Get.
func TestHeaderNamesCanonical(t *testing.T) {
	for _, h := range []string{headerAPIKey, headerRequestID, headerProof, headerValueDigest, headerSessionID, headerProtocol, headerUser} {
		if got := textproto.CanonicalMIMEHeaderKey(h); got != h {
			t.Errorf("header %q: canonical form %q", h, got)
		}
	}
}

// TestMediaType checks that mediaType reads every value as
// mime.ParseMediaType does, the ones it answers without parsing included.
func TestMediaType(t *testing.T) {
	for _, v := range []string{
		"application/json", "text/event-stream", "application/json; charset=utf-8", "Application/JSON",
		"text/event-stream;q=0.9", "*/*", "application/*", "text/*", "", "application/json;", "bad value", "application/json, text/event-stream",
	} {
		want, _, _ := mime.ParseMediaType(v)
		if got := mediaType(v); got != want {
			t.Errorf("mediaType(%q) = %q, want %q (mime.ParseMediaType)", v, got, want)
		}
	}
}
