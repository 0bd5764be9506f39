package gateway

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"runtime/debug"
	"time"
)

// handlerFunc is an HTTP handler that returns its error instead of writing it.
type handlerFunc func(w http.ResponseWriter, r *http.Request) error

// errorBody is the JSON shape of every error answer. It serves the admin API
// ("error") and the SDKs, which read "message", "success" and "enforcement".
type errorBody struct {
	Success     bool         `json:"success"`
	Message     string       `json:"message"`
	Error       errorDetail  `json:"error"`
	Enforcement *Enforcement `json:"enforcement,omitempty"`
	// DelegationContext repeats enforcement.delegation_context at the top
	// level, where some SDK versions look for it.
	DelegationContext map[string]any `json:"delegation_context,omitempty"`
}

type errorDetail struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// handle adapts a handlerFunc: it recovers panics, renders errors in one
// format, and logs each failed request once without secrets.
func (s *Server) handle(h handlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		err := func() (err error) {
			defer func() {
				if p := recover(); p != nil {
					if p == http.ErrAbortHandler {
						panic(p)
					}
					err = internal(fmt.Errorf("panic: %v\n%s", p, debug.Stack()), "handling the request")
				}
			}()
			return h(w, r)
		}()
		if err == nil {
			return
		}
		e := asError(err)
		status, code := statusOf(e.Kind)
		level := slog.LevelInfo
		if status >= 500 {
			level = slog.LevelError
		}
		// Messages quote what callers sent (ids, references, paths): a
		// credential among them is redacted before the line is written.
		s.log.LogAttrs(r.Context(), level, "request failed",
			slog.String("method", r.Method), slog.String("path", scrubText(r.URL.Path)),
			slog.Int("status", status), slog.String("code", code),
			slog.String("error", scrubText(e.Error())), slog.Duration("duration", time.Since(start)))
		writeError(w, e)
	})
}

// writeError renders e. It is the only place an *Error becomes a response.
func writeError(w http.ResponseWriter, e *Error) {
	status, code := statusOf(e.Kind)
	if e.Kind == KindRevoked {
		w.Header().Set("X-Armoriq-Revoked", "true")
	}
	switch {
	case e.Challenge != "":
		w.Header().Set("WWW-Authenticate", e.Challenge)
	case status == http.StatusUnauthorized:
		w.Header().Set("WWW-Authenticate", `Bearer realm="armoriq"`)
	}
	if e.Kind == KindTooManyRequests {
		w.Header().Set("Retry-After", "1")
	}
	msg := e.Message
	if status >= 500 && e.Kind == KindInternal {
		msg = "internal error"
	}
	body := errorBody{
		Success:     false,
		Message:     msg,
		Error:       errorDetail{Code: code, Message: msg},
		Enforcement: e.Enforcement,
	}
	if e.Enforcement != nil {
		body.DelegationContext = e.Enforcement.DelegationContext
	}
	writeJSON(w, status, body)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
}

// readBody reads a request body whole (bounded by limitBodies). With a
// declared length it reads into one buffer of that size, allocated after
// the first 64 KiB arrived, so a large body costs its size once and a
// client that declares a length and sends nothing costs little.
func readBody(r *http.Request) ([]byte, error) {
	n := r.ContentLength
	if n <= 0 {
		b, err := io.ReadAll(r.Body)
		if err != nil {
			return nil, bodyError(err, "the request body")
		}
		return b, nil
	}
	const first = 64 << 10
	buf := make([]byte, min(n, first))
	got, err := io.ReadFull(r.Body, buf)
	if err == nil && n > first {
		whole := make([]byte, n)
		copy(whole, buf)
		buf = whole
		var more int
		more, err = io.ReadFull(r.Body, buf[got:])
		got += more
	}
	if err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
			return nil, errorf(KindInvalid, "request body ended after %d of its %d bytes", got, n)
		}
		return nil, bodyError(err, "the request body")
	}
	return buf, nil
}

// unmarshalBody reads a JSON request body into v with json.Unmarshal, which
// decodes in place: unlike a json.Decoder it keeps no second, growing copy
// of the body. It does not keep numbers as json.Number, so v must hold no
// interface value but behind a numberObject or a lazyObject field.
func unmarshalBody(r *http.Request, v any) error {
	body, err := readBody(r)
	if err != nil {
		return err
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return errorf(KindInvalid, "request body is empty: a JSON object is required")
	}
	if err := json.Unmarshal(body, v); err != nil {
		return errorf(KindInvalid, "request body is not valid JSON: %v", err)
	}
	return nil
}

// decodeJSON reads a JSON request body into v, strict about trailing
// data. The body was bounded by limitBodies. Unknown fields are accepted:
// the SDKs add fields over time.
func decodeJSON(r *http.Request, v any) error {
	dec := json.NewDecoder(r.Body)
	dec.UseNumber()
	if err := dec.Decode(v); err != nil {
		var mbe *http.MaxBytesError
		switch {
		case errors.As(err, &mbe):
			return tooLarge(mbe.Limit)
		case errors.Is(err, io.EOF):
			return errorf(KindInvalid, "request body is empty: a JSON object is required")
		default:
			return errorf(KindInvalid, "request body is not valid JSON: %v", err)
		}
	}
	if dec.More() {
		return errorf(KindInvalid, "request body has data after the JSON object")
	}
	return nil
}
