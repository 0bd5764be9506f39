package plugins

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

// frameBytes is a frame of kind with payload, as the hop sends it.
func frameBytes(kind byte, id uint64, payload []byte) []byte {
	return append(appendHeader(nil, kind, id, len(payload)), payload...)
}

// resultBytes is call id's result frame with body, in pieces of at most
// piece bytes (all of it, as hopWriter.writeBody sends a body longer than
// a piece) when it is longer than piece.
func resultBytes(id uint64, body []byte, piece int) []byte {
	head := appendHeader(nil, hopResult, id, 0)
	head = append(head, 0)
	head = appendStr(head, PathRaw)
	head = appendStr(head, "2025-11-25")
	var out []byte
	if len(body) > piece {
		for rest := body; len(rest) > 0; {
			n := min(len(rest), piece)
			out = append(out, frameBytes(hopPiece, id, append(binary.AppendUvarint(nil, uint64(len(body))), rest[:n]...))...)
			rest = rest[n:]
		}
		body = nil
	}
	setLength(head, len(body))
	return append(append(out, head...), body...)
}

// cutReader returns its data with a timeout (os.ErrDeadlineExceeded, as
// an interrupted read of a connection) at each of cuts, offsets into data,
// and never reads across one.
type cutReader struct {
	data []byte
	off  int
	cuts []int // ascending
}

func (r *cutReader) Read(p []byte) (int, error) {
	if len(r.cuts) > 0 && r.off == r.cuts[0] {
		r.cuts = r.cuts[1:]
		return 0, &net.OpError{Op: "read", Net: "unix", Err: os.ErrDeadlineExceeded}
	}
	if r.off == len(r.data) {
		return 0, io.EOF
	}
	end := len(r.data)
	if len(r.cuts) > 0 {
		end = r.cuts[0]
	}
	n := copy(p, r.data[r.off:end])
	r.off += n
	return n, nil
}

// readAll reads frames from r until an error other than a timeout, going
// on after each timeout, and describes each and the error.
func readAll(r *hopReader) (frames []string, err error) {
	for range 1 << 16 {
		f, err := r.next()
		if isTimeout(err) {
			continue
		}
		if err != nil {
			return frames, err
		}
		frames = append(frames, fmt.Sprintf("kind %d, call %d, payload %q, pieces %q, total %d", f.kind, f.id, f.payload, f.pieces, f.total))
	}
	return frames, errors.New("too many frames")
}

// FuzzHopReaderResumes reads a stream of frames through a reader whose
// reads time out at the given offsets (each byte of cuts a gap to the
// next), going on after each timeout as the host's readers do: the frames,
// and the error that ends them, are those of an uninterrupted read.
func FuzzHopReaderResumes(f *testing.F) {
	body := bytes.Repeat([]byte("0123456789abcdef"), 40)
	stream := append(resultBytes(1, []byte(`{"a":1}`), 1000), resultBytes(2, body, 100)...)
	stream = append(stream, frameBytes(hopLog, 3, []byte{4, 'i', 'n', 'f', 'o', 0, '"', 'x', '"'})...)
	stream = append(stream, frameBytes(hopProgress, 3, make([]byte, 20))...)
	f.Add(stream, []byte{0, 1, 3, 12, 13, 14, 15, 40})
	f.Add(stream, []byte{5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5})
	// Two bodies in pieces whose pieces alternate, then their results.
	a, b := resultBytes(4, body, 200), resultBytes(5, bytes.ToUpper(body), 300)
	pa, pb := 13+2+200, 13+2+300
	mixed := append(append([]byte{}, a[:pa]...), b[:pb]...)
	mixed = append(append(mixed, a[pa:]...), b[pb:]...)
	f.Add(mixed, []byte{14, 1, 0, 200, 2, 13})
	f.Add(stream[:len(stream)-7], []byte{20, 20, 20}) // cut short: the same error
	f.Add(append(frameBytes(hopPiece, 7, []byte{0x80, 0x80}), 1, 2), []byte{13, 1})
	f.Add(frameBytes(hopFailure, 9, []byte{2, 'b', 'a', 'd'}), []byte{})
	f.Fuzz(func(t *testing.T, stream, cuts []byte) {
		if len(cuts) > 64 {
			cuts = cuts[:64]
		}
		wantFrames, wantErr := readAll(newHopReader(bytes.NewReader(stream)))
		cr := &cutReader{data: stream}
		off := 0
		for _, c := range cuts {
			off += int(c)
			if off > len(stream) {
				break
			}
			cr.cuts = append(cr.cuts, off)
		}
		gotFrames, gotErr := readAll(newHopReader(cr))
		if fmt.Sprint(gotErr) != fmt.Sprint(wantErr) {
			t.Fatalf("read with timeouts at %v ended with %v, want %v as without", cr.cuts, gotErr, wantErr)
		}
		if len(gotFrames) != len(wantFrames) {
			t.Fatalf("read with timeouts: %d frames, want %d:\n%s\nwant\n%s", len(gotFrames), len(wantFrames), strings.Join(gotFrames, "\n"), strings.Join(wantFrames, "\n"))
		}
		for i := range gotFrames {
			if gotFrames[i] != wantFrames[i] {
				t.Fatalf("read with timeouts: frame %d is\n%s\nwant\n%s", i, gotFrames[i], wantFrames[i])
			}
		}
	})
}

