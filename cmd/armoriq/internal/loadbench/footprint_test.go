package loadbench

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"os/exec"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"testing"
)

// fakePagemap is a pagemap: virtual page number → entry; absent entries
// read as 0 (not present).
type fakePagemap map[uint64]uint64

func (p fakePagemap) ReadAt(b []byte, off int64) (int, error) {
	for i := 0; i+8 <= len(b); i += 8 {
		binary.NativeEndian.PutUint64(b[i:], p[uint64(off)/8+uint64(i/8)])
	}
	return len(b), nil
}

// fileEntry is a resident page of a file, or of shared memory.
func fileEntry(pfn uint64) uint64 { return pmPresent | pmShared | pfn }

// anonEntry is a resident anonymous page (or a private copy of a file's).
func anonEntry(pfn uint64) uint64 { return pmPresent | pfn }

const testPage = 4096

// Page 0x400 is address 0x400000; with 4 KiB pages.
const binaryMaps = `00400000-00403000 r-xp 00000000 fd:01 1234567                            /usr/local/bin/armoriq
00403000-00404000 r--p 00003000 fd:01 1234567                            /usr/local/bin/armoriq
00404000-00406000 rw-p 00004000 fd:01 1234567                            /usr/local/bin/armoriq
00406000-00408000 rw-p 00000000 00:00 0 
c000000000-c000400000 rw-p 00000000 00:00 0 
7f0000000000-7f0000002000 rw-s 00000000 00:01 77                         /memfd:ring (deleted)
7ffd0000000-7ffd0001000 r--p 00000000 00:00 0                            [vvar]
ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0                  [vsyscall]
`

// testProc is a process of the synthetic tests: its maps, its pagemap,
// and its status figures.
type testProc struct {
	maps              string
	pagemap           fakePagemap
	anon, file, shmem int64
}

func TestFootprint(t *testing.T) {
	// The gateway: three pages of text resident, one of rodata, a private
	// copy (anonymous) of one data page and the file's other page, heap
	// pages (anonymous: not read, even if the entries said otherwise), a
	// page of shared memory.
	gateway := testProc{maps: binaryMaps, anon: 40 * testPage, file: 6 * testPage, shmem: testPage, pagemap: fakePagemap{
		0x400: fileEntry(100), 0x401: fileEntry(101), 0x402: fileEntry(102),
		0x403: fileEntry(103),
		0x404: anonEntry(500), 0x405: fileEntry(104),
		0x406:                     anonEntry(501),
		0xc000000000 / testPage:   fileEntry(999), // a private anonymous mapping: skipped
		0x7f0000000000 / testPage: fileEntry(700),
	}}
	// The adapter, the same executable: two of the same text pages, its
	// own resident page of text, no rodata resident.
	adapter := testProc{maps: binaryMaps, anon: 20 * testPage, file: 3 * testPage, pagemap: fakePagemap{
		0x400: fileEntry(100), 0x401: fileEntry(101), 0x402: fileEntry(202),
		0x404: anonEntry(600),
	}}
	hidden := func(p testProc) testProc {
		q := p
		q.pagemap = fakePagemap{}
		for k, v := range p.pagemap {
			q.pagemap[k] = v &^ pmPFNMask
		}
		return q
	}
	for _, tc := range []struct {
		name       string
		procs      []testProc
		wantShared int64 // pages
		wantAnon   []int64
		wantApprox bool
	}{
		{"the gateway alone: text, rodata, a data page, shared memory", []testProc{gateway}, 6, []int64{40 * testPage}, false},
		{"the adapter alone", []testProc{adapter}, 3, []int64{20 * testPage}, false},
		{"gateway and adapter: two text pages counted once", []testProc{gateway, adapter}, 7, []int64{40 * testPage, 20 * testPage}, false},
		{"one process twice: every page counted once", []testProc{gateway, gateway}, 6, []int64{40 * testPage, 40 * testPage}, false},
		{"frame numbers hidden: the larger RssFile plus shared memory", []testProc{hidden(gateway), hidden(adapter)}, 7, []int64{40 * testPage, 20 * testPage}, true},
		{"frame numbers hidden in one of them", []testProc{gateway, hidden(adapter)}, 7, []int64{40 * testPage, 20 * testPage}, true},
	} {
		var procs []procMemory
		for _, p := range tc.procs {
			maps, err := parseMaps([]byte(p.maps))
			if err != nil {
				t.Fatalf("%s: %v", tc.name, err)
			}
			pfns, hid, err := sharedPages(maps, p.pagemap, testPage)
			if err != nil {
				t.Fatalf("%s: %v", tc.name, err)
			}
			procs = append(procs, procMemory{anon: p.anon, file: p.file, shmem: p.shmem, pfns: pfns, hidden: hid})
		}
		f := combine(procs, testPage)
		if f.shared != tc.wantShared*testPage || !slices.Equal(f.anon, tc.wantAnon) || f.approx != tc.wantApprox {
			t.Errorf("%s: got shared %d pages, anon %v, approx %v; want %d pages, %v, %v",
				tc.name, f.shared/testPage, f.anon, f.approx, tc.wantShared, tc.wantAnon, tc.wantApprox)
		}
		var anon int64
		for _, a := range tc.wantAnon {
			anon += a
		}
		if f.total() != anon+tc.wantShared*testPage {
			t.Errorf("%s: total %d, want %d", tc.name, f.total(), anon+tc.wantShared*testPage)
		}
	}
}

