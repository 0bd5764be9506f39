package gateway

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/armoriq/controlplane/runtime/intent"
)

// Limits bound what one client can make the gateway hold: connections
// open, bytes in memory and calls running. docs/gateway.md ("Limits") has
// the defaults and the reasoning.
type Limits struct {
	// ReadHeaderTimeout bounds reading a request's headers: a client that
	// opens a connection and sends nothing, or headers a byte at a time,
	// is cut off after it (default 10s).
	ReadHeaderTimeout time.Duration
	// ReadTimeout bounds reading a whole request, body included: a slow
	// body is cut off after it (default 60s).
	ReadTimeout time.Duration
	// WriteTimeout bounds a request from the end of its headers to the end
	// of its answer, so it must cover the call timeout: /mcp answers a
	// tools/call with an SSE stream that lasts as long as the call
	// (default CallTimeout + 30s). The audit export extends it as it writes.
	WriteTimeout time.Duration
	// IdleTimeout closes a keep-alive connection with no request after it
	// (default 120s).
	IdleTimeout time.Duration
	// MaxHeaderBytes bounds a request's header block (default 64 KiB).
	MaxHeaderBytes int
	// MaxBody bounds a request body on every route but the two below
	// (default 1 MiB). A larger body is refused with 413 before any of it
	// is decoded.
	MaxBody int64
	// MaxBundleBody bounds the body of PUT /v1/bundle and
	// POST /iap/sdk/register, which carry a whole bundle or config
	// (default 32 MiB).
	MaxBundleBody int64
	// MaxBatch bounds the requests of one JSON-RPC batch on /mcp
	// (default 32).
	MaxBatch int
	// MaxConcurrentPerKey bounds the requests one API key has running at
	// once; one more is refused with 429 and Retry-After (default 64).
	MaxConcurrentPerKey int
}

// Default limits; docs/gateway.md lists them with their flags.
const (
	DefaultReadHeaderTimeout   = 10 * time.Second
	DefaultReadTimeout         = 60 * time.Second
	DefaultIdleTimeout         = 120 * time.Second
	DefaultMaxHeaderBytes      = 64 << 10
	DefaultMaxBody             = 1 << 20
	DefaultMaxBundleBody       = 32 << 20
	DefaultMaxBatch            = 32
	DefaultMaxConcurrentPerKey = 64
	// writeMargin is what WriteTimeout adds to the call timeout by default:
	// time to read the body, decide, audit and write the answer.
	writeMargin = 30 * time.Second
)

// withDefaults fills the zero fields of l; callTimeout sets WriteTimeout's.
func (l Limits) withDefaults(callTimeout time.Duration) Limits {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&l.ReadHeaderTimeout, DefaultReadHeaderTimeout)
	def(&l.ReadTimeout, DefaultReadTimeout)
	def(&l.WriteTimeout, callTimeout+writeMargin)
	def(&l.IdleTimeout, DefaultIdleTimeout)
	if l.MaxHeaderBytes <= 0 {
		l.MaxHeaderBytes = DefaultMaxHeaderBytes
	}
	if l.MaxBody <= 0 {
		l.MaxBody = DefaultMaxBody
	}
	if l.MaxBundleBody <= 0 {
		l.MaxBundleBody = DefaultMaxBundleBody
	}
	if l.MaxBatch <= 0 {
		l.MaxBatch = DefaultMaxBatch
	}
	if l.MaxConcurrentPerKey <= 0 {
		l.MaxConcurrentPerKey = DefaultMaxConcurrentPerKey
	}
	return l
}

// Limits returns the limits the server runs with, defaults filled in.
func (s *Server) Limits() Limits { return s.cfg.Limits }

// NewHTTPServer returns an http.Server serving the gateway's handler with
// its timeouts and header limit. The caller sets Addr or serves a listener.
func (s *Server) NewHTTPServer() *http.Server {
	l := s.cfg.Limits
	return &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: l.ReadHeaderTimeout,
		ReadTimeout:       l.ReadTimeout,
		WriteTimeout:      l.WriteTimeout,
		IdleTimeout:       l.IdleTimeout,
		MaxHeaderBytes:    l.MaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
}

// extendWrites returns a function that a handler streaming a long answer
// (the audit export) calls before each write: once half the write timeout
// has passed since the last move, it moves the connection's write deadline
// to WriteTimeout from now. A long export is not cut while it progresses;
// a client that stops reading still is, WriteTimeout after its last move.
func (s *Server) extendWrites(w http.ResponseWriter) func() {
	rc := http.NewResponseController(w)
	d := s.cfg.Limits.WriteTimeout
	var last time.Time
	return func() {
		if now := time.Now(); now.Sub(last) >= d/2 {
			last = now
			_ = rc.SetWriteDeadline(now.Add(d))
		}
	}
}

// bodyLimit is the body size allowed on a request's route.
func (s *Server) bodyLimit(r *http.Request) int64 {
	switch {
	case r.Method == http.MethodPut && r.URL.Path == "/v1/bundle",
		r.Method == http.MethodPost && r.URL.Path == "/iap/sdk/register":
		return s.cfg.Limits.MaxBundleBody
	}
	return s.cfg.Limits.MaxBody
}

// limitBodies bounds every request body before any handler, authentication
// included, sees it: a declared length over the route's limit is refused at
// once with 413, and a body that grows past it fails to read with an
// *http.MaxBytesError, which tooLarge turns into the same 413.
func (s *Server) limitBodies(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := s.bodyLimit(r)
		if r.ContentLength > n {
			// Close the connection: the client may still be sending the
			// body, and reading it only to discard it is the cost refused.
			w.Header().Set("Connection", "close")
			writeError(w, tooLarge(n))
			return
		}
		if r.Body != nil && r.Body != http.NoBody {
			r.Body = http.MaxBytesReader(w, r.Body, n)
		}
		next.ServeHTTP(w, r)
	})
}

