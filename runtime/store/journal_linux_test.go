package store

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/armoriq/controlplane/runtime/telemetry/cputime"
	"golang.org/x/sys/unix"
)

// On Linux a batch is written and synced by one pwritev2 with RWF_DSYNC,
// or by pwrite and fdatasync once the kernel refuses that
// (journal_linux.go).

// requireDsyncWrites skips t unless this kernel and file system take
// pwritev2 with RWF_DSYNC.
func requireDsyncWrites(t *testing.T) {
	t.Helper()
	f, err := os.Create(filepath.Join(t.TempDir(), "probe"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := unix.Pwritev2(int(f.Fd()), [][]byte{[]byte("x")}, 0, unix.RWF_DSYNC); err != nil {
		t.Skipf("pwritev2 with RWF_DSYNC here: %v", err)
	}
}

// copyFiles copies the files from to to, for each suffix that exists.
func copyFiles(t *testing.T, from, to string, suffixes ...string) {
	t.Helper()
	for _, s := range suffixes {
		b, err := os.ReadFile(from + s)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err == nil {
			err = os.WriteFile(to+s, b, 0o600)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

// TestJournalWriteSyscalls appends calls from four goroutines with the
// journal's pwritev2 as the kernel answers it, or failing as an older
// kernel's would, then opens a copy of the database as it was before the
// appends with the journal they left: the open reads every record back
// from the journal (none is in that database), in a chain that verifies,
// equal to the records of the store that wrote them.
func TestJournalWriteSyscalls(t *testing.T) {
	sys := unix.Pwritev2
	refuse := func(errno error) func(int64, int, [][]byte, int64, int) (int, error) {
		return func(int64, int, [][]byte, int64, int) (int, error) { return -1, errno }
	}
	for _, tt := range []struct {
		name string
		// pwritev2 stands in for the system call; call counts from 1.
		pwritev2 func(call int64, fd int, iovs [][]byte, off int64, flags int) (int, error)
		refused  bool  // whether the journal falls back
		calls    int64 // how many calls it makes then, if it falls back
		real     bool  // the case needs the kernel to take RWF_DSYNC
	}{
		{name: "pwritev2 with RWF_DSYNC", real: true,
			pwritev2: func(_ int64, fd int, iovs [][]byte, off int64, flags int) (int, error) {
				return sys(fd, iovs, off, flags)
			}},
		{name: "short writes", real: true,
			pwritev2: func(_ int64, fd int, iovs [][]byte, off int64, flags int) (int, error) {
				b := iovs[0]
				return sys(fd, [][]byte{b[:max(1, len(b)/3)]}, off, flags)
			}},
		{name: "ENOSYS", refused: true, calls: 1,
			pwritev2: refuse(unix.ENOSYS)},
		{name: "EOPNOTSUPP", refused: true, calls: 1,
			pwritev2: refuse(unix.EOPNOTSUPP)},
		{name: "EINVAL", refused: true, calls: 1,
			pwritev2: refuse(unix.EINVAL)},
		{name: "refused after a short write", refused: true, calls: 2, real: true,
			pwritev2: func(call int64, fd int, iovs [][]byte, off int64, flags int) (int, error) {
				if call > 1 {
					return -1, unix.EOPNOTSUPP
				}
				b := iovs[0]
				return sys(fd, [][]byte{b[:len(b)/2]}, off, flags)
			}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if tt.real {
				requireDsyncWrites(t)
			}
			dsn, path := journalDB(t)
			s := open(t, dsn)
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			// The database before the appends, and its (empty) journal.
			before := filepath.Join(filepath.Dir(path), "before.db")
			copyFiles(t, path, before, "", "-wal")

			s = open(t, dsn)
			j := s.(*sqlStore).journal
			var calls atomic.Int64
			j.dw.pwritev2 = func(fd int, iovs [][]byte, off int64, flags int) (int, error) {
				if flags != unix.RWF_DSYNC || len(iovs) != 1 {
					return -1, fmt.Errorf("pwritev2 called with flags %#x, %d buffers; want RWF_DSYNC, one", flags, len(iovs))
				}
				return tt.pwritev2(calls.Add(1), fd, iovs, off, flags)
			}
			appendCalls(t, s, 4, 25)
			if j.dw.refused != tt.refused {
				t.Errorf("refused = %v; want %v", j.dw.refused, tt.refused)
			}
			if tt.refused && calls.Load() != tt.calls {
				t.Errorf("pwritev2 called %d times; want %d (the fallback is for good)", calls.Load(), tt.calls)
			}
			if !tt.refused && calls.Load() == 0 {
				t.Errorf("pwritev2 never called")
			}
			want := records(t, s)
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}

			copyFiles(t, path, before, journalSuffix)
			b := open(t, "sqlite:"+before)
			checkChain(t, b, 200)
			got := records(t, b)
			for i := range want {
				if got[i].Seq != want[i].Seq || string(got[i].Hash) != string(want[i].Hash) || got[i].RequestID != want[i].RequestID {
					t.Fatalf("record %d read back from the journal: seq %d, %q; want seq %d, %q, the same hash",
						i+1, got[i].Seq, got[i].RequestID, want[i].Seq, want[i].RequestID)
				}
			}
		})
	}
}

// appendCalls appends calls (a request, then its outcome) from callers
// goroutines, n each.
func appendCalls(t *testing.T, s Store, callers, n int) {
	t.Helper()
	var wg sync.WaitGroup
	for w := range callers {
		wg.Go(func() {
			for i := range n {
				seq, err := s.AppendAudit(ctxT(t), request(w*1000+i))
				if err == nil {
					_, err = s.AppendAudit(ctxT(t), outcome(w*1000+i, seq))
				}
				if err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
}

// TestJournalWriteFails fails the journal's pwritev2 with an error that is
// not a refusal of the call: the batch fails (its callers get
// ErrUnavailable), the journal does not fall back, and the next batch takes
// the failed one's place.
func TestJournalWriteFails(t *testing.T) {
	dsn, _ := journalDB(t)
	s := open(t, dsn)
	appendN(t, s, 2)
	j := s.(*sqlStore).journal
	j.dw.pwritev2 = func(int, [][]byte, int64, int) (int, error) { return -1, unix.EIO }
	_, err := s.AppendAudit(ctxT(t), request(100))
	if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), unix.EIO.Error()) {
		t.Fatalf("append while pwritev2 fails with EIO: %v; want ErrUnavailable saying %v", err, unix.EIO)
	}
	if j.dw.refused {
		t.Fatal("the journal fell back to pwrite after EIO; want only ENOSYS, EOPNOTSUPP or EINVAL to do that")
	}
	j.dw.pwritev2 = nil
	if seq, err := s.AppendAudit(ctxT(t), request(200)); err != nil || seq != 3 {
		t.Fatalf("append after the failure: seq %d, %v; want 3", seq, err)
	}
	checkChain(t, s, 3)
}

// BenchmarkJournalWrite is the cost of making one batch durable in the
// journal's file alone (no store around it): one pwritev2 with RWF_DSYNC,
// or a pwrite and an fdatasync (the fallback), at successive offsets of a
// preallocated file, as the journal writes. cpu-µs/op is the process's
// CPU time per batch.
func BenchmarkJournalWrite(b *testing.B) {
	for _, size := range []int{512, 8 << 10} {
		for _, mode := range []string{"pwritev2-dsync", "pwrite-fdatasync"} {
			b.Run(fmt.Sprintf("bytes=%d/%s", size, mode), func(b *testing.B) {
				path := filepath.Join(b.TempDir(), "journal")
				f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
				if err != nil {
					b.Fatal(err)
				}
				defer f.Close()
				j := &auditJournal{f: f, path: path}
				if err := j.grow(journalInitial); err != nil {
					b.Fatal(err)
				}
				j.dw.refused = mode == "pwrite-fdatasync"
				buf := make([]byte, size)
				off := int64(0)
				b.ReportAllocs()
				b.ResetTimer()
				cpu0, cpuOK := cputime.Process()
				for range b.N {
					if off+int64(size) > j.size {
						off = 0
					}
					if err := j.writeSynced(buf, off); err != nil {
						b.Fatal(err)
					}
					off += int64(size)
				}
				cpu1, ok := cputime.Process()
				b.StopTimer()
				if ok && cpuOK {
					b.ReportMetric(float64((cpu1-cpu0).Microseconds())/float64(b.N), "cpu-µs/op")
				}
				if mode == "pwritev2-dsync" && j.dw.refused {
					b.Skip("the kernel refuses pwritev2 with RWF_DSYNC")
				}
			})
		}
	}
}

// TestRawSyncFallsBack: the journal writes with a raw system call while
// syncs are quick, and through the runtime for rawSyncPause after one that
// took longer than rawSyncMax.
func TestRawSyncFallsBack(t *testing.T) {
	if runtime.GOMAXPROCS(0) < 2 {
		t.Skip("with GOMAXPROCS=1 every write goes through the runtime")
	}
	is := func(f, g func(int, [][]byte, int64, int) (int, error)) bool {
		return reflect.ValueOf(f).Pointer() == reflect.ValueOf(g).Pointer()
	}
	t0 := time.Now()
	var w durableWriter
	if !is(w.pwritev2Of(), rawPwritev2) {
		t.Fatal("a new journal does not write with the raw system call")
	}
	w.took(t0, t0.Add(rawSyncMax/2), nil)
	if !is(w.pwritev2Of(), rawPwritev2) {
		t.Fatal("a quick sync sent the next write through the runtime")
	}
	// A slow sync: the runtime's writes follow, for the pause and then
	// until one is quick. Slow ones meanwhile do not extend the pause.
	end := t0.Add(3 * rawSyncMax)
	w.took(t0, end, nil)
	steps := []struct {
		name       string
		start, end time.Duration // after the slow sync's end
		err        error
		want       string // the write after this one: raw or runtime
	}{
		{"a quick write within the pause", rawSyncPause / 2, rawSyncPause/2 + time.Millisecond, nil, "runtime"},
		{"a slow write after the pause", rawSyncPause, rawSyncPause + 2*rawSyncMax, nil, "runtime"},
		{"a failed quick write after the pause", rawSyncPause + 3*rawSyncMax, rawSyncPause + 3*rawSyncMax + time.Millisecond, errors.New("EIO"), "runtime"},
		{"a quick write after the pause", rawSyncPause + 4*rawSyncMax, rawSyncPause + 4*rawSyncMax + time.Millisecond, nil, "raw"},
	}
	for _, st := range steps {
		if !is(w.pwritev2Of(), unix.Pwritev2) {
			t.Fatalf("before %s: the write is raw; want it through the runtime", st.name)
		}
		w.took(end.Add(st.start), end.Add(st.end), st.err)
		want := map[string]func(int, [][]byte, int64, int) (int, error){"raw": rawPwritev2, "runtime": unix.Pwritev2}[st.want]
		if !is(w.pwritev2Of(), want) {
			t.Fatalf("after %s: the next write is not %s", st.name, st.want)
		}
	}
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	if !is(w.pwritev2Of(), unix.Pwritev2) {
		t.Fatal("with GOMAXPROCS=1 a write is raw; it would hold the only processor")
	}
}

// TestRawPwritev2 writes with the raw system call at an offset and reads
// the file back.
func TestRawPwritev2(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "j"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	n, err := rawPwritev2(int(f.Fd()), [][]byte{[]byte("hello")}, 3, unix.RWF_DSYNC)
	if err != nil {
		t.Skipf("pwritev2 with RWF_DSYNC here: %v", err)
	}
	if n != 5 {
		t.Fatalf("wrote %d bytes, want 5", n)
	}
	if _, err := rawPwritev2(-1, [][]byte{[]byte("x")}, 0, 0); err != unix.EBADF {
		t.Errorf("a write to fd -1: %v; want EBADF", err)
	}
	b, _ := os.ReadFile(f.Name())
	if string(b) != "\x00\x00\x00hello" {
		t.Errorf("file = %q", b)
	}
}
