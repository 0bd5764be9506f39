package httpfront

import (
	"context"
	"net"
	"sync"
	"time"

	"github.com/armoriq/controlplane/plugins/rawconn"
)

// watchInterval is how often the watcher looks at the connections whose
// handler runs.
const watchInterval = 100 * time.Millisecond

// watcher notices clients that went away while their handler runs: one
// timer for the Server, armed while handlers run, in place of net/http's
// goroutine reading each connection.
type watcher struct {
	mu      sync.Mutex
	head    *conn // the connections whose handler runs
	gen     uint64
	armed   bool
	timer   *time.Timer
	scratch []watched
}

type watched struct {
	rwc    net.Conn
	cancel context.CancelFunc
}

func (w *watcher) init() {
	w.timer = time.AfterFunc(time.Hour, w.fire)
	w.timer.Stop()
}

// add watches c while its handler runs; cancel cancels the request.
func (w *watcher) add(c *conn, cancel context.CancelFunc) {
	w.mu.Lock()
	c.wgen, c.wcancel = w.gen, cancel
	c.prev, c.next = nil, w.head
	if w.head != nil {
		w.head.prev = c
	}
	w.head = c
	if !w.armed {
		w.armed = true
		w.timer.Reset(watchInterval)
	}
	w.mu.Unlock()
}

// remove stops watching c (again is nothing).
func (w *watcher) remove(c *conn) {
	w.mu.Lock()
	if c.wcancel != nil {
		if c.prev != nil {
			c.prev.next = c.next
		} else {
			w.head = c.next
		}
		if c.next != nil {
			c.next.prev = c.prev
		}
		c.prev, c.next, c.wcancel = nil, nil, nil
	}
	w.mu.Unlock()
}

// fire looks at the connections whose handler was running at the last
// look, and cancels the requests of those whose client closed.
func (w *watcher) fire() {
	w.mu.Lock()
	g := w.gen
	w.gen++
	look := w.scratch[:0]
	for c := w.head; c != nil; c = c.next {
		if c.wgen < g {
			look = append(look, watched{c.rwc, c.wcancel})
		}
	}
	w.mu.Unlock()

	for _, l := range look {
		if peerClosed(l.rwc) {
			l.cancel()
		}
	}

	w.mu.Lock()
	clear(look)
	w.scratch = look[:0]
	if w.head != nil {
		w.timer.Reset(watchInterval)
	} else {
		w.armed = false
	}
	w.mu.Unlock()
}

// peerClosed reports whether the peer of c closed its side (or reset the
// connection), without waiting and without consuming a byte: a request
// pipelined behind the current one is not a close.
func peerClosed(c net.Conn) bool { return rawconn.Peek(c) == rawconn.PeekClosed }
