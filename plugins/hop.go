package plugins

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"slices"
	"sync"
)

// The hop (contract version 5) carries raw calls between host and adapter
// on a unix socket of the adapter's own, in frames of our own, instead of
// gRPC: go-plugin's gRPC connection stays the lifecycle, the handshake and
// every other method, and tells the host where the socket is (Hop.Open).
//
// A frame is a 13-byte header, then its payload:
//
//	length  uint32, big-endian: of the payload
//	kind    byte: hopCall, hopResult, ...
//	id      uint64, big-endian: the call's (the host's numbering, never
//	        reused on a connection); 0 for hopHello
//
// and the payloads, by kind, of fields in order (str: a uvarint length and
// the bytes; i64, u64: 8 bytes big-endian; f64: IEEE 754 bits as u64; rest:
// the remaining bytes of the payload):
//
//	hello    host: version byte, token rest; adapter: version byte
//	call     flags byte (1 log, 2 requests, 4 legacy), timeout i64 (ns; 0 none),
//	         method, name, protocol version, progress token, traceparent,
//	         tracestate: str; params rest
//	cancel   empty
//	answer   request id i64, flags byte (1 error); error: code i64,
//	         message str, data rest; else result rest
//	progress progress f64, total f64, message rest
//	log      level str, logger str, data rest
//	request  request id i64, method str, params rest
//	result   flags byte (1 error), path str, protocol version str; error:
//	         code i64, message str, data rest; else result rest
//	failure  code byte (a gRPC code), message rest
//	piece    total uvarint, data rest
//
// A params or result longer than hopPieceSize goes as piece frames, each
// saying the whole body's length, then its call or result frame with the
// rest of the body (empty, as this package sends it): the receiver reads
// the pieces straight into one buffer of that length, and the sender lets
// other frames pass between pieces. Anything else is a protocol error, which closes the connection.
const (
	hopHello    byte = 1
	hopCall     byte = 2
	hopCancel   byte = 3
	hopAnswer   byte = 4
	hopProgress byte = 5
	hopLog      byte = 6
	hopRequest  byte = 7
	hopResult   byte = 8
	hopFailure  byte = 9
	hopPiece    byte = 10
)

// hopVersion is the version of the frame format the hello carries.
const hopVersion = 1

const (
	hopHeaderSize = 13
	// hopPieceSize is the largest body sent in one frame: a longer one goes
	// in pieces, between which other calls' frames pass.
	hopPieceSize = 256 << 10
	// hopMaxFrame bounds one frame's payload: a message (an event's data,
	// an error's) up to MaxMessageSize, and its fields.
	hopMaxFrame = MaxMessageSize + 64<<10
	// hopMaxHello bounds the first frame, read before the peer is known.
	hopMaxHello = 256
	// hopTokenSize is the length of the token the host presents.
	hopTokenSize = 32
)

// Flags of a call, a result and an answer.
const (
	hopFlagLog      = 1 // call: relay log messages
	hopFlagRequests = 2 // call: the host answers server requests
	hopFlagLegacy   = 4 // call: RawCall.Legacy
	hopFlagError    = 1 // result, answer: a JSON-RPC error
)

// hopError is a protocol error: the peer sent what the hop does not allow.
// The connection is closed.
type hopError struct{ msg string }

func (e *hopError) Error() string { return "hop protocol error: " + e.msg }

func hopErrorf(format string, args ...any) error {
	return &hopError{fmt.Sprintf(format, args...)}
}

// appendHeader appends a frame header whose payload is n bytes.
func appendHeader(dst []byte, kind byte, id uint64, n int) []byte {
	dst = binary.BigEndian.AppendUint32(dst, uint32(n))
	dst = append(dst, kind)
	return binary.BigEndian.AppendUint64(dst, id)
}

// setLength sets the payload length of the frame starting at dst[0],
// whose payload is what follows the header in dst plus rest more bytes.
func setLength(dst []byte, rest int) {
	binary.BigEndian.PutUint32(dst, uint32(len(dst)-hopHeaderSize+rest))
}

func appendStr(dst []byte, s string) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(s)))
	return append(dst, s...)
}

func appendU64(dst []byte, v uint64) []byte { return binary.BigEndian.AppendUint64(dst, v) }

// hopDecoder reads the fields of a payload; the first error sticks.
type hopDecoder struct {
	b   []byte
	err error
}

func (d *hopDecoder) fail(what string) {
	if d.err == nil {
		d.err = hopErrorf("truncated %s", what)
	}
}

func (d *hopDecoder) byte1(what string) byte {
	if len(d.b) < 1 {
		d.fail(what)
		return 0
	}
	v := d.b[0]
	d.b = d.b[1:]
	return v
}

