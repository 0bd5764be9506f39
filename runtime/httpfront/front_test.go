package httpfront_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/armoriq/controlplane/plugins/rawconn"
	"github.com/armoriq/controlplane/runtime/httpfront"
)

// testHandler answers with what it saw of the request, and does what its
// path asks (see the cases).
func testHandler() http.Handler {
	mux := http.NewServeMux()
	echo := func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		var keys []string
		for k, vv := range r.Header {
			keys = append(keys, k+"="+strings.Join(vv, ","))
		}
		sort.Strings(keys)
		_, srvOK := r.Context().Value(http.ServerContextKey).(*http.Server)
		_, addrOK := r.Context().Value(http.LocalAddrContextKey).(net.Addr)
		w.Header().Set("Content-Type", "text/plain")
		fmt.Fprintf(w, "%s %s %s host=%s remote=%v ctx=%v,%v len=%d close=%v\n%s\nbody=%q err=%v\n",
			r.Method, r.RequestURI, r.Proto, r.Host, r.RemoteAddr != "", srvOK, addrOK, r.ContentLength, r.Close,
			strings.Join(keys, "\n"), b, err)
	}
	mux.HandleFunc("/", echo)
	mux.HandleFunc("/big", func(w http.ResponseWriter, r *http.Request) {
		w.Write(bytes.Repeat([]byte("0123456789abcdef"), 100<<10/16))
	})
	mux.HandleFunc("/flush", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		for i := range 3 {
			fmt.Fprintf(w, "data: %d\n\n", i)
			w.(http.Flusher).Flush()
		}
	})
	mux.HandleFunc("/rc-flush", func(w http.ResponseWriter, r *http.Request) {
		rc := http.NewResponseController(w)
		if err := rc.Flush(); err != nil {
			panic(err)
		}
		if err := rc.SetWriteDeadline(time.Now().Add(time.Minute)); err != nil {
			panic(err)
		}
		io.WriteString(w, "flushed")
	})
	mux.HandleFunc("/204", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "5")
		w.WriteHeader(http.StatusNoContent)
		_, err := w.Write([]byte("hello"))
		if !errors.Is(err, http.ErrBodyNotAllowed) {
			panic(fmt.Sprint("write on 204: ", err))
		}
	})
	mux.HandleFunc("/304", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		w.Header().Set("ETag", `"x"`)
		w.WriteHeader(http.StatusNotModified)
	})
	mux.HandleFunc("/cl", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "5")
		io.WriteString(w, "hello")
		if _, err := io.WriteString(w, "!"); !errors.Is(err, http.ErrContentLength) {
			panic(fmt.Sprint("write past Content-Length: ", err))
		}
	})
	mux.HandleFunc("/short-cl", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "10")
		io.WriteString(w, "hello")
	})
	mux.HandleFunc("/bad-cl", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "five")
		io.WriteString(w, "hello")
	})
	mux.HandleFunc("/sniff", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "<html><body>hi</body></html>")
	})
	mux.HandleFunc("/nosniff", func(w http.ResponseWriter, r *http.Request) {
		w.Header()["Content-Type"] = nil
		w.Header()["Date"] = nil
		io.WriteString(w, "<html><body>hi</body></html>")
	})
	mux.HandleFunc("/empty", func(w http.ResponseWriter, r *http.Request) {})
	mux.HandleFunc("/status", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(799)
		w.WriteHeader(200) // superfluous
		io.WriteString(w, "odd")
	})
	mux.HandleFunc("/early-hints", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Link", "</a.css>; rel=preload")
		w.WriteHeader(http.StatusEarlyHints)
		io.WriteString(w, "after hints")
	})
	mux.HandleFunc("/close", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Connection", "close")
		io.WriteString(w, "bye")
	})
	mux.HandleFunc("/keep", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Connection", "keep-alive")
		io.WriteString(w, "kept")
	})
	mux.HandleFunc("/noread", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "did not read")
	})
	mux.HandleFunc("/half", func(w http.ResponseWriter, r *http.Request) {
		var b [3]byte
		io.ReadFull(r.Body, b[:])
		r.Body.Close()
		_, err := r.Body.Read(b[:])
		fmt.Fprintf(w, "read %q then %v", b, err)
	})
	mux.HandleFunc("/limit", func(w http.ResponseWriter, r *http.Request) {
		_, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 4))
		fmt.Fprintf(w, "limited: %v", err)
	})
	mux.HandleFunc("/newline-header", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Injected", "a\r\nSet-Cookie: evil=1")
		w.Header()["Bad Name"] = []string{"x"}
		io.WriteString(w, "sanitized")
	})
	mux.HandleFunc("/mutate-after", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Before", "1")
		w.WriteHeader(http.StatusAccepted)
		w.Header().Set("X-After", "1") // not sent: the header was snapshot
		io.WriteString(w, "mutated")
	})
	mux.HandleFunc("/panic", func(w http.ResponseWriter, r *http.Request) {
		panic("boom")
	})
	mux.HandleFunc("/abort", func(w http.ResponseWriter, r *http.Request) {
		panic(http.ErrAbortHandler)
	})
	return mux
}