// TestSharedPagesReadsInChunks checks a mapping longer than one read.
func TestSharedPagesReadsInChunks(t *testing.T) {
	const pages = 1300 // two full reads of 512 entries and part of a third
	pm := fakePagemap{}
	for i := uint64(0); i < pages; i++ {
		if i%2 == 0 {
			pm[0x10000+i] = fileEntry(5000 + i)
		}
	}
	maps := []mapping{{start: 0x10000 * testPage, end: (0x10000 + pages) * testPage, perms: "r-xp", inode: 9}}
	pfns, hidden, err := sharedPages(maps, pm, testPage)
	if err != nil || hidden || len(pfns) != pages/2 || pfns[0] != 5000 || pfns[len(pfns)-1] != 5000+pages-2 {
		t.Errorf("sharedPages over %d pages: got %d frames (%v...), hidden %v, %v; want %d, from 5000 to %d", pages, len(pfns), pfns[:min(3, len(pfns))], hidden, err, pages/2, 5000+pages-2)
	}
}

func TestParseMapsLine(t *testing.T) {
	for _, tc := range []struct {
		name, line string
		want       mapping
	}{
		{"the executable's text", "00400000-00c5a000 r-xp 00000000 fd:01 1234567                            /usr/local/bin/armoriq",
			mapping{start: 0x400000, end: 0xc5a000, perms: "r-xp", inode: 1234567, path: "/usr/local/bin/armoriq"}},
		{"anonymous, trailing space", "c000000000-c000400000 rw-p 00000000 00:00 0 ",
			mapping{start: 0xc000000000, end: 0xc000400000, perms: "rw-p", path: ""}},
		{"anonymous, no trailing space", "c000000000-c000400000 rw-p 00000000 00:00 0",
			mapping{start: 0xc000000000, end: 0xc000400000, perms: "rw-p"}},
		{"a path with spaces, deleted", "7f0000000000-7f0000002000 rw-s 00001000 00:01 77      /tmp/my file (deleted)",
			mapping{start: 0x7f0000000000, end: 0x7f0000002000, perms: "rw-s", inode: 77, path: "/tmp/my file (deleted)"}},
		{"a large device number", "7f00-8f00 r--p 00000000 103:02 5 /lib/x.so",
			mapping{start: 0x7f00, end: 0x8f00, perms: "r--p", inode: 5, path: "/lib/x.so"}},
		{"vsyscall", "ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0                  [vsyscall]",
			mapping{start: 0xffffffffff600000, end: 0xffffffffff601000, perms: "--xp", path: "[vsyscall]"}},
	} {
		got, err := parseMapsLine(tc.line)
		if err != nil || got != tc.want {
			t.Errorf("%s: parseMapsLine(%q) = %+v, %v; want %+v", tc.name, tc.line, got, err, tc.want)
		}
	}
	for _, bad := range []string{
		"",
		"00400000-00c5a000 r-xp 00000000 fd:01", // no inode
		"00400000 r-xp 00000000 fd:01 1",        // no range
		"00c5a000-00400000 r-xp 00000000 fd:01 1",       // end before start
		"00400000-00c5a000 r-xq 00000000 fd:01 1",       // neither p nor s
		"00400000-00c5a000 rwxpp 00000000 fd:01 1",      // five permissions
		"00400000-00c5a000 r-xp zz fd:01 1",             // offset
		"00400000-00c5a000 r-xp 00000000 fd01 1",        // device
		"00400000-00c5a000 r-xp 00000000 fd:01 -1",      // inode
		"0x400000-0xc5a000 r-xp 00000000 fd:01 1 /a",    // 0x
		"00400000-00c5a000  r-xp 00000000 fd:01 1 /a b", // two spaces
	} {
		if m, err := parseMapsLine(bad); err == nil {
			t.Errorf("parseMapsLine(%q) = %+v, no error; want one", bad, m)
		}
	}
}

