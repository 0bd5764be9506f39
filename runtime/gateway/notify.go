package gateway

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/armoriq/controlplane/runtime/store"
)

// notifier posts approval events to a webhook from its own goroutine. A
// decision never waits for it: events go into a bounded queue, and when
// the queue is full the event is dropped and logged.
type notifier struct {
	url    string
	secret []byte
	log    *slog.Logger
	http   *http.Client
	queue  chan []byte
	// backoff is the wait before each retry; its length is the number of
	// retries after the first attempt.
	backoff []time.Duration
}

func newNotifier(url, secret string, log *slog.Logger) *notifier {
	return &notifier{
		url: url, secret: []byte(secret), log: log,
		http:    &http.Client{Timeout: 10 * time.Second},
		queue:   make(chan []byte, 256),
		backoff: []time.Duration{time.Second, 4 * time.Second, 15 * time.Second, time.Minute},
	}
}

// WebhookSignatureHeader carries "sha256=<hex HMAC-SHA256 of timestamp.body>";
// WebhookTimestampHeader the Unix time it was signed at, so a receiver can
// refuse replays.
const (
	WebhookSignatureHeader = "X-Armoriq-Signature"
	WebhookTimestampHeader = "X-Armoriq-Timestamp"
)

// SignWebhook returns the signature header value of body sent at ts.
func SignWebhook(secret []byte, ts string, body []byte) string {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(ts))
	m.Write([]byte{'.'})
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// approvalNotice is the webhook body: Slack renders "text"; the rest is
// for machines.
type approvalNotice struct {
	Text     string         `json:"text"`
	Event    string         `json:"event"` // requested, approved, denied, expired, executed
	Approval store.Approval `json:"approval"`
	URL      string         `json:"url,omitempty"`
}

// notifyApproval queues a notice of event on a; it never blocks.
func (s *Server) notifyApproval(event string, a store.Approval, link string) {
	n := s.human.notify
	if n == nil {
		return
	}
	text := fmt.Sprintf("armoriq: approval %s %s: %s/%s for %s (rule %s: %s)", a.ID, event, a.Server, a.Tool, a.User, a.Rule, a.Reason)
	if a.DecidedBy != "" && (event == "approved" || event == "denied") {
		text += " by " + a.DecidedBy
		if a.Comment != "" {
			text += ": " + a.Comment
		}
	}
	if link != "" {
		text += " <" + link + ">"
	}
	body, err := json.Marshal(approvalNotice{Text: text, Event: event, Approval: a, URL: link})
	if err != nil {
		return
	}
	select {
	case n.queue <- body:
	default:
		n.log.Warn("approvals webhook queue full: notice dropped", "approval", a.ID, "event", event)
	}
}

func (n *notifier) run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case body := <-n.queue:
			n.deliver(ctx, body)
		}
	}
}

// deliver posts body, retrying with backoff on a transport error or a 5xx
// or 429 answer.
func (n *notifier) deliver(ctx context.Context, body []byte) {
	for attempt := 0; ; attempt++ {
		status, err := n.post(ctx, body)
		if err == nil && status/100 == 2 {
			return
		}
		retry := err != nil || status >= 500 || status == http.StatusTooManyRequests
		if !retry || attempt >= len(n.backoff) {
			n.log.Warn("approvals webhook failed", "status", status, "error", err, "attempts", attempt+1)
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(n.backoff[attempt]):
		}
	}
}

func (n *notifier) post(ctx context.Context, body []byte) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, n.url, bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "armoriq-gateway")
	if len(n.secret) > 0 {
		ts := strconv.FormatInt(time.Now().Unix(), 10)
		req.Header.Set(WebhookTimestampHeader, ts)
		req.Header.Set(WebhookSignatureHeader, SignWebhook(n.secret, ts, body))
	}
	resp, err := n.http.Do(req)
	if err != nil {
		return 0, err
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	return resp.StatusCode, nil
}