func (d *hopDecoder) u64(what string) uint64 {
	if len(d.b) < 8 {
		d.fail(what)
		return 0
	}
	v := binary.BigEndian.Uint64(d.b)
	d.b = d.b[8:]
	return v
}

func (d *hopDecoder) f64(what string) float64 { return math.Float64frombits(d.u64(what)) }

// bytes returns a str field's bytes, a slice of the payload.
func (d *hopDecoder) bytes(what string) []byte {
	n, k := binary.Uvarint(d.b)
	if k <= 0 || n > uint64(len(d.b)-k) {
		d.fail(what)
		return nil
	}
	v := d.b[k : k+int(n)]
	d.b = d.b[k+int(n):]
	return v
}

func (d *hopDecoder) str(what string) string { return string(d.bytes(what)) }

// rest returns the remaining bytes, nil when there are none.
func (d *hopDecoder) rest() []byte {
	v := d.b
	d.b = nil
	if len(v) == 0 {
		return nil
	}
	return v
}

// withBody returns the body of a message: rest, after pieces when the
// message came in pieces (pieces has room for rest, unless the body is
// larger than hopAllocAhead).
func withBody(pieces, rest []byte) []byte {
	if pieces == nil {
		return rest
	}
	return append(pieces, rest...)
}

// hopFrame is one frame as hopReader returns it: its payload, and for a
// call or result that came in pieces, the pieces joined, in a buffer with
// room for the rest of the body.
type hopFrame struct {
	kind    byte
	id      uint64
	payload []byte
	pieces  []byte
	total   int // the body's length the pieces announced
}

// hopPending is a body being received in pieces.
type hopPending struct {
	buf   []byte
	total int
}

// hopReader reads frames from a connection, joining pieces. One goroutine
// at a time uses it.
//
// A read that times out (os.ErrDeadlineExceeded: the host interrupts a
// reader whose call was cancelled, and polls without waiting) leaves the
// frame it was reading where it was, every byte read so far kept here, and
// the next call of next continues it: the frames read are those of an
// uninterrupted read (FuzzHopReaderResumes). Any other error ends the
// connection.
type hopReader struct {
	r       *bufio.Reader
	pending map[uint64]*hopPending
	// validID, when not nil, says whether the peer may send frames of a
	// call id (the host's check that it issued it).
	validID func(uint64) bool

	// The frame being read.
	hdr    [hopHeaderSize]byte
	nhdr   int // bytes of hdr read; hopHeaderSize once the frame is checked
	cur    hopFrame
	n      int         // its payload's length
	part   *hopPending // a piece's body so far
	varb   [binary.MaxVarintLen64]byte
	nvar   int    // bytes of a piece's total read
	inData bool   // the piece's total is read: its data is
	data   []byte // what remains to be read of a piece's data
	buf    []byte // the payload read so far (a call's or result's)
}

func newHopReader(r io.Reader) *hopReader {
	return &hopReader{r: bufio.NewReaderSize(r, 32<<10), pending: map[uint64]*hopPending{}}
}

// isTimeout says whether err is a read's timeout, after which the reader
// can go on.
func isTimeout(err error) bool { return errors.Is(err, os.ErrDeadlineExceeded) }

// next returns the next frame that is not a piece. Its error is the
// connection's (io.EOF at a clean end between frames), a *hopError, or a
// timeout (see hopReader).
func (h *hopReader) next() (hopFrame, error) {
	for {
		f, whole, err := h.step()
		if err != nil {
			if isTimeout(err) {
				return hopFrame{}, err
			}
			if h.nhdr > 0 {
				err = noEOF(err) // the end of the connection inside a frame
			}
			return hopFrame{}, err
		}
		if whole {
			return f, nil
		}
	}
}

// step reads on in the frame being read, and returns it once it is
// whole (unless it is a piece).
func (h *hopReader) step() (f hopFrame, whole bool, err error) {
	if h.nhdr < hopHeaderSize {
		k, err := io.ReadFull(h.r, h.hdr[h.nhdr:])
		h.nhdr += k
		if err != nil {
			return f, false, err
		}
		if err := h.header(); err != nil {
			return f, false, err
		}
	}
	if h.cur.kind == hopPiece {
		return f, false, h.piece()
	}
	if h.buf, err = readPayload(h.r, h.buf, h.n); err != nil {
		return f, false, err
	}
	f = h.cur
	f.payload = h.buf
	p := h.part
	h.reset()
	if p != nil {
		f.total = p.total
		if len(f.payload) < p.total-len(p.buf) {
			// The rest is at most total-len(buf): the decoder checks it is
			// exactly that; here the payload must hold it at least.
			return f, false, hopErrorf("call %d: its body ended %d bytes short of the %d its pieces announced", f.id, p.total-len(p.buf)-len(f.payload), p.total)
		}
	}
	return f, true, nil
}

