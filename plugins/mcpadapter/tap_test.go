package mcpadapter

import (
	"bytes"
	"io"
	"net/http"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/armoriq/controlplane/plugins"
)

// readTapped reads body through a tap as the SDK would, in small reads, and
// returns what the reader saw, the log messages and the result the tap saw.
func readTapped(t testing.TB, contentType, body string) (string, []string, string) {
	t.Helper()
	var logs []string
	tap := &callTap{log: func(m plugins.LogMessage) { logs = append(logs, m.Level+" "+string(m.Data)) }}
	resp := &http.Response{StatusCode: 200, Header: http.Header{"Content-Type": {contentType}},
		Body: io.NopCloser(iotest.HalfReader(strings.NewReader(body)))}
	tapResponse(tap, resp)
	got, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return string(got), logs, string(tap.take())
}

func TestTapEventStream(t *testing.T) {
	body := "event: message\r\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/message\",\"params\":{\"level\":\"info\",\"data\":\"one\"}}\r\n\r\n" +
		": a comment\n" +
		"event: message\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{\"progressToken\":\"t\",\"progress\":1}}\n\n" +
		"id: 7\nevent: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":3,\"result\":{\"content\":[{\"type\":\"text\",\"text\":\"a \\\"result\\\"\"}]}}\n\n"
	got, logs, result := readTapped(t, "text/event-stream", body)
	if got != body {
		t.Errorf("the reader saw %q, want the body unchanged", got)
	}
	if strings.Join(logs, "|") != `info "one"` {
		t.Errorf("log messages: got %q, want one info message", logs)
	}
	if want := `{"content":[{"type":"text","text":"a \"result\""}]}`; result != want {
		t.Errorf("result: got %s, want %s", result, want)
	}
}

func TestTapJSON(t *testing.T) {
	body := `{"jsonrpc":"2.0","id":"x","result":{"tools":[]}}`
	got, logs, result := readTapped(t, "application/json", body)
	if got != body || len(logs) != 0 || result != `{"tools":[]}` {
		t.Errorf("got %q, logs %q, result %s; want the body unchanged, no logs, {\"tools\":[]}", got, logs, result)
	}
	// An error answer has no result to hand on.
	_, _, result = readTapped(t, "application/json", `{"jsonrpc":"2.0","id":1,"error":{"code":-32602,"message":"no \"result\" here"}}`)
	if result != "" {
		t.Errorf("error answer: tap kept result %s", result)
	}
}

// FuzzTap checks that the tap never changes what the SDK reads, whatever
// the upstream sends, and never panics.
func FuzzTap(f *testing.F) {
	f.Add("text/event-stream", "data: {\"id\":1,\"result\":{}}\n\n")
	f.Add("text/event-stream", "data: {\"method\":\"notifications/message\",\"params\":{\"level\":\"info\"}}\r\n\r\ndata: x\n")
	f.Add("application/json", `{"id":1,"result":[1,2]}`)
	f.Fuzz(func(t *testing.T, ct, body string) {
		got, _, _ := readTapped(t, ct, body)
		if !bytes.Equal([]byte(got), []byte(body)) {
			t.Fatalf("the reader saw %q, want %q", got, body)
		}
	})
}