// servers starts the handler behind a plain net/http Server and behind a
// Front, each on its own loopback listener (raw, if asked).
type servers struct {
	stdAddr, frontAddr string
	front              *httpfront.Server
	logs               *bytes.Buffer
}

func startServers(t testing.TB, h http.Handler, raw bool, tune func(*http.Server)) *servers {
	t.Helper()
	logs := &bytes.Buffer{}
	mk := func() *http.Server {
		hs := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second, ErrorLog: log.New(io.Discard, "", 0)}
		if tune != nil {
			tune(hs)
		}
		return hs
	}
	std := mk()
	lstd, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go std.Serve(lstd)
	fhs := mk()
	fhs.ErrorLog = log.New(syncWriter{logs}, "", 0)
	f := httpfront.New(fhs)
	lf, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if raw {
		lf = rawconn.Listen(lf)
	}
	go f.Serve(lf)
	t.Cleanup(func() {
		std.Close()
		f.Close()
	})
	return &servers{stdAddr: lstd.Addr().String(), frontAddr: lf.Addr().String(), front: f, logs: logs}
}

type syncWriter struct{ b *bytes.Buffer }

var logMu = make(chan struct{}, 1)

func (w syncWriter) Write(p []byte) (int, error) {
	logMu <- struct{}{}
	defer func() { <-logMu }()
	return w.b.Write(p)
}

// exchange sends raw to addr, half-closes nothing, and reads answers until
// the server closes or want answers came (then waits a little for a close).
// It returns the answers, normalized, and whether the server closed.
func exchange(t *testing.T, addr, raw string, want int) (string, bool) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	var out strings.Builder
	for i := 0; i < want; i++ {
		var req *http.Request
		if strings.HasPrefix(raw, "HEAD ") {
			req = &http.Request{Method: http.MethodHead}
		}
		res, err := http.ReadResponse(br, req)
		if err != nil {
			fmt.Fprintf(&out, "read error after %d answers\n", i)
			return out.String(), true
		}
		out.WriteString(normalize(res))
	}
	c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	_, err = br.ReadByte()
	closed := err != nil && !isTimeout(err)
	return out.String(), closed
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// normalize says what a client sees of an answer, less what may differ
// between two correct servers: the Date, and whether a body came with a
// Content-Length or chunked.
func normalize(res *http.Response) string {
	b, err := io.ReadAll(res.Body)
	res.Body.Close()
	h := res.Header.Clone()
	if h.Get("Date") != "" {
		h.Set("Date", "(set)")
	}
	h.Del("Content-Length")
	var keys []string
	for k, vv := range h {
		keys = append(keys, k+": "+strings.Join(vv, ","))
	}
	sort.Strings(keys)
	if len(b) > 200 {
		b = append(b[:100:100], fmt.Sprintf("...(%d bytes)", len(b))...)
	}
	return fmt.Sprintf("%s close=%v\n%s\n%q err=%v\n", res.Status, res.Close, strings.Join(keys, "\n"), b, err)
}