func FuzzParseMapsLine(f *testing.F) {
	for line := range strings.Lines(binaryMaps) {
		f.Add(strings.TrimSuffix(line, "\n"))
	}
	f.Add("7f00-8f00 r--s 00000000 103:02 5 /a b (deleted)")
	f.Add("1-0 ---p 0 0:0 0")
	f.Fuzz(func(t *testing.T, line string) {
		m, err := parseMapsLine(line)
		if err != nil {
			return
		}
		if m.end < m.start || len(m.perms) != 4 {
			t.Errorf("parseMapsLine(%q) = %+v: range reversed or permissions not 4 letters", line, m)
		}
		_ = m.mayShare() // no panic
	})
}

// TestReadFootprintOfThisProcess reads this test's own process, and a
// child running the same executable: they share its pages.
func TestReadFootprintOfThisProcess(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the footprint is read from Linux's /proc")
	}
	self, err := readProcMemory(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if self.hidden {
		t.Skipf("page frame numbers read as 0: reading them takes CAP_SYS_ADMIN (root); this test runs as uid %d", os.Geteuid())
	}
	// The page of text this function runs from is resident, and its frame
	// is among the process's shared pages.
	pc := uint64(reflect.ValueOf(TestReadFootprintOfThisProcess).Pointer())
	pm, err := os.Open("/proc/self/pagemap")
	if err != nil {
		t.Fatal(err)
	}
	defer pm.Close()
	var e [8]byte
	page := uint64(os.Getpagesize())
	if _, err := pm.ReadAt(e[:], int64(pc/page*8)); err != nil {
		t.Fatal(err)
	}
	entry := binary.NativeEndian.Uint64(e[:])
	if entry&pmPresent == 0 || entry&pmShared == 0 || entry&pmPFNMask == 0 {
		t.Fatalf("the pagemap entry of this test's text page (%#x) is %#x: want present, a file's, with a frame number", pc, entry)
	}
	if !slices.Contains(self.pfns, entry&pmPFNMask) {
		t.Errorf("the frame of this test's text page (%#x) is not among the %d shared pages read", entry&pmPFNMask, len(self.pfns))
	}

	// A child of the same executable (it runs TestFootprintChild): their
	// shared pages overlap.
	cmd := exec.Command(os.Args[0], "-test.run=^TestFootprintChild$")
	cmd.Env = append(os.Environ(), footprintChildEnv+"=1")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		stdin.Close()
		cmd.Wait()
	}()
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if line != "ready\n" {
		t.Fatalf("the child said %q, %v; want ready", line, err)
	}
	child, err := readProcMemory(cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	both := distinct(self.pfns, child.pfns)
	one, other := distinct(self.pfns), distinct(child.pfns)
	if both >= one+other || both < max(one, other) {
		t.Errorf("this process has %d shared pages, the child %d, both %d: want fewer than the sum (they share the executable's), at least the larger", one, other, both)
	}
	t.Logf("this process: %d shared pages, the child %d, both %d", one, other, both)
}

// footprintChildEnv makes TestFootprintChild a child of
// TestReadFootprintOfThisProcess.
const footprintChildEnv = "LOADBENCH_FOOTPRINT_CHILD"

// TestFootprintChild, as a child, says it is ready and waits for its
// standard input to close.
func TestFootprintChild(t *testing.T) {
	if os.Getenv(footprintChildEnv) != "1" {
		t.Skip("the child of TestReadFootprintOfThisProcess")
	}
	fmt.Println("ready")
	_, _ = io.Copy(io.Discard, os.Stdin)
}

// BenchmarkReadFootprint reads this process's footprint: what the bench
// pays for a reading of one process (the gateway maps more of the
// executable than a test does).
func BenchmarkReadFootprint(b *testing.B) {
	if runtime.GOOS != "linux" {
		b.Skip("the footprint is read from Linux's /proc")
	}
	for b.Loop() {
		if _, err := readFootprint([]int{os.Getpid()}); err != nil {
			b.Fatal(err)
		}
	}
}
