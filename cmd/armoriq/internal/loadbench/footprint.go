package loadbench

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// The physical footprint of processes that run one executable.
//
// Every process of the one armoriq binary maps the same file: its text and
// read-only data are resident once in the page cache, and each process's
// VmRSS counts them in full. Summing the VmRSS of the gateway and its
// adapter counts those pages twice. The footprint counts what the
// processes hold: the anonymous memory of each (RssAnon), and the pages of
// files and shared memory they map, each page once however many of them
// map it, by its page frame number from /proc/<pid>/pagemap.

// Bits of a /proc/<pid>/pagemap entry (the kernel's
// Documentation/admin-guide/mm/pagemap.rst).
const (
	pmPresent = 1 << 63
	// pmShared is set for a page of a file or of shared memory (shmem);
	// clear for anonymous memory, also for a private copy of a file's
	// page that a process wrote to (it counts in RssAnon).
	pmShared  = 1 << 61
	pmPFNMask = 1<<55 - 1
)

// mapping is one line of /proc/<pid>/maps.
type mapping struct {
	start, end uint64 // [start, end) virtual addresses
	perms      string // "r-xp": read, write, execute, p(rivate) or s(hared)
	inode      uint64 // 0: not a file's
	path       string // the file, "[heap]" and such, or ""
}

// mayShare says whether the mapping may hold pages that other processes
// map too: a file's (including shared memory, which has an inode), or a
// shared mapping. A private anonymous mapping holds anonymous pages only.
func (m mapping) mayShare() bool { return m.inode != 0 || m.perms[3] == 's' }

// parseMapsLine parses a line of /proc/<pid>/maps:
//
//	00400000-00c5a000 r-xp 00000000 fd:01 1234567    /usr/local/bin/armoriq
//
// address range, permissions, offset, device, inode, then, after padding,
// the path, which may hold spaces (and end in " (deleted)").
func parseMapsLine(line string) (mapping, error) {
	var f [5]string
	rest := line
	for i := range f {
		var ok bool
		f[i], rest, ok = strings.Cut(rest, " ")
		if !ok && i < len(f)-1 {
			return mapping{}, fmt.Errorf("maps line %q: %d fields, want at least 5", line, i+1)
		}
	}
	var m mapping
	lo, hi, ok := strings.Cut(f[0], "-")
	if !ok {
		return mapping{}, fmt.Errorf("maps line %q: address range %q has no '-'", line, f[0])
	}
	var err1, err2 error
	m.start, err1 = strconv.ParseUint(lo, 16, 64)
	m.end, err2 = strconv.ParseUint(hi, 16, 64)
	if err1 != nil || err2 != nil || m.end < m.start {
		return mapping{}, fmt.Errorf("maps line %q: bad address range %q", line, f[0])
	}
	if len(f[1]) != 4 || strings.Trim(f[1][:3], "rwx-") != "" || (f[1][3] != 'p' && f[1][3] != 's') {
		return mapping{}, fmt.Errorf("maps line %q: bad permissions %q", line, f[1])
	}
	m.perms = f[1]
	if _, err := strconv.ParseUint(f[2], 16, 64); err != nil {
		return mapping{}, fmt.Errorf("maps line %q: bad offset %q", line, f[2])
	}
	major, minor, ok := strings.Cut(f[3], ":")
	if _, err := strconv.ParseUint(major, 16, 32); err != nil || !ok {
		return mapping{}, fmt.Errorf("maps line %q: bad device %q", line, f[3])
	}
	if _, err := strconv.ParseUint(minor, 16, 32); err != nil {
		return mapping{}, fmt.Errorf("maps line %q: bad device %q", line, f[3])
	}
	var err error
	if m.inode, err = strconv.ParseUint(f[4], 10, 64); err != nil {
		return mapping{}, fmt.Errorf("maps line %q: bad inode %q", line, f[4])
	}
	m.path = strings.TrimLeft(rest, " ")
	return m, nil
}