const host = "Host: example.com\r\n"

func post(path, body string, extra ...string) string {
	return "POST " + path + " HTTP/1.1\r\n" + host + strings.Join(extra, "") + "Content-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body
}

func get(path string, extra ...string) string {
	return "GET " + path + " HTTP/1.1\r\n" + host + strings.Join(extra, "") + "\r\n"
}

// diffCases: the raw bytes a client sends, the answers it reads, and
// whether the Front serves them itself (lean) or hands the connection off.
var diffCases = []struct {
	name    string
	raw     string
	answers int
	lean    bool
}{
	{"post", post("/mcp", `{"jsonrpc":"2.0","id":1,"method":"tools/call"}`, "Content-Type: application/json\r\nAuthorization: Bearer x\r\n"), 1, true},
	{"get", get("/x?a=1&b=2"), 1, true},
	{"keep-alive three", post("/a", "1") + get("/b") + post("/c", "333"), 3, true},
	{"pipelined with a close", post("/a", "1") + get("/b", "Connection: close\r\n") + get("/never"), 2, true},
	{"client close", get("/", "Connection: close\r\n"), 1, true},
	{"empty body post", post("/", ""), 1, true},
	{"crlf after post", post("/a", "xy") + "\r\n" + get("/b"), 2, true},
	{"big answer", get("/big"), 1, true},
	{"flushed stream", get("/flush"), 1, true},
	{"response controller", get("/rc-flush"), 1, true},
	{"204 with a body", get("/204") + get("/b"), 2, true},
	{"304", get("/304") + get("/b"), 2, true},
	{"handler content-length", get("/cl") + get("/b"), 2, true},
	{"short content-length", get("/short-cl"), 1, true},
	{"invalid content-length", get("/bad-cl") + get("/b"), 2, true},
	{"sniffed", get("/sniff"), 1, true},
	{"sniffing and date suppressed", get("/nosniff"), 1, true},
	{"empty answer", get("/empty") + get("/b"), 2, true},
	{"odd status", get("/status"), 1, true},
	{"early hints", get("/early-hints"), 2, true},
	{"handler closes", get("/close") + get("/never"), 1, true},
	{"handler keep-alive", get("/keep") + get("/b"), 2, true},
	{"unread body", post("/noread", "abcdef") + get("/b"), 2, true},
	{"unread big body", post("/noread", strings.Repeat("z", 300<<10)) + get("/b"), 1, true},
	{"half read and closed", post("/half", "abcdef") + get("/b"), 2, true},
	{"header injection", get("/newline-header"), 1, true},
	{"header snapshot", get("/mutate-after"), 1, true},
	{"panic", get("/panic"), 0, true},
	{"abort", get("/abort"), 0, true},
	{"bare LF lines", "GET /lf HTTP/1.1\nHost: example.com\nX-A: 1\n\n", 1, true},
	{"LF CR LF end", "GET /lf HTTP/1.1\nHost: example.com\n\r\n", 1, true},
	{"duplicate equal content-length", "POST /d HTTP/1.1\r\n" + host + "Content-Length: 2\r\nContent-Length: 2\r\n\r\nok", 1, true},
	{"options", "OPTIONS /x HTTP/1.1\r\n" + host + "\r\n", 1, true},
	{"absolute URI", "GET http://other.example/x HTTP/1.1\r\n" + host + "\r\n", 1, false},

	{"chunked body", "POST /c HTTP/1.1\r\n" + host + "Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n" + get("/after"), 2, false},
	{"after lean, chunked", post("/a", "1") + "POST /c HTTP/1.1\r\n" + host + "Transfer-Encoding: chunked\r\n\r\n1\r\nz\r\n0\r\n\r\n" + get("/after"), 3, false},
	{"expect", "POST /e HTTP/1.1\r\n" + host + "Expect: 100-continue\r\nContent-Length: 2\r\n\r\nok", 2, false},
	{"upgrade", get("/u", "Connection: Upgrade\r\nUpgrade: websocket\r\n"), 1, false},
	{"head", "HEAD /big HTTP/1.1\r\n" + host + "\r\n", 1, false},
	{"http/1.0", "GET /old HTTP/1.0\r\n\r\n", 1, false},
	{"http/1.0 keep-alive", "GET /old HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", 1, false},
	{"no host", "GET /nohost HTTP/1.1\r\n\r\n", 1, false},
	{"two hosts", "GET /h HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 1, false},
	{"bad host", "GET /h HTTP/1.1\r\nHost: a b\r\n\r\n", 1, false},
	{"bad header name", "GET /h HTTP/1.1\r\n" + host + "Bad Name: x\r\n\r\n", 1, false},
	{"bad header value", "GET /h HTTP/1.1\r\n" + host + "X: a\x01b\r\n\r\n", 1, false},
	{"conflicting content-length", "POST /d HTTP/1.1\r\n" + host + "Content-Length: 2\r\nContent-Length: 3\r\n\r\nok", 1, false},
	{"negative content-length", "POST /d HTTP/1.1\r\n" + host + "Content-Length: -1\r\n\r\n", 1, false},
	{"garbage", "HELLO\r\n\r\n", 1, false},
	{"empty request line", "\r\n\r\n", 1, false},
	{"http/2 preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 1, false},
	{"connect", "CONNECT example.com:443 HTTP/1.1\r\n" + host + "\r\n", 1, false},
	{"options star", "OPTIONS * HTTP/1.1\r\n" + host + "\r\n", 1, false},
	{"big header", get("/big-header", "X-Big: "+strings.Repeat("b", 10<<10)+"\r\n"), 1, false},
	{"partial then EOF", "GET /partial HTTP/1.1\r\nHost: x", 1, false},
}

func TestDifferential(t *testing.T) {
	for _, raw := range []bool{false, true} {
		s := startServers(t, testHandler(), raw, nil)
		for _, tc := range diffCases {
			t.Run(fmt.Sprintf("raw=%v/%s", raw, tc.name), func(t *testing.T) {
				if tc.lean {
					t.Parallel() // a handoff is counted by the Server: those run one at a time
				}
				input := tc.raw
				shown := input
				if len(shown) > 300 {
					shown = shown[:300] + "..."
				}
				want, wantClosed := exchangeMaybeHalfClose(t, s.stdAddr, input, tc.answers)
				before := s.front.Stats()
				got, gotClosed := exchangeMaybeHalfClose(t, s.frontAddr, input, tc.answers)
				if got != want || gotClosed != wantClosed {
					t.Errorf("input %q\nnet/http (closed=%v):\n%s\nfront (closed=%v):\n%s", shown, wantClosed, want, gotClosed, got)
				}
				after := s.front.Stats()
				handedOff := after.HandedOff > before.HandedOff
				if !tc.lean && !handedOff || tc.lean && after.Lean == before.Lean && tc.answers > 0 {
					t.Errorf("input %q: handed off = %v, want %v (stats %+v -> %+v)", shown, handedOff, !tc.lean, before, after)
				}
			})
		}
	}
}

// exchangeEOF sends raw to addr, ends its side, and returns what came
// back, normalized, answer by answer.
func exchangeEOF(t testing.TB, addr string, raw []byte) string {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	c.Write(raw)
	c.(*net.TCPConn).CloseWrite()
	b, err := io.ReadAll(c)
	if err != nil && !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("reading the answers: %v", err)
	}
	br := bufio.NewReader(bytes.NewReader(b))
	var answers []string
	for {
		res, err := http.ReadResponse(br, nil)
		if err != nil {
			break
		}
		answers = append(answers, normalize(res))
	}
	rest, _ := io.ReadAll(br)
	if n := len(answers); n > 0 {
		// The client ended its side: whether the last answer says the
		// server closes too tells it nothing.
		answers[n-1] = strings.Replace(answers[n-1], " close=true\n", " close=false\n", 1)
	}
	return strings.Join(answers, "") + fmt.Sprintf("then %d bytes", len(rest))
}

// FuzzFront sends what a client may send to net/http's server and to a
// Front with the same handler, and compares what each answers.
func FuzzFront(f *testing.F) {
	for _, tc := range diffCases {
		f.Add([]byte(tc.raw))
	}
	s := startServers(f, testHandler(), true, nil)
	f.Fuzz(func(t *testing.T, raw []byte) {
		if bytes.Contains(raw, []byte("/panic")) || bytes.Contains(raw, []byte("/abort")) || bytes.Contains(raw, []byte("/early-hints")) || bytes.Contains(raw, []byte("/flush")) {
			t.Skip("answers that differ by design: none after a panic, interim ones, flush boundaries")
		}
		want := exchangeEOF(t, s.stdAddr, raw)
		got := exchangeEOF(t, s.frontAddr, raw)
		if got != want {
			t.Errorf("input %q\nnet/http:\n%s\nfront:\n%s", raw, want, got)
		}
	})
}

// exchangeMaybeHalfClose is exchange, half-closing the client's side
// after a partial request (so the server sees its end).
func exchangeMaybeHalfClose(t *testing.T, addr, raw string, want int) (string, bool) {
	if !strings.HasSuffix(raw, "Host: x") {
		return exchange(t, addr, raw, want)
	}
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(c, raw)
	c.(*net.TCPConn).CloseWrite()
	b, _ := io.ReadAll(c)
	res, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(b)), nil)
	if err != nil {
		return fmt.Sprintf("no answer (%d bytes)", len(b)), true
	}
	return normalize(res), true
}

