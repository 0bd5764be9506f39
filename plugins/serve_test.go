package plugins

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"testing"
	"time"
)

// TestPluginLogFormat: adapter log lines carry the keys and the timestamp
// layout go-plugin's host parses, so they reach the gateway's log at their
// level instead of as raw debug text.
func TestPluginLogFormat(t *testing.T) {
	var buf bytes.Buffer
	slog.New(newPluginLogHandler(&buf, slog.LevelInfo)).Warn("upstream slow", "server", "github")
	var entry map[string]any
	if err := json.Unmarshal(buf.Bytes(), &entry); err != nil {
		t.Fatalf("log line %q: %v", buf.String(), err)
	}
	if entry["@level"] != "warn" || entry["@message"] != "upstream slow" || entry["server"] != "github" {
		t.Errorf("log line %s: want @level warn, @message, server", buf.String())
	}
	ts, _ := entry["@timestamp"].(string)
	if _, err := time.Parse("2006-01-02T15:04:05.000000Z07:00", ts); err != nil {
		t.Errorf("@timestamp %q does not parse as go-plugin expects: %v", ts, err)
	}
}