// parseMaps parses the content of /proc/<pid>/maps.
func parseMaps(b []byte) ([]mapping, error) {
	var out []mapping
	for line := range strings.Lines(string(b)) {
		line = strings.TrimSuffix(line, "\n")
		if line == "" {
			continue
		}
		m, err := parseMapsLine(line)
		if err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	return out, nil
}

// sharedPages lists the page frame numbers of the resident file and
// shared memory pages of a process, given its maps and its pagemap (read
// at offset 8 × virtual page number). hidden reports a resident page whose
// frame number read as 0: the reader may not see frame numbers (it lacks
// CAP_SYS_ADMIN), and the list means nothing.
func sharedPages(maps []mapping, pagemap io.ReaderAt, pageSize uint64) (pfns []uint64, hidden bool, err error) {
	const chunk = 512 // entries per read
	buf := make([]byte, 8*chunk)
	for _, m := range maps {
		if !m.mayShare() {
			continue
		}
		for vpn, end := m.start/pageSize, (m.end+pageSize-1)/pageSize; vpn < end; {
			n := min(end-vpn, chunk)
			b := buf[:8*n]
			if _, err := pagemap.ReadAt(b, int64(vpn*8)); err != nil {
				return nil, false, fmt.Errorf("pagemap of %x-%x %s: %v", m.start, m.end, m.path, err)
			}
			for i := uint64(0); i < n; i++ {
				e := binary.NativeEndian.Uint64(b[8*i:])
				if e&pmPresent == 0 || e&pmShared == 0 {
					continue
				}
				pfn := e & pmPFNMask
				if pfn == 0 {
					hidden = true
					continue
				}
				pfns = append(pfns, pfn)
			}
			vpn += n
		}
	}
	return pfns, hidden, nil
}

// procMemory is what the footprint reads of one process.
type procMemory struct {
	anon, file, shmem int64    // RssAnon, RssFile, RssShmem, in bytes
	pfns              []uint64 // its resident file and shared memory pages
	hidden            bool     // the frame numbers read as 0
}

// footprint is the physical memory of a group of processes.
type footprint struct {
	anon []int64 // each process's RssAnon, in bytes
	// shared is the bytes of the distinct resident file and shared memory
	// pages they map.
	shared int64
	// approx says the frame numbers could not be read: shared is then the
	// largest RssFile of one process, plus every process's RssShmem.
	approx bool
}

// total is the footprint in bytes.
func (f footprint) total() int64 {
	t := f.shared
	for _, a := range f.anon {
		t += a
	}
	return t
}

// combine is the footprint of procs: their anonymous memory, and their
// file and shared memory pages counted once each.
func combine(procs []procMemory, pageSize int64) footprint {
	var f footprint
	var lists [][]uint64
	var maxFile, shmem int64
	for _, p := range procs {
		f.anon = append(f.anon, p.anon)
		f.approx = f.approx || p.hidden
		lists = append(lists, p.pfns)
		maxFile = max(maxFile, p.file)
		shmem += p.shmem
	}
	if f.approx {
		f.shared = maxFile + shmem
	} else {
		f.shared = int64(distinct(lists...)) * pageSize
	}
	return f
}

// distinct counts the distinct values over lists.
func distinct(lists ...[]uint64) int {
	var all []uint64
	for _, l := range lists {
		all = append(all, l...)
	}
	slices.Sort(all)
	return len(slices.Compact(all))
}

// readProcMemory reads a process's memory: /proc/<pid>/status, maps and
// pagemap.
func readProcMemory(pid int) (procMemory, error) {
	dir := filepath.Join("/proc", strconv.Itoa(pid))
	status, err := os.ReadFile(filepath.Join(dir, "status"))
	if err != nil {
		return procMemory{}, err
	}
	var p procMemory
	var ok1, ok2, ok3 bool
	p.anon, ok1 = parseStatusKB(status, "RssAnon")
	p.file, ok2 = parseStatusKB(status, "RssFile")
	p.shmem, ok3 = parseStatusKB(status, "RssShmem")
	if !ok1 || !ok2 || !ok3 {
		return procMemory{}, fmt.Errorf("%s/status has no RssAnon, RssFile and RssShmem", dir)
	}
	b, err := os.ReadFile(filepath.Join(dir, "maps"))
	if err != nil {
		return procMemory{}, err
	}
	maps, err := parseMaps(b)
	if err != nil {
		return procMemory{}, fmt.Errorf("%s/maps: %v", dir, err)
	}
	pm, err := os.Open(filepath.Join(dir, "pagemap"))
	if err != nil {
		return procMemory{}, err
	}
	defer pm.Close()
	p.pfns, p.hidden, err = sharedPages(maps, pm, uint64(os.Getpagesize()))
	if err != nil {
		return procMemory{}, fmt.Errorf("%s: %v", dir, err)
	}
	return p, nil
}

// readFootprint reads the footprint of the processes pids together.
func readFootprint(pids []int) (footprint, error) {
	if len(pids) == 0 {
		return footprint{}, errors.New("no process")
	}
	var procs []procMemory
	for _, pid := range pids {
		p, err := readProcMemory(pid)
		if err != nil {
			return footprint{}, err
		}
		procs = append(procs, p)
	}
	return combine(procs, int64(os.Getpagesize())), nil
}
