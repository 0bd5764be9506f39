package plugins

import (
	"context"
	"sync"
)

// pendingCalls are the calls in flight on one of the host's connections
// to an adapter (a hop connection, or a Raw.Session on contract 4), by
// id. The connection's reader (on a hop connection, whichever call is
// reading it) hands each frame to its call (deliver) without waiting for
// anyone; the call's goroutine takes them (next, or hopConn.wait). F is
// the connection's frame. The two connections share this so that a frame
// reaches its call, and a broken connection its calls, the same way on
// both.
type pendingCalls[F any] struct {
	pool *sync.Pool // of *pendingCall[F], with their channel

	mu     sync.Mutex
	nextID uint64
	calls  map[uint64]*pendingCall[F]
	err    error         // why the connection broke, once it has
	done   chan struct{} // closed when it has
}

// pendingCall is a call in flight: the frames the reader received for it,
// which the caller's goroutine takes.
type pendingCall[F any] struct {
	id     uint64
	ready  chan struct{} // signalled when frames were added
	frames []F
	buf    [2]F // frames' first backing array: most calls get one frame
}

func newPendingCalls[F any](pool *sync.Pool) pendingCalls[F] {
	return pendingCalls[F]{pool: pool, calls: map[uint64]*pendingCall[F]{}, done: make(chan struct{})}
}

// newPendingCallPool returns a pool for pendingCalls[F].
func newPendingCallPool[F any]() *sync.Pool {
	return &sync.Pool{New: func() any { return &pendingCall[F]{ready: make(chan struct{}, 1)} }}
}

// deliver hands f to call id, if it is in flight.
func (p *pendingCalls[F]) deliver(id uint64, f F) {
	p.mu.Lock()
	if c := p.calls[id]; c != nil {
		c.frames = append(c.frames, f)
		select {
		case c.ready <- struct{}{}:
		default:
		}
	}
	p.mu.Unlock()
}

// issued says whether id is one a call was given.
func (p *pendingCalls[F]) issued(id uint64) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return id != 0 && id <= p.nextID
}

// add registers a new call, or says the connection has broken (nothing of
// the call was sent: it may go on another connection).
func (p *pendingCalls[F]) add() (*pendingCall[F], bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.err != nil {
		return nil, false
	}
	p.nextID++
	c := p.pool.Get().(*pendingCall[F])
	c.id = p.nextID
	c.frames = c.buf[:0]
	p.calls[c.id] = c
	return c, true
}

// remove ends c: the reader hands it no more frames, and it is recycled.
func (p *pendingCalls[F]) remove(c *pendingCall[F]) {
	p.mu.Lock()
	delete(p.calls, c.id)
	p.mu.Unlock()
	select {
	case <-c.ready:
	default:
	}
	var zero [2]F
	c.frames, c.buf = nil, zero
	p.pool.Put(c)
}

// inFlight is the number of calls in flight.
func (p *pendingCalls[F]) inFlight() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.calls)
}

// next waits for frames for c and returns those received since it last
// did. broken says the connection broke (frames may come with it: the
// result may have come before the break); err is ctx's error if it ended
// first.
func (p *pendingCalls[F]) next(ctx context.Context, c *pendingCall[F]) (frames []F, broken bool, err error) {
	select {
	case <-c.ready:
	case <-p.done:
		broken = true
	case <-ctx.Done():
		return nil, false, ctx.Err()
	}
	return p.take(c), broken, nil
}

// take returns the frames handed to c since it last took them (with
// their buffer, which a caller may append to).
func (p *pendingCalls[F]) take(c *pendingCall[F]) []F {
	p.mu.Lock()
	defer p.mu.Unlock()
	frames := c.frames
	c.frames = nil
	return frames
}

// breakWith records err as why the connection broke and releases its
// calls, unless it broke already; it says whether it did.
func (p *pendingCalls[F]) breakWith(err error) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.err != nil {
		return false
	}
	p.err = err
	close(p.done)
	return true
}
