package store

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/armoriq/controlplane/runtime/telemetry/cputime"
)

// BenchmarkAppendAudit measures the audit log's commit cost with 1 and 16
// concurrent callers, fsync on (SQLite synchronous=FULL; PostgreSQL's
// default synchronous_commit=on):
//
//   - record: one record per op, waited for.
//   - call: one allowed call per op, as the gateway makes it: the request
//     record is waited for (the upstream may not run before it is
//     durable), the outcome is appended from a goroutine and not waited
//     for by the call; the benchmark ends once every outcome is committed.
//     request-wait-µs is the mean time a call waits for its request record
//     (the latency audit-before-action adds), p99-wait-µs its 99th
//     percentile; calls/s counts calls whose two records are committed.
//     Between the request's commit and the outcome, and between the
//     outcome and the next request, the caller pauses callGap: the
//     upstream's work, and the answer's way to the client and back.
//     commits/call is how many transactions (fsyncs) a call cost;
//     ARMORIQ_BENCH_NO_LINGER=1 turns off the outcome's linger
//     (groupcommit.go), to compare.
//
// cpu-µs/op is the CPU time (user and system, every goroutine, the
// writer's commits and fsyncs included) the process spent per op: on a
// machine shared with other work it moves far less than ns/op.
//
// sqlite is the store as the gateway opens it, with its audit journal
// (journal.go): a batch is durable after one synced write, and
// reaches the database later, with others; sqlite-direct commits every
// batch to the database itself (audit_journal=off). The benchmark ends
// once the journaled records are in the database, and their CPU counts.
func BenchmarkAppendAudit(b *testing.B) {
	direct := sqliteEngine
	direct.name = "sqlite-direct"
	direct.newDB = func(t testing.TB) string { return sqliteEngine.directDSN(sqliteEngine.newDB(t)) }
	for _, e := range []engine{sqliteEngine, direct, postgresEngine} {
		for _, callers := range []int{1, 16} {
			for _, mode := range []string{"record", "call"} {
				b.Run(fmt.Sprintf("%s/callers=%d/%s", e.name, callers, mode), func(b *testing.B) {
					benchAppend(b, e, callers, mode == "call")
				})
			}
		}
	}
}

// callGap is the pause of a benchmarked call between its records.
const callGap = 200 * time.Microsecond

func benchAppend(b *testing.B, e engine, callers int, pairs bool) {
	s := open(b, e.newDB(b))
	if os.Getenv("ARMORIQ_BENCH_NO_LINGER") != "" {
		s.(*sqlStore).audit.linger = 0
	}
	ctx := context.Background()
	waits := make([][]time.Duration, callers)
	var outcomes sync.WaitGroup
	b.ReportAllocs()
	b.ResetTimer()
	cpu0, cpuOK := cputime.Process()
	var wg sync.WaitGroup
	for w := range callers {
		n := b.N / callers
		if w < b.N%callers {
			n++
		}
		wg.Go(func() {
			for i := range n {
				rec := auditRec(i)
				if !pairs {
					if _, err := s.AppendAudit(ctx, rec); err != nil {
						b.Error(err)
						return
					}
					continue
				}
				rec.Decision, rec.Phase, rec.Outcome, rec.DurationMS = Allowed, PhaseRequest, "", 0
				start := time.Now()
				seq, err := s.AppendAudit(ctx, rec)
				waits[w] = append(waits[w], time.Since(start))
				if err != nil {
					b.Error(err)
					return
				}
				time.Sleep(callGap)
				out := rec
				out.Phase, out.Concludes, out.Outcome, out.DurationMS = PhaseOutcome, seq, "ok", 1
				// As the gateway appends an outcome: detached, nobody waits.
				outcomes.Add(1)
				s.(DetachedAppender).AppendAuditDetached(out, func(_ int64, err error) {
					if err != nil {
						b.Error(err)
					}
					outcomes.Done()
				})
				time.Sleep(callGap)
			}
		})
	}
	wg.Wait()
	outcomes.Wait()
	// With a journal, the records' way into the database counts too.
	if err := s.(*sqlStore).auditSynced(ctx, "bench"); err != nil {
		b.Fatal(err)
	}
	if cpu1, ok := cputime.Process(); ok && cpuOK {
		b.ReportMetric(float64((cpu1-cpu0).Microseconds())/float64(b.N), "cpu-µs/op")
	}
	elapsed := b.Elapsed().Seconds()
	if !pairs {
		b.ReportMetric(float64(b.N)/elapsed, "records/s")
		return
	}
	var all []time.Duration
	var sum time.Duration
	for _, ws := range waits {
		all = append(all, ws...)
		for _, d := range ws {
			sum += d
		}
	}
	slices.Sort(all)
	b.ReportMetric(float64(b.N)/elapsed, "calls/s")
	b.ReportMetric(float64(s.(*sqlStore).audit.commits.Load())/float64(b.N), "commits/call")
	if len(all) > 0 {
		b.ReportMetric(float64(sum.Microseconds())/float64(len(all)), "request-wait-µs")
		b.ReportMetric(float64(all[len(all)*99/100].Microseconds()), "p99-wait-µs")
	}
}

