package store

import (
	"context"
	"sync"
)

// hub fans revocations out to this process's subscribers. Each subscriber
// has its own unbounded queue, so a slow reader never blocks a revocation
// and never loses one.
type hub struct {
	mu     sync.Mutex
	subs   map[*subscriber]struct{}
	closed bool
	done   chan struct{}
}

type subscriber struct {
	mu    sync.Mutex
	queue []Revocation
	wake  chan struct{}
	out   chan Revocation
}

func newHub() *hub {
	return &hub{subs: make(map[*subscriber]struct{}), done: make(chan struct{})}
}

func (h *hub) subscribe(ctx context.Context) (<-chan Revocation, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return nil, errorf("subscribe", ErrClosed, "store is closed")
	}
	s := &subscriber{wake: make(chan struct{}, 1), out: make(chan Revocation)}
	h.subs[s] = struct{}{}
	go h.serve(ctx, s)
	return s.out, nil
}

func (h *hub) serve(ctx context.Context, s *subscriber) {
	defer func() {
		h.mu.Lock()
		delete(h.subs, s)
		h.mu.Unlock()
		close(s.out)
	}()
	for {
		s.mu.Lock()
		q := s.queue
		s.queue = nil
		s.mu.Unlock()
		for _, r := range q {
			select {
			case s.out <- r:
			case <-ctx.Done():
				return
			case <-h.done:
				return
			}
		}
		select {
		case <-s.wake:
		case <-ctx.Done():
			return
		case <-h.done:
			return
		}
	}
}

func (h *hub) publish(r Revocation) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for s := range h.subs {
		s.mu.Lock()
		s.queue = append(s.queue, r)
		s.mu.Unlock()
		select {
		case s.wake <- struct{}{}:
		default:
		}
	}
}

func (h *hub) close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.closed {
		h.closed = true
		close(h.done)
	}
}