// TestClientGoneCancels: a handler waiting on its request's context sees
// it cancelled when the client closes its connection.
func TestClientGoneCancels(t *testing.T) {
	cancelled := make(chan error, 1)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.ReadAll(r.Body)
		select {
		case <-r.Context().Done():
			cancelled <- r.Context().Err()
		case <-time.After(10 * time.Second):
			cancelled <- errors.New("not cancelled within 10s")
		}
	})
	for _, raw := range []bool{false, true} {
		s := startServers(t, h, raw, nil)
		c, err := net.Dial("tcp", s.frontAddr)
		if err != nil {
			t.Fatal(err)
		}
		io.WriteString(c, post("/wait", "{}"))
		time.Sleep(50 * time.Millisecond)
		c.Close()
		if err := <-cancelled; !errors.Is(err, context.Canceled) {
			t.Errorf("raw=%v: the handler's context: %v, want it cancelled", raw, err)
		}
		if st := s.front.Stats(); st.Lean != 1 || st.HandedOff != 0 {
			t.Errorf("raw=%v: stats %+v, want one lean request", raw, st)
		}
	}
}

// TestPipelinedIsNotGone: a request pipelined behind a slow one does not
// cancel it (as in net/http).
func TestPipelinedIsNotGone(t *testing.T) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			select {
			case <-r.Context().Done():
				io.WriteString(w, "cancelled")
				return
			case <-time.After(400 * time.Millisecond):
			}
		}
		io.WriteString(w, "done "+r.URL.Path)
	})
	s := startServers(t, h, true, nil)
	got, closed := exchange(t, s.frontAddr, get("/slow")+get("/next"), 2)
	if !strings.Contains(got, `"done /slow"`) || !strings.Contains(got, `"done /next"`) || closed {
		t.Errorf("pipelined behind a slow request: closed=%v\n%s", closed, got)
	}
}