// BenchmarkCheckAPIKey is the per-request cost of checking a key against its
// stored hash, without the database: parse, SHA-256, constant-time compare.
func BenchmarkCheckAPIKey(b *testing.B) {
	full, _, hash := GenerateAPIKey()
	b.ReportAllocs()
	for b.Loop() {
		id, secret, err := ParseAPIKey(full)
		if err != nil || !CheckAPISecret(id, secret, hash) {
			b.Fatal("key does not check")
		}
	}
}

// BenchmarkSQLiteAuditInsert is the cost of the audit journal's applier
// putting records into a SQLite audit_log, per record: the prepared INSERT
// of each row and, every applyBatch records, the transaction's head move
// and commit (synchronous=NORMAL, WAL, as the applier commits), after
// 100,000 records already stored. Records come in pairs, a request and its
// outcome, sharing a request id.
//
//   - table=bigint-pk is audit_log as migrations 1 to 6 left it (seq BIGINT
//     PRIMARY KEY: a hidden rowid, and a unique index on seq besides the
//     table's B-tree); table=rowid as migration 7 rebuilds it (seq INTEGER
//     PRIMARY KEY).
//   - ids=random: request ids as identity.NewRequestID makes them, random,
//     so each call's entry in the index on request_id lands on a leaf page
//     of its own; ids=ordered: ids that grow with time (as a ULID's would),
//     so those entries go where the last ones went.
//
// wal-pages/record is how many pages the commits wrote to the WAL (every
// page a batch touched: a pwrite now and a checkpoint later),
// db-bytes/record the database file's size over the records it holds:
// both exact, unlike the times on a shared machine.
func BenchmarkSQLiteAuditInsert(b *testing.B) {
	for _, tt := range []struct {
		name    string
		steps   []migration
		ordered bool
	}{
		{"table=bigint-pk/ids=random", migrations[:6], false},
		{"table=rowid/ids=random", migrations, false},
		{"table=rowid/ids=ordered", migrations, true},
	} {
		b.Run(tt.name, func(b *testing.B) { benchSQLiteInsert(b, tt.steps, tt.ordered) })
	}
}

func benchSQLiteInsert(b *testing.B, steps []migration, orderedIDs bool) {
	ctx := context.Background()
	// As the writer's, with no checkpoints: the file's size is measured.
	s := openSQLiteWriter(b, ctx, filepath.Join(b.TempDir(), "armoriq.db"), "&_pragma=synchronous(NORMAL)&_txlock=immediate&_pragma=wal_autocheckpoint(0)", steps)
	db := s.w
	const stored = 100000
	recs := make([]*AuditRecord, stored+b.N)
	prev := zeroHash
	rnd := rand.New(rand.NewPCG(1, 2))
	var id string
	for i := range recs {
		r := request(i)
		switch {
		case i%2 == 1:
			r = outcome(i-1, int64(i))
		case orderedIDs:
			id = fmt.Sprintf("req_%012x%012x", i, rnd.Uint64()>>16)
		default:
			id = fmt.Sprintf("req_%016x%08x", rnd.Uint64(), rnd.Uint32())
		}
		r.RequestID = id
		r.Seq, r.Time, r.PrevHash, r.HashVersion = int64(i+1), time.Unix(1700000000, int64(i)*1e6).UTC(), prev, auditHashVersion
		r.Hash = AuditHash(&r)
		prev = r.Hash
		recs[i] = &r
	}
	insert := func(recs []*AuditRecord) {
		for len(recs) > 0 {
			n := min(len(recs), applyBatch)
			batch := recs[:n]
			recs = recs[n:]
			tx, err := db.BeginTx(ctx, nil)
			if err != nil {
				b.Fatal(err)
			}
			last := batch[n-1]
			if err := s.insertRows(ctx, tx, batch, last.Seq, last.Hash, true); err != nil {
				b.Fatal(err)
			}
			if err := tx.Commit(); err != nil {
				b.Fatal(err)
			}
		}
	}
	insert(recs[:stored])
	if _, err := db.ExecContext(ctx, `PRAGMA wal_checkpoint(TRUNCATE)`); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	cpu0, cpuOK := cputime.Process()
	insert(recs[stored:])
	cpu1, ok := cputime.Process()
	b.StopTimer()
	if ok && cpuOK {
		b.ReportMetric(float64((cpu1-cpu0).Microseconds())/float64(b.N), "cpu-µs/op")
	}
	var busy, walPages, moved, size int64
	if err := db.QueryRowContext(ctx, `PRAGMA wal_checkpoint(PASSIVE)`).Scan(&busy, &walPages, &moved); err != nil || busy != 0 {
		b.Fatalf("checkpoint: busy %d, %v", busy, err)
	}
	b.ReportMetric(float64(walPages)/float64(b.N), "wal-pages/record")
	if _, err := db.ExecContext(ctx, `PRAGMA wal_checkpoint(TRUNCATE)`); err != nil {
		b.Fatal(err)
	}
	if err := db.QueryRowContext(ctx, `SELECT page_count * page_size FROM pragma_page_count(), pragma_page_size()`).Scan(&size); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(size)/float64(len(recs)), "db-bytes/record")
}