// tooLarge is the 413 of a body over limit bytes.
func tooLarge(limit int64) *Error {
	return errorf(KindTooLarge, "request body exceeds the limit of %d bytes on this route (--max-body, or --max-bundle-body for bundles and configs)", limit)
}

// bodyError turns an error reading a request body into the error the
// caller sees: 413 for a body over its limit, else 400 saying what.
func bodyError(err error, what string) *Error {
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return tooLarge(mbe.Limit)
	}
	return errorf(KindInvalid, "reading %s: %v", what, err)
}

// tooManyCalls is the 429 of a key over its concurrency limit.
func tooManyCalls(keyID string, limit int) *Error {
	return errorf(KindTooManyRequests, "API key %s already has %d requests running, the limit per key (--max-concurrent-per-key): retry when one ends", keyID, limit)
}

// acquire registers a running request of keyID, cancelled with cancel if
// the key is revoked, taking slots of the key's limit (a JSON-RPC batch
// takes one per request in it), unless the key would then have more than
// limit running: then ok is false and nothing is registered.
func (f *inflightSet) acquire(keyID string, limit, slots int, cancel context.CancelCauseFunc) (done func(), ok bool) {
	slots = max(slots, 1)
	f.mu.Lock()
	defer f.mu.Unlock()
	n := f.slots[keyID]
	if limit > 0 && n+slots > limit {
		return nil, false
	}
	f.slots[keyID] = n + slots
	f.next++
	id := f.next
	f.runs[id] = inflightRun{keyID: keyID, cancel: cancel}
	return func() {
		f.mu.Lock()
		delete(f.runs, id)
		if left := f.slots[keyID] - slots; left > 0 {
			f.slots[keyID] = left
		} else {
			delete(f.slots, keyID)
		}
		f.mu.Unlock()
	}, true
}

// batchSize returns the number of elements of body when it is a JSON array
// (a JSON-RPC batch), or 0. It scans without decoding or allocating; a
// malformed body is left to the JSON-RPC decoder.
func batchSize(body []byte) int {
	i := 0
	for i < len(body) && (body[i] == ' ' || body[i] == '\t' || body[i] == '\n' || body[i] == '\r') {
		i++
	}
	if i == len(body) || body[i] != '[' {
		return 0
	}
	depth, n, inString, empty := 0, 0, false, true
	for ; i < len(body); i++ {
		c := body[i]
		if inString {
			switch c {
			case '\\':
				i++
			case '"':
				inString = false
			}
			continue
		}
		switch c {
		case '"':
			inString = true
			empty = false
		case '[', '{':
			if depth == 1 {
				empty = false
			}
			depth++
		case ']', '}':
			depth--
			if depth == 0 {
				if empty {
					return 0
				}
				return n + 1
			}
		case ',':
			if depth == 1 {
				n++
			}
		case ' ', '\t', '\n', '\r':
		default:
			if depth == 1 {
				empty = false
			}
		}
	}
	return n + 1
}

// batchTooLarge answers a JSON-RPC batch over the limit with one JSON-RPC
// error (-32600, invalid request) and HTTP 400, as Streamable HTTP asks of
// input the server does not accept.
func batchTooLarge(w http.ResponseWriter, n, limit int) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusBadRequest)
	fmt.Fprintf(w, `{"jsonrpc":"2.0","id":null,"error":{"code":-32600,"message":"a JSON-RPC batch of %d requests exceeds the limit of %d (--max-batch)"}}`+"\n", n, limit)
}

// numberObject is a JSON object decoded as a json.Decoder with UseNumber
// does (numbers stay json.Number, so an integer is hashed and forwarded as
// one), for bodies read with unmarshalBody. null leaves it nil.
type numberObject map[string]any

func (m *numberObject) UnmarshalJSON(b []byte) error {
	if string(bytes.TrimSpace(b)) == "null" {
		*m = nil
		return nil
	}
	v, err := intent.DecodeJSON(b)
	if err != nil {
		return err
	}
	obj, ok := v.(map[string]any)
	if !ok {
		return errors.New("not a JSON object")
	}
	*m = obj
	return nil
}

// lazyObject is a JSON value kept undecoded until it is needed, if ever: the
// SDKs send the arguments of a call twice (params and arguments), and the
// second copy is decoded only when the first is absent. It refers to the
// body buffer rather than copying it: unmarshalBody's buffer is never
// reused, which json.Unmarshal's contract asks of a retained slice.
type lazyObject struct{ raw []byte }

func (l *lazyObject) UnmarshalJSON(b []byte) error {
	l.raw = b
	return nil
}

// object decodes the value as a numberObject; absent or null is nil.
func (l lazyObject) object() (map[string]any, error) {
	if len(l.raw) == 0 {
		return nil, nil
	}
	var m numberObject
	if err := m.UnmarshalJSON(l.raw); err != nil {
		return nil, err
	}
	return m, nil
}

// bodyJSON is a JSON value kept as the bytes of the request body it came
// in, where json.RawMessage would copy them (a plan, sent twice by the
// SDKs). unmarshalBody's buffer is never reused, which json.Unmarshal's
// contract asks of a retained slice.
type bodyJSON []byte

func (b *bodyJSON) UnmarshalJSON(data []byte) error {
	*b = data
	return nil
}
