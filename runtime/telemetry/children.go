package telemetry

import (
	"sync"
	"sync/atomic"
)

// children keeps the children of a metric vector already resolved, by
// their label values, so that counting is a map read: the vector's own
// WithLabelValues hashes and checks the values and takes a lock on every
// call, several times per tool call. The map is replaced, never changed,
// when a child is added: readers take no lock. Its size is the vector's
// own (the callers bound every label value).
type children[K comparable, M any] struct {
	m  atomic.Pointer[map[K]M]
	mu sync.Mutex // serializes adds
}

// get returns the child of k, if it was added.
func (c *children[K, M]) get(k K) (M, bool) {
	if m := c.m.Load(); m != nil {
		v, ok := (*m)[k]
		return v, ok
	}
	var zero M
	return zero, false
}

// add notes v as the child of k.
func (c *children[K, M]) add(k K, v M) {
	c.mu.Lock()
	defer c.mu.Unlock()
	old := c.m.Load()
	n := make(map[K]M, 1)
	if old != nil {
		n = make(map[K]M, len(*old)+1)
		for k2, v2 := range *old {
			n[k2] = v2
		}
	}
	n[k] = v
	c.m.Store(&n)
}
