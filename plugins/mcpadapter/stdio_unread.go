package mcpadapter

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"

	"github.com/armoriq/controlplane/plugins"
)

// Errors with a null id over stdio. A server answers a request it could
// not read (not JSON, or JSON it could not decode) with an error whose id
// is null: it does not know the id. Over HTTP the answer comes on the
// request's own stream, so it is that request's (raw.go, isOurs). Over
// stdio every request in flight, the raw calls' and the SDK client's,
// shares one stream, and the error may be the answer of any of them.
//
// Handing it to a request it might not belong to would give one caller
// an answer meant for another (the error's message and data may quote
// the line the server could not read); ignoring it would leave the
// request it does belong to waiting until its deadline; failing every
// request in flight would let a caller whose arguments the server cannot
// read fail other callers' calls at will, calls that may have run. So an
// error is given to a request only when it can be only that request's:
//
//   - the requests in flight when it came are its suspects, and so are
//     the raw calls that gave up unanswered within the grace period
//     before (the server may have been slow to read them);
//   - a suspect the server answers by its id is not the one it could not
//     read, and stops being a suspect (a server answers every request it
//     read; a call that gave up stays a suspect, since it may well be the
//     one);
//   - when one error has one suspect left, it is that request's answer,
//     as the server wrote it;
//   - when errors are as many as the suspects left (several errors), each
//     of those fails with an error of the adapter's saying so;
//   - when the suspects have not come down to that within a grace period
//     of the first error (unreadGrace), every suspect still waiting fails
//     the same way: the server could not read one of them, and which is
//     not known. Such a call may have run; it is not sent again. Errors
//     that come meanwhile join the first (their requests become suspects
//     too) without extending the period, so that a server writing such
//     errors steadily cannot keep the request it could not read waiting.
//
// With no request in flight the error is logged and dropped. Each step is
// logged at warning level with the ids concerned.

// unreadGrace is how long the requests in flight when a server wrote an
// error with a null id have to be answered, so that the one it could not
// read is the one left, before all those still waiting fail.
const unreadGrace = 2 * time.Second

// unread is what a server could not read: the errors with a null id not
// yet given to a request, and the requests they may answer.
type unread struct {
	n        int       // errors
	err      *rawError // the last error
	suspects map[jsonrpc.ID]struct{}
	timer    *time.Timer
}

// nullIDError handles an error with a null id from the child.
func (c *stdioConn) nullIDError(e *rawError) {
	var sdkIDs []jsonrpc.ID
	c.mu.Lock()
	sdk := c.sdk
	c.mu.Unlock()
	if sdk != nil {
		sdkIDs = sdk.liveIDs()
	}
	c.mu.Lock()
	u := c.unread
	if u == nil {
		u = &unread{suspects: map[jsonrpc.ID]struct{}{}}
		c.unread = u
		c.unreadOn.Store(true)
	}
	u.n++
	u.err = e
	for id, rc := range c.raw {
		if !rc.finished() {
			u.suspects[rawID(id)] = struct{}{}
		}
	}
	for _, id := range sdkIDs {
		u.suspects[id] = struct{}{}
	}
	c.pruneAbandonedLocked(time.Now())
	for id := range c.abandoned {
		u.suspects[rawID(id)] = struct{}{}
	}
	slog.Warn("stdio server answered an error with a null id: it could not read a request",
		"server", c.server, "code", e.Code, "message", e.Message, "requests_in_flight", len(u.suspects))
	give := c.settleLocked(u, true)
	c.mu.Unlock()
	give()
}

// answered notes that the child answered the request with this id: it is
// not one the child could not read.
func (c *stdioConn) answered(raw json.RawMessage) {
	if !c.unreadOn.Load() {
		return
	}
	var v any
	if json.Unmarshal(raw, &v) != nil {
		return
	}
	id, err := jsonrpc.MakeID(v)
	if err != nil || !id.IsValid() {
		return
	}
	c.mu.Lock()
	u := c.unread
	if u == nil {
		c.mu.Unlock()
		return
	}
	if _, ok := u.suspects[id]; !ok {
		c.mu.Unlock()
		return
	}
	delete(u.suspects, id)
	give := c.settleLocked(u, false)
	c.mu.Unlock()
	give()
}

// maxAbandoned bounds the raw calls remembered as given up.
const maxAbandoned = 4096

// gaveUp notes that the raw call with this id gave up unanswered.
func (c *stdioConn) gaveUp(id string) {
	now := time.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	// Pruned now and then rather than each time: calls may give up by
	// the thousand.
	if len(c.abandoned) >= maxAbandoned || now.Sub(c.pruned) > c.graceLocked() {
		c.pruneAbandonedLocked(now)
	}
	if len(c.abandoned) < maxAbandoned {
		c.abandoned[id] = now
	}
}

// answeredLate notes that the child answered a raw call that had given
// up.
func (c *stdioConn) answeredLate(raw json.RawMessage) {
	var id string
	if json.Unmarshal(raw, &id) != nil {
		return
	}
	c.mu.Lock()
	delete(c.abandoned, id)
	c.mu.Unlock()
}

