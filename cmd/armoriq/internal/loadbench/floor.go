package loadbench

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/armoriq/controlplane/plugins/rawconn"
	"github.com/armoriq/controlplane/runtime/telemetry/cputime"
)

// Floor is what this machine's disk and kernel take for the two things
// the gateway adds to a call that a plain reverse proxy does not: the
// audit record made durable before the tool runs, and a round trip to
// the adapter process over a unix socket. Added to the proxy's own
// latency, they are the least the gateway can add to a call here,
// whatever it does in user space; the bench measures them before its
// rounds, so that every report says how far its figures are from it.
type Floor struct {
	// DurableWrite is a record-sized write (floorRecordSize bytes, in
	// place, in a preallocated file in the gateway's data directory) made
	// durable (fdatasync on Linux, fsync elsewhere), as the audit journal
	// writes a lone record: FloorWrites of them, each after floorGap.
	DurableWriteP50Ms float64 `json:"durable_write_p50_ms"`
	DurableWriteP99Ms float64 `json:"durable_write_p99_ms"`
	// UnixRoundTrip is a call-sized message (floorCallSize bytes) and an
	// answer of the same size between this process and another over a
	// unix socket, each blocked in a read until the other writes:
	// FloorRoundTrips of them, each after floorGap.
	UnixRoundTripP50Ms float64 `json:"unix_round_trip_p50_ms"`
	UnixRoundTripP99Ms float64 `json:"unix_round_trip_p99_ms"`
	// The CPU time (user and system, from getrusage, to the microsecond)
	// each takes: a durable write, in the writing process (the kernel's
	// work for the write and the sync: on a virtual machine, its exits to
	// the hypervisor too); a round trip, in both processes (two sleeps
	// and two wake-ups of a thread). With the proxy's own CPU per call,
	// the least CPU per call the gateway and its adapter can take at
	// concurrency 1. Zero where getrusage is not available.
	DurableWriteCPUMs  float64 `json:"durable_write_cpu_ms,omitempty"`
	UnixRoundTripCPUMs float64 `json:"unix_round_trip_cpu_ms,omitempty"`
}

const (
	FloorWrites     = 500
	FloorRoundTrips = 1000
	floorRecordSize = 400
	floorCallSize   = 300
)

// floorGap is the pause before each durable write and each round trip. At
// concurrency 1 both come after the gateway and its adapter were idle for
// most of a call (about a millisecond here), their threads parked, and the
// kernel and the runtime wake them. Back to back, the other side's thread
// is still spinning for work when the next message comes: the round trip
// then took 0.007 ms in most runs and 0.06 ms in others on one machine,
// a floor that said nothing of a call at concurrency 1.
const floorGap = time.Millisecond

// measureFloor measures the floor, writing its file in dir (and removing
// it).
func measureFloor(ctx context.Context, dir, exe string) (Floor, error) {
	var f Floor
	w, cpu, err := durableWrites(dir, FloorWrites)
	if err != nil {
		return f, fmt.Errorf("durable writes in %s: %v", dir, err)
	}
	f.DurableWriteCPUMs = ms(cpu) / FloorWrites
	f.DurableWriteP50Ms, f.DurableWriteP99Ms = ms(Percentile(w, 50)), ms(Percentile(w, 99))
	rt, rtCPU, err := unixRoundTrips(ctx, exe, FloorRoundTrips)
	if err != nil {
		return f, fmt.Errorf("unix socket round trips: %v", err)
	}
	f.UnixRoundTripP50Ms, f.UnixRoundTripP99Ms = ms(Percentile(rt, 50)), ms(Percentile(rt, 99))
	f.UnixRoundTripCPUMs = ms(rtCPU) / FloorRoundTrips
	return f, nil
}

// durableWrites times n durable writes of a record, sorted, each after
// floorGap; cpu is the CPU time the process took for them (the pauses
// left out), zero where it cannot be measured. They go round a
// preallocated file, already written once, so that none extends it: the
// audit journal's file is preallocated too, and a write that grows a file
// costs a metadata update besides.
func durableWrites(dir string, n int) (d []time.Duration, cpu time.Duration, err error) {
	const slots = 64
	path := filepath.Join(dir, "bench-floor")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, 0, err
	}
	defer os.Remove(path)
	defer f.Close()
	rec := make([]byte, floorRecordSize)
	for i := range rec {
		rec[i] = byte('a' + i%26)
	}
	if _, err := f.Write(make([]byte, slots*floorRecordSize)); err != nil {
		return nil, 0, err
	}
	if err := f.Sync(); err != nil {
		return nil, 0, err
	}
	d = make([]time.Duration, n)
	cpuOK := true
	for i := range d {
		time.Sleep(floorGap)
		cpu0, ok0 := cputime.Process()
		start := time.Now()
		if err := durableWrite(f, rec, int64(i%slots)*floorRecordSize); err != nil {
			return nil, 0, err
		}
		d[i] = time.Since(start)
		cpu1, ok1 := cputime.Process()
		cpuOK = cpuOK && ok0 && ok1
		cpu += cpu1 - cpu0
	}
	slices.Sort(d)
	if !cpuOK {
		cpu = 0
	}
	return d, cpu, nil
}