// reset readies h for the next frame.
func (h *hopReader) reset() {
	h.nhdr, h.cur, h.n, h.part = 0, hopFrame{}, 0, nil
	h.nvar, h.inData, h.data, h.buf = 0, false, nil, nil
}

// header checks the header just read and readies the frame's reading.
func (h *hopReader) header() error {
	hdr := h.hdr[:]
	h.n = int(binary.BigEndian.Uint32(hdr[:4]))
	h.cur = hopFrame{kind: hdr[4], id: binary.BigEndian.Uint64(hdr[5:])}
	f := &h.cur
	if h.n > hopMaxFrame {
		return hopErrorf("a frame of %d bytes (kind %d, call %d) is larger than %d", h.n, f.kind, f.id, hopMaxFrame)
	}
	if f.kind < hopHello || f.kind > hopPiece || f.kind == hopHello {
		return hopErrorf("a frame of unknown kind %d (call %d)", f.kind, f.id)
	}
	if h.validID != nil && !h.validID(f.id) {
		return hopErrorf("a frame (kind %d) for call %d, which was never made", f.kind, f.id)
	}
	h.part = h.pending[f.id]
	if f.kind == hopPiece || h.part == nil {
		return nil
	}
	if f.kind != hopCall && f.kind != hopResult {
		return hopErrorf("a frame of kind %d for call %d between its pieces and its end", f.kind, f.id)
	}
	delete(h.pending, f.id)
	f.pieces = h.part.buf
	return nil
}

// piece reads on in a piece frame, whose header was read: its total, then
// its data into its body's buffer.
func (h *hopReader) piece() error {
	if !h.inData {
		if err := h.pieceTotal(); err != nil {
			return err
		}
		h.inData = true
	}
	for len(h.data) > 0 {
		k, err := h.r.Read(h.data)
		h.data = h.data[k:]
		if err != nil && len(h.data) > 0 {
			return err
		}
	}
	h.reset()
	return nil
}

// pieceTotal reads a piece's total and readies its data's reading.
func (h *hopReader) pieceTotal() error {
	id, n, p := h.cur.id, h.n, h.part
	for h.nvar == 0 || h.varb[h.nvar-1] >= 0x80 && h.nvar < len(h.varb) {
		b, err := h.r.ReadByte()
		switch {
		case err == nil:
		case err == io.EOF || errors.Is(err, io.ErrUnexpectedEOF):
			return io.ErrUnexpectedEOF
		case isTimeout(err):
			return err
		default:
			return hopErrorf("call %d: a piece with a malformed length: %v", id, err)
		}
		h.varb[h.nvar] = b
		h.nvar++
	}
	total, w := binary.Uvarint(h.varb[:h.nvar])
	if w <= 0 {
		return hopErrorf("call %d: a piece with a malformed length: more than 64 bits", id)
	}
	data := n - uvarintLen(total)
	switch {
	case h.nvar != uvarintLen(total):
		// The data's length is the frame's less the field's shortest
		// form: a longer encoding would shift every byte after it.
		return hopErrorf("call %d: a piece whose length field is not in its shortest form", id)
	case data < 0:
		return hopErrorf("call %d: a piece shorter than its length field", id)
	case total > MaxMessageSize:
		return hopErrorf("call %d: pieces of a body of %d bytes, more than %d", id, total, MaxMessageSize)
	case p == nil:
		// The whole body's buffer at once, so that the pieces are read
		// into place; above hopAllocAhead, as they come.
		p = &hopPending{buf: make([]byte, 0, min(int(total), hopAllocAhead)), total: int(total)}
		h.pending[id] = p
		h.part = p
	case p.total != int(total):
		return hopErrorf("call %d: a piece says its body has %d bytes, an earlier one %d", id, total, p.total)
	}
	if len(p.buf)+data > p.total {
		return hopErrorf("call %d: pieces of more than the %d bytes they announced", id, p.total)
	}
	k := len(p.buf)
	p.buf = slices.Grow(p.buf, data)[:k+data]
	h.data = p.buf[k:]
	return nil
}

// hopAllocAhead is the most a reader allocates for a payload or a body
// before the bytes arrive: a peer that announces more gets its buffer
// grown as it sends them.
const hopAllocAhead = 4 << 20

// readPayload reads on into b, a payload of n bytes of which len(b) are
// read, and returns it; after an error, b holds what was read.
func readPayload(r io.Reader, b []byte, n int) ([]byte, error) {
	if b == nil {
		b = make([]byte, 0, min(n, hopAllocAhead))
	}
	for len(b) < n {
		k := len(b)
		if k == cap(b) {
			b = slices.Grow(b, min(n-k, max(k, hopAllocAhead)))
		}
		m, err := r.Read(b[k:min(cap(b), n)])
		b = b[:k+m]
		if err != nil && len(b) < n {
			return b, err
		}
	}
	return b, nil
}

