package store

import (
	"context"
	"database/sql"
	"time"
)

// WAL checkpoints off the commit path. SQLite copies the WAL back into the
// database file (a checkpoint) by default in the COMMIT that takes the WAL
// past 1000 pages: that commit then also writes a few megabytes and fsyncs
// the database file, and every caller whose audit record is in its batch
// waits for it, a latency spike every few hundred calls. Here a connection
// of its own checkpoints (PASSIVE: it never blocks the writer or readers)
// shortly after audit commits, at most every walCheckpointEvery, and once a
// second anyway; the writer's own automatic checkpoint stays as a backstop,
// at walBackstopPages, should this one fall behind. With the audit
// journal the database commits a few times a second, not once per batch of
// calls: a checkpoint a second is enough, and each copies more pages once.
const (
	walCheckpointEvery     = 100 * time.Millisecond
	walCheckpointJournaled = time.Second
	walBackstopPages       = 10000
)

type walCheckpointer struct {
	db    *sql.DB
	every time.Duration // at most one checkpoint per every
	poke  chan struct{}
	stop  chan struct{}
	done  chan struct{}
}

func newWALCheckpointer(db *sql.DB, every time.Duration) *walCheckpointer {
	c := &walCheckpointer{db: db, every: every, poke: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
	go c.run()
	return c
}

// wake asks for a checkpoint soon; it never blocks.
func (c *walCheckpointer) wake() {
	select {
	case c.poke <- struct{}{}:
	default:
	}
}

func (c *walCheckpointer) run() {
	defer close(c.done)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	pace := time.NewTimer(0)
	defer pace.Stop()
	for {
		select {
		case <-c.stop:
			return
		case <-c.poke:
		case <-tick.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		// A failure (the database busy with a schema change, say) is
		// retried at the next wake; the writer's backstop bounds the WAL.
		_, _ = c.db.ExecContext(ctx, "PRAGMA wal_checkpoint(PASSIVE)")
		cancel()
		pace.Reset(c.every)
		select {
		case <-c.stop:
			return
		case <-pace.C:
		}
	}
}

// close stops the checkpointer and closes its connection.
func (c *walCheckpointer) close() error {
	close(c.stop)
	<-c.done
	return c.db.Close()
}