// unixRoundTrips times n round trips over a unix socket to a process of
// its own (exe bench echo), sorted: as between the gateway and an adapter,
// each side is a thread the kernel wakes when the other writes. cpu is
// the CPU time both processes took for them, zero where it cannot be
// measured: the echo process measures its own from the first message to
// the last and sends it back, asked with a message whose first byte is
// echoReport.
func unixRoundTrips(ctx context.Context, exe string, n int) (d []time.Duration, cpu time.Duration, err error) {
	// A short path of its own: a socket's path is limited to about 100
	// bytes.
	sdir, err := os.MkdirTemp("", "aqfloor")
	if err != nil {
		return nil, 0, err
	}
	defer os.RemoveAll(sdir)
	sock := filepath.Join(sdir, "s")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		return nil, 0, err
	}
	defer ln.Close()
	var stderr strings.Builder
	cmd := exec.CommandContext(ctx, exe, "bench", "echo", "--socket", sock)
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		return nil, 0, err
	}
	defer cmd.Wait()
	defer cmd.Process.Kill()
	ul := ln.(*net.UnixListener)
	if err := ul.SetDeadline(time.Now().Add(20 * time.Second)); err != nil {
		return nil, 0, err
	}
	c, err := ln.Accept()
	if err != nil {
		return nil, 0, fmt.Errorf("%s bench echo did not connect: %v: %s", exe, err, stderr.String())
	}
	c = rawconn.Wrap(c) // as the hop's ends are (plugins/rawconn)
	defer c.Close()
	msg := make([]byte, floorCallSize)
	d = make([]time.Duration, n)
	var ours time.Duration
	cpuOK := true
	for i := range d {
		time.Sleep(floorGap)
		cpu0, ok0 := cputime.Process()
		start := time.Now()
		if _, err := c.Write(msg); err != nil {
			return nil, 0, err
		}
		if _, err := io.ReadFull(c, msg); err != nil {
			return nil, 0, fmt.Errorf("reading the echo: %v: %s", err, stderr.String())
		}
		d[i] = time.Since(start)
		cpu1, ok1 := cputime.Process()
		cpuOK = cpuOK && ok0 && ok1
		ours += cpu1 - cpu0
	}
	slices.Sort(d)
	msg[0] = echoReport
	if _, err := c.Write(msg); err != nil {
		return nil, 0, err
	}
	if _, err := io.ReadFull(c, msg); err != nil {
		return nil, 0, fmt.Errorf("reading the echo's CPU time: %v: %s", err, stderr.String())
	}
	theirs := time.Duration(binary.BigEndian.Uint64(msg[1:9]))
	if !cpuOK || msg[0] != echoReport || theirs <= 0 {
		return d, 0, nil // CPU time not measured on one side or the other
	}
	return d, ours + theirs, nil
}

// echoReport, as the first byte of a message, asks the echo process for
// the CPU time it took since the first message: it answers with the same
// byte, then the time in nanoseconds (big-endian, 8 bytes; 0 where it
// cannot be measured).
const echoReport = 0xff

// Echo is armoriq bench echo: it connects to the unix socket and sends
// back every floorCallSize bytes it reads, until the other side closes.
func Echo(socket string) error {
	c, err := net.Dial("unix", socket)
	if err != nil {
		return err
	}
	c = rawconn.Wrap(c)
	defer c.Close()
	buf := make([]byte, floorCallSize)
	var first time.Duration
	for n := 0; ; n++ {
		if _, err := io.ReadFull(c, buf); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		switch {
		case n == 0:
			first, _ = cputime.Process()
		case buf[0] == echoReport:
			now, ok := cputime.Process()
			clear(buf)
			buf[0] = echoReport
			if ok && first > 0 {
				binary.BigEndian.PutUint64(buf[1:9], uint64(now-first))
			}
		}
		if _, err := c.Write(buf); err != nil {
			return err
		}
	}
}