func uvarintLen(v uint64) int {
	var b [binary.MaxVarintLen64]byte
	return binary.PutUvarint(b[:], v)
}

// noEOF turns an end of the connection inside a frame into
// io.ErrUnexpectedEOF.
func noEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// checkBody checks that a call's or result's body has the length its
// pieces announced.
func checkBody(f hopFrame, body []byte) error {
	if f.pieces != nil && len(body) != f.total {
		return hopErrorf("call %d: a body of %d bytes, its pieces announced %d", f.id, len(body), f.total)
	}
	return nil
}

// hopWriter writes frames to a connection. A frame whose writer finds
// another goroutine writing is queued, and that goroutine writes it with
// whatever else queued meanwhile, in one system call: under concurrency
// several frames share a write. A large body is written by its own
// goroutine, without a copy.
type hopWriter struct {
	conn net.Conn

	mu      sync.Mutex
	cond    sync.Cond // signalled when writing ends
	queue   []byte    // frames waiting for the writing goroutine
	spare   []byte
	writing bool
	err     error     // the connection's, once a write failed
	bufs    [2][]byte // a head and a body for WriteBuffers (no slice made per write)
}

// hopCopyMax is the longest body a frame's sender copies into the queue;
// a longer one is written from where it is.
const hopCopyMax = 32 << 10

func newHopWriter(conn net.Conn) *hopWriter {
	w := &hopWriter{conn: conn}
	w.cond.L = &w.mu
	return w
}

// write sends a frame: head (the header and the fields), then body, its
// rest. It returns once the frame is written or queued behind a write in
// progress; an error means the connection failed, and closes it.
func (w *hopWriter) write(head, body []byte) error {
	w.mu.Lock()
	if w.err != nil {
		err := w.err
		w.mu.Unlock()
		return err
	}
	if len(body) <= hopCopyMax {
		w.queue = append(append(w.queue, head...), body...)
		if w.writing {
			w.mu.Unlock()
			return nil
		}
		w.writing = true
		return w.flush(nil)
	}
	for w.writing {
		w.cond.Wait()
	}
	if w.err != nil {
		err := w.err
		w.mu.Unlock()
		return err
	}
	w.writing = true
	w.queue = append(w.queue, head...)
	return w.flush(body)
}

// buffersWriter writes several buffers in one system call where it can
// (rawconn.Conn); net.Buffers does so for the connections of package net.
type buffersWriter interface {
	WriteBuffers(bufs ...[]byte) (int64, error)
}

// flush writes the queue, then body, then what queued meanwhile, until the
// queue is empty. It is called with mu held and writing set, and returns
// with mu released.
func (w *hopWriter) flush(body []byte) error {
	var err error
	for len(w.queue) > 0 || body != nil {
		q := w.queue
		w.queue = w.spare[:0]
		w.mu.Unlock()
		if body != nil {
			if bw, ok := w.conn.(buffersWriter); ok {
				w.bufs = [2][]byte{q, body}
				_, err = bw.WriteBuffers(w.bufs[:]...)
				w.bufs = [2][]byte{}
			} else {
				bufs := net.Buffers{q, body}
				_, err = bufs.WriteTo(w.conn)
			}
			body = nil
		} else {
			_, err = w.conn.Write(q)
		}
		w.mu.Lock()
		if cap(q) <= 1<<20 {
			w.spare = q[:0] // a queue grown past 1 MiB by a burst is let go
		}
		if err != nil {
			w.err = err
			w.queue = nil
			_ = w.conn.Close()
			break
		}
	}
	w.writing = false
	w.cond.Broadcast()
	w.mu.Unlock()
	return err
}

// writeBody sends head, a frame's header and fields, with body as its
// rest: whole when body is at most hopPieceSize, else all of it in pieces,
// each a write of its own, then head with an empty rest (so that the
// receiver reads every byte of the body into place).
func (w *hopWriter) writeBody(id uint64, head, body []byte) error {
	if len(body) > hopPieceSize {
		total := uint64(len(body))
		var ph [hopHeaderSize + binary.MaxVarintLen64]byte
		for len(body) > 0 {
			n := min(len(body), hopPieceSize)
			h := appendHeader(ph[:0], hopPiece, id, 0)
			h = binary.AppendUvarint(h, total)
			setLength(h, n)
			if err := w.write(h, body[:n]); err != nil {
				return err
			}
			body = body[n:]
		}
	}
	setLength(head, len(body))
	return w.write(head, body)
}