// TestTimeouts: a client that idles, or sends its header too slowly, is
// closed; one that does not read its answer is cut at WriteTimeout.
func TestTimeouts(t *testing.T) {
	s := startServers(t, testHandler(), true, func(hs *http.Server) {
		hs.IdleTimeout = 300 * time.Millisecond
		hs.ReadHeaderTimeout = 300 * time.Millisecond
	})
	for _, tc := range []struct{ name, raw string }{
		{"idle after an answer", get("/a")},
		{"idle before a request", ""},
		{"slow header", "GET /slow HTTP/1.1\r\nHost: x\r\n"},
	} {
		c, err := net.Dial("tcp", s.frontAddr)
		if err != nil {
			t.Fatal(err)
		}
		io.WriteString(c, tc.raw)
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, err = io.ReadAll(c)
		c.Close()
		if err != nil {
			t.Errorf("%s: the server did not close within 5s: %v", tc.name, err)
		}
	}
}

// TestShutdown: Shutdown closes idle connections, lets a running request
// finish with Connection: close, and returns when it has.
func TestShutdown(t *testing.T) {
	started := make(chan struct{})
	release := make(chan struct{})
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			close(started)
			<-release
		}
		io.WriteString(w, "ok")
	})
	s := startServers(t, h, true, nil)

	idle, err := net.Dial("tcp", s.frontAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	io.WriteString(idle, get("/a"))
	ibr := bufio.NewReader(idle)
	res, err := http.ReadResponse(ibr, nil)
	if err != nil || res.Close {
		t.Fatalf("first answer: %v", err)
	}
	io.ReadAll(res.Body)

	busy, err := net.Dial("tcp", s.frontAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	io.WriteString(busy, get("/slow"))
	<-started

	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		done <- s.front.Shutdown(ctx)
	}()
	idle.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := ibr.ReadByte(); err != io.EOF {
		t.Errorf("idle connection after Shutdown: %v, want it closed", err)
	}
	select {
	case err := <-done:
		t.Fatalf("Shutdown returned (%v) while a request ran", err)
	case <-time.After(100 * time.Millisecond):
	}
	close(release)
	busy.SetReadDeadline(time.Now().Add(5 * time.Second))
	res, err = http.ReadResponse(bufio.NewReader(busy), nil)
	if err != nil || !res.Close {
		t.Fatalf("running request's answer: %v (close=%v), want it with Connection: close", err, res != nil && res.Close)
	}
	if err := <-done; err != nil {
		t.Errorf("Shutdown: %v", err)
	}
	if _, err := net.Dial("tcp", s.frontAddr); err == nil {
		t.Errorf("dial after Shutdown succeeded")
	}
}