// pruneAbandonedLocked forgets the raw calls that gave up more than the
// grace period ago.
func (c *stdioConn) pruneAbandonedLocked(now time.Time) {
	c.pruned = now
	for id, t := range c.abandoned {
		if now.Sub(t) > c.graceLocked() {
			delete(c.abandoned, id)
		}
	}
}

func (c *stdioConn) graceLocked() time.Duration {
	if c.grace <= 0 {
		return unreadGrace
	}
	return c.grace
}

// settleLocked gives u's errors to their requests if it can, and starts
// the grace timer when arm is set, it cannot, and the timer is not
// running yet. It returns what is to be done once c.mu is released.
func (c *stdioConn) settleLocked(u *unread, arm bool) func() {
	switch {
	case len(u.suspects) == 0:
		c.clearUnreadLocked(u)
		slog.Warn("stdio server's error with a null id answers no request in flight; dropped", "server", c.server, "code", u.err.Code)
		return func() {}
	case u.n == 1 && len(u.suspects) == 1:
		c.clearUnreadLocked(u)
		var id jsonrpc.ID
		for id = range u.suspects {
		}
		slog.Warn("stdio server's error with a null id is the answer of the one request it can be", "server", c.server, "request", id.Raw(), "code", u.err.Code)
		return c.giveLocked(id, u.err.rpcError(), nil)
	case u.n >= len(u.suspects):
		c.clearUnreadLocked(u)
		return c.failSuspectsLocked(u)
	}
	if arm {
		grace := c.graceLocked()
		if u.timer == nil {
			u.timer = time.AfterFunc(grace, func() { c.unreadExpired(u) })
		}
		slog.Warn("stdio server's error with a null id may answer any of several requests; waiting for the others' answers to tell which",
			"server", c.server, "requests", idList(u.suspects), "grace", grace)
	}
	return func() {}
}

// unreadExpired fails the suspects still waiting when the grace period
// ends.
func (c *stdioConn) unreadExpired(u *unread) {
	c.mu.Lock()
	if c.unread != u {
		c.mu.Unlock()
		return
	}
	c.clearUnreadLocked(u)
	give := c.failSuspectsLocked(u)
	c.mu.Unlock()
	give()
}

// failSuspectsLocked fails every suspect of u still waiting with an error
// saying the server could not read one of them.
func (c *stdioConn) failSuspectsLocked(u *unread) func() {
	slog.Warn("stdio server could not read one of several requests in flight and which is not known; they fail",
		"server", c.server, "requests", idList(u.suspects), "errors_with_null_id", u.n, "code", u.err.Code, "message", u.err.Message)
	what := "a request"
	if u.n > 1 {
		what = fmt.Sprintf("%d requests", u.n)
	}
	// The server's message and data are for the log only: they may quote
	// another caller's request.
	err := fmt.Errorf("stdio server %q could not read %s in flight (it answered error %d with a null id, which does not say which), and this call is among the %d it has not answered: it fails, though it may have run",
		c.command, what, u.err.Code, len(u.suspects))
	var gives []func()
	for id := range u.suspects {
		gives = append(gives, c.giveLocked(id, nil, err))
	}
	return func() {
		for _, g := range gives {
			g()
		}
	}
}

// giveLocked returns what gives the request with this id its answer,
// the server's error (rpcErr) or the adapter's (err): a raw call finishes
// with it, the SDK gets a response with it.
func (c *stdioConn) giveLocked(id jsonrpc.ID, rpcErr *plugins.RPCError, err error) func() {
	if s, ok := id.Raw().(string); ok && strings.HasPrefix(s, rawIDPrefix) {
		rc := c.raw[s]
		if rc == nil { // a raw call that gave up: nothing waits for it
			return func() {}
		}
		return func() { rc.finish(nil, rpcErr, err) }
	}
	we := &jsonrpc.Error{Code: jsonrpc.CodeInternalError, Message: fmt.Sprint(err)}
	if rpcErr != nil {
		we = &jsonrpc.Error{Code: rpcErr.Code, Message: rpcErr.Message, Data: rpcErr.Data}
	}
	return func() { c.toSDK(&jsonrpc.Response{ID: id, Error: we}) }
}

func (c *stdioConn) clearUnreadLocked(u *unread) {
	if u.timer != nil {
		u.timer.Stop()
	}
	if c.unread == u {
		c.unread = nil
		c.unreadOn.Store(false)
	}
}

// setGrace sets the grace period of unread (tests).
func (c *stdioConn) setGrace(d time.Duration) {
	c.mu.Lock()
	c.grace = d
	c.mu.Unlock()
}

// unreadSuspects is the number of requests an error with a null id may
// still answer, or -1 when there is none waiting (tests).
func (c *stdioConn) unreadSuspects() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.unread == nil {
		return -1
	}
	return len(c.unread.suspects)
}

func rawID(id string) jsonrpc.ID {
	rid, _ := jsonrpc.MakeID(id)
	return rid
}

// idList lists ids for a log, in order.
func idList(ids map[jsonrpc.ID]struct{}) []string {
	l := make([]string, 0, len(ids))
	for id := range ids {
		l = append(l, fmt.Sprint(id.Raw()))
	}
	slices.Sort(l)
	return l
}