// holder is an AdapterRaw whose call "hold" says so on held, then waits
// for release before answering with its params; "log" sends a log message
// whose data is its params, then answers with them; "slow" answers with
// its params after a moment; any other call answers with its params at
// once.
type holder struct {
	AdapterRaw // not called
	held       chan string
	release    chan struct{}
}

func (h *holder) CallRaw(ctx context.Context, call *RawCall, ev *CallEvents) (*RawResult, error) {
	switch call.Name {
	case "hold":
		h.held <- string(call.Params)
		select {
		case <-h.release:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	case "log":
		if ev != nil && ev.Log != nil {
			ev.Log(LogMessage{Level: "info", Data: call.Params})
		}
	case "slow":
		time.Sleep(time.Duration(rand.IntN(300)) * time.Microsecond)
	}
	return &RawResult{Result: call.Params, Path: PathRaw}, nil
}

// TestHopStaleInterrupt: a cancelled call's interrupt that comes after its
// read ended (its context's AfterFunc running late) does not touch the
// read of the call reading next.
func TestHopStaleInterrupt(t *testing.T) {
	h := &holder{held: make(chan string, 1), release: make(chan struct{})}
	m, _ := hopPair(t, h)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if res, err := m.call(ctx, &RawCall{Name: "echo", Params: []byte(`"a"`)}, nil); err != nil || string(res.Result) != `"a"` {
		t.Fatalf("the first call: %v, %v", res, err)
	}
	hc := m.cur
	hc.dmu.Lock()
	stale := hc.lastGen // the first call's read
	hc.dmu.Unlock()
	if stale == 0 {
		t.Fatal("the first call read with no generation: its context has no deadline?")
	}
	done := make(chan error, 1)
	var res *RawResult
	go func() {
		var err error
		res, err = m.call(ctx, &RawCall{Name: "hold", Params: []byte(`"b"`)}, nil)
		done <- err
	}()
	<-h.held
	waitUntil(t, func() bool {
		hc.dmu.Lock()
		defer hc.dmu.Unlock()
		return hc.readGen > stale
	}, "the second call to read")
	hc.interrupt(stale) // the first call's interrupt, late
	close(h.release)
	if err := <-done; err != nil || string(res.Result) != `"b"` {
		t.Fatalf("the call reading when a stale interrupt came: %v, %v; want its result", res, err)
	}
	if m.cur != hc || isBroken(hc) {
		t.Error("the connection broke")
	}
}

// TestHopManyCallers: many calls at once on one connection, of small and
// large (in pieces) params, some with a log event, some cancelled at any
// moment: each call gets its own result or, cancelled, its context's
// error; none gets another's, and the connection stays up.
func TestHopManyCallers(t *testing.T) {
	h := &holder{}
	m, _ := hopPair(t, h)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if _, err := m.call(ctx, &RawCall{Name: "echo"}, nil); err != nil {
		t.Fatal(err)
	}
	first := m.cur
	const callers, calls = 16, 60
	var wg sync.WaitGroup
	for g := range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(g), 1))
			for i := range calls {
				params := []byte(fmt.Sprintf(`"caller %d call %d"`, g, i))
				if rng.IntN(20) == 0 {
					params = fmt.Appendf(nil, `"%d/%d %s"`, g, i, bytes.Repeat([]byte{'a' + byte(g)}, hopPieceSize+rng.IntN(1000)))
				}
				name := []string{"echo", "slow", "log"}[rng.IntN(3)]
				cctx, ccancel := context.WithCancel(ctx)
				cancelled := rng.IntN(4) == 0
				if cancelled {
					after := time.Duration(rng.IntN(200)) * time.Microsecond
					go func() {
						time.Sleep(after)
						ccancel()
					}()
				}
				var logged []byte
				ev := &CallEvents{Log: func(l LogMessage) { logged = l.Data }}
				res, err := m.call(cctx, &RawCall{Name: name, Params: params}, ev)
				ccancel()
				switch {
				case cancelled && errors.Is(err, context.Canceled):
				case err != nil:
					t.Errorf("caller %d call %d (%s): %v", g, i, name, err)
					return
				case !bytes.Equal(res.Result, params):
					t.Errorf("caller %d call %d (%s) got the result %.60q, want %.60q", g, i, name, res.Result, params)
					return
				case name == "log" && !bytes.Equal(logged, params):
					t.Errorf("caller %d call %d got the log message %.60q, want %.60q", g, i, logged, params)
					return
				}
			}
		}()
	}
	wg.Wait()
	if m.cur != first || isBroken(first) {
		t.Error("the connection broke")
	}
}

// isBroken says whether hc broke.
func isBroken(hc *hopConn) bool {
	select {
	case <-hc.done:
		return true
	default:
		return false
	}
}