// TestPanicLogged: a handler's panic is logged with its stack, and the
// connection closes without an answer; http.ErrAbortHandler is not logged.
func TestPanicLogged(t *testing.T) {
	s := startServers(t, testHandler(), true, nil)
	exchange(t, s.frontAddr, get("/abort"), 0)
	exchange(t, s.frontAddr, get("/panic"), 0)
	time.Sleep(50 * time.Millisecond)
	logMu <- struct{}{}
	logs := s.logs.String()
	<-logMu
	if !strings.Contains(logs, "http: panic serving") || !strings.Contains(logs, "boom") || strings.Count(logs, "panic serving") != 1 {
		t.Errorf("logs after a panic and an abort:\n%s", logs)
	}
}

// TestAnswerBeforeUnreadBody: a handler that refuses a large body without
// reading it (as the gateway's 413) gets its answer to a client still
// sending the body: the connection is not reset under it.
func TestAnswerBeforeUnreadBody(t *testing.T) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Connection", "close")
		http.Error(w, "too large", http.StatusRequestEntityTooLarge)
	})
	s := startServers(t, h, true, nil)
	for _, addr := range []string{s.stdAddr, s.frontAddr} {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(10 * time.Second))
		const size = 8 << 20
		io.WriteString(c, "POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: "+strconv.Itoa(size)+"\r\n\r\n")
		go func() {
			chunk := bytes.Repeat([]byte("x"), 64<<10)
			for sent := 0; sent < size; sent += len(chunk) {
				if _, err := c.Write(chunk); err != nil {
					return
				}
			}
		}()
		time.Sleep(50 * time.Millisecond)
		res, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Errorf("%s: reading the answer while still sending: %v", addr, err)
		} else if res.StatusCode != http.StatusRequestEntityTooLarge {
			t.Errorf("%s: status %d, want 413", addr, res.StatusCode)
		}
		c.Close()
	}
}
