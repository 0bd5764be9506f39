package httpfront

import (
	"context"
	"errors"
	"log"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// Server serves the plain HTTP/1.1 requests of its connections itself and
// hands every other connection to its net/http Server (the package
// comment says which are which).
type Server struct {
	hs *http.Server

	handoff *handoffListener
	watch   watcher

	mu        sync.Mutex
	listeners map[*net.Listener]struct{}
	conns     map[*conn]struct{}
	fallback  bool // hs.Serve(handoff) started
	done      chan struct{}
	closing   atomic.Bool // Shutdown or Close called

	lean, handedOff atomic.Uint64
}

// New returns a Server for hs: its Handler, timeouts, MaxHeaderBytes,
// ErrorLog, BaseContext and ConnContext. hs serves the connections handed
// to it; shut it down through the Server, not directly.
func New(hs *http.Server) *Server {
	s := &Server{
		hs:        hs,
		listeners: make(map[*net.Listener]struct{}),
		conns:     make(map[*conn]struct{}),
		done:      make(chan struct{}),
	}
	s.handoff = &handoffListener{conns: make(chan net.Conn), closed: make(chan struct{})}
	s.watch.init()
	return s
}

// Stats counts the requests a Server served itself and the connections
// it handed to net/http.
type Stats struct {
	Lean      uint64 // requests served here
	HandedOff uint64 // connections handed to net/http
}

// Stats returns the counts so far.
func (s *Server) Stats() Stats {
	return Stats{Lean: s.lean.Load(), HandedOff: s.handedOff.Load()}
}

// Serve accepts connections on l and serves them until Shutdown or Close,
// when it returns http.ErrServerClosed. It closes l when it returns.
func (s *Server) Serve(l net.Listener) error {
	if !s.trackListener(&l, true) {
		l.Close()
		return http.ErrServerClosed
	}
	defer s.trackListener(&l, false)
	s.startFallback(l.Addr())

	base := context.Background()
	if s.hs.BaseContext != nil {
		if base = s.hs.BaseContext(l); base == nil {
			panic("httpfront: BaseContext returned a nil context")
		}
	}
	base = context.WithValue(base, http.ServerContextKey, s.hs)

	var delay time.Duration
	for {
		rw, err := l.Accept()
		if err != nil {
			if s.closing.Load() {
				return http.ErrServerClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || temporary(err) {
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				s.logf("httpfront: Accept error: %v; retrying in %v", err, delay)
				time.Sleep(delay)
				continue
			}
			return err
		}
		delay = 0
		c := s.newConn(base, rw)
		if c == nil {
			rw.Close()
			continue
		}
		go c.serve()
	}
}

// temporary reports whether err says it is temporary, as accept's EMFILE
// and ECONNABORTED do: net/http's server retries those too.
func temporary(err error) bool {
	var te interface{ Temporary() bool }
	return errors.As(err, &te) && te.Temporary()
}

func (s *Server) startFallback(addr net.Addr) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fallback {
		return
	}
	s.fallback = true
	s.handoff.addr = addr
	go func() {
		if err := s.hs.Serve(s.handoff); err != nil && !errors.Is(err, http.ErrServerClosed) && !s.closing.Load() {
			s.logf("httpfront: net/http server: %v", err)
		}
	}()
}

func (s *Server) trackListener(l *net.Listener, add bool) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if add {
		if s.closing.Load() {
			return false
		}
		s.listeners[l] = struct{}{}
		return true
	}
	delete(s.listeners, l)
	return true
}

func (s *Server) newConn(base context.Context, rw net.Conn) *conn {
	ctx := context.WithValue(base, http.LocalAddrContextKey, rw.LocalAddr())
	if s.hs.ConnContext != nil {
		if ctx = s.hs.ConnContext(ctx, rw); ctx == nil {
			panic("httpfront: ConnContext returned a nil context")
		}
	}
	c := newConn(s, ctx, rw)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing.Load() {
		return nil
	}
	s.conns[c] = struct{}{}
	return c
}

func (s *Server) forget(c *conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
	if s.closing.Load() {
		s.signalDone() // when it was the last
	}
}

func (s *Server) signalDone() {
	s.mu.Lock()
	defer s.mu.Unlock()
	select {
	case <-s.done:
	default:
		if len(s.conns) == 0 {
			close(s.done)
		}
	}
}

// Shutdown stops accepting, closes idle connections, lets each request
// being served finish (its answer says Connection: close), and waits for
// that and for the net/http Server's own Shutdown, until ctx is done.
func (s *Server) Shutdown(ctx context.Context) error {
	s.stop()
	hsErr := make(chan error, 1)
	go func() { hsErr <- s.hs.Shutdown(ctx) }()

	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		s.closeIdle()
		select {
		case <-s.done:
			return <-hsErr
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// Close closes every listener and connection now, its own and the
// net/http Server's.
func (s *Server) Close() error {
	s.stop()
	s.mu.Lock()
	for c := range s.conns {
		c.rwc.Close()
	}
	s.mu.Unlock()
	return s.hs.Close()
}

func (s *Server) stop() {
	s.mu.Lock()
	s.closing.Store(true)
	for l := range s.listeners {
		(*l).Close()
	}
	s.mu.Unlock()
	s.handoff.Close()
	s.signalDone()
}

func (s *Server) closeIdle() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		if c.state.CompareAndSwap(stateIdle, stateClosed) {
			c.rwc.Close()
		}
	}
}

func (s *Server) logf(format string, args ...any) {
	if s.hs.ErrorLog != nil {
		s.hs.ErrorLog.Printf(format, args...)
		return
	}
	log.Printf(format, args...)
}

// handoffListener gives the net/http Server the connections handed to it.
type handoffListener struct {
	conns  chan net.Conn
	closed chan struct{}
	once   sync.Once
	addr   net.Addr
}

func (l *handoffListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

// give hands c to the net/http Server, or closes it when that one is
// closed.
func (l *handoffListener) give(c net.Conn) {
	select {
	case l.conns <- c:
	case <-l.closed:
		c.Close()
	}
}

func (l *handoffListener) Close() error {
	l.once.Do(func() { close(l.closed) })
	return nil
}

func (l *handoffListener) Addr() net.Addr { return l.addr }
