package loadbench

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc/<pid>/stat:
// 100 on every Linux architecture Go supports.
const clockTicks = 100

// procSupported says whether CPU and memory can be read from /proc.
func procSupported() bool { return runtime.GOOS == "linux" }

// procStat is what the bench reads of /proc/<pid>/stat.
type procStat struct {
	ppid      int
	cpu       time.Duration // utime + stime
	startTime uint64        // clock ticks after boot: with the pid, a process's identity
}

// parseStat parses the content of /proc/<pid>/stat. The command name, in
// parentheses, may itself hold spaces and parentheses: the fields are
// counted from the last ')'.
func parseStat(b []byte) (procStat, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return procStat{}, fmt.Errorf("no command name")
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state): ppid is field 4, utime 14, stime 15,
	// starttime 22.
	if len(f) < 20 {
		return procStat{}, fmt.Errorf("%d fields after the command name, want at least 20", len(f))
	}
	ppid, err1 := strconv.Atoi(f[1])
	ut, err2 := strconv.ParseUint(f[11], 10, 64)
	st, err3 := strconv.ParseUint(f[12], 10, 64)
	start, err4 := strconv.ParseUint(f[19], 10, 64)
	for _, err := range []error{err1, err2, err3, err4} {
		if err != nil {
			return procStat{}, err
		}
	}
	return procStat{ppid: ppid, cpu: ticksToDuration(ut + st), startTime: start}, nil
}

// ticksToDuration converts clock ticks to a duration.
func ticksToDuration(ticks uint64) time.Duration {
	return time.Duration(ticks) * (time.Second / clockTicks)
}

// readStat reads /proc/<pid>/stat.
func readStat(pid int) (procStat, error) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return procStat{}, err
	}
	st, err := parseStat(b)
	if err != nil {
		return procStat{}, fmt.Errorf("/proc/%d/stat: %v", pid, err)
	}
	return st, nil
}

// parseStatusKB reads a "Name:   1234 kB" line of /proc/<pid>/status, in
// bytes.
func parseStatusKB(status []byte, name string) (int64, bool) {
	for _, line := range strings.Split(string(status), "\n") {
		v, ok := strings.CutPrefix(line, name+":")
		if !ok {
			continue
		}
		v = strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB"))
		kb, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return 0, false
		}
		return kb << 10, true
	}
	return 0, false
}

// statusMemory is what the bench reads of a process's memory in
// /proc/<pid>/status, in bytes.
type statusMemory struct {
	rss, peak int64 // VmRSS, VmHWM
	anon      int64 // RssAnon: its own memory, no file's
}

// readStatusMemory reads a process's memory figures in /proc/<pid>/status.
func readStatusMemory(pid int) (statusMemory, error) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "status"))
	if err != nil {
		return statusMemory{}, err
	}
	var m statusMemory
	m.rss, _ = parseStatusKB(b, "VmRSS")
	m.peak, _ = parseStatusKB(b, "VmHWM")
	m.anon, _ = parseStatusKB(b, "RssAnon")
	return m, nil
}

// parseSwitches reads the context switches, voluntary and not, in the
// content of a /proc/<pid>/task/<tid>/status.
func parseSwitches(status []byte) uint64 {
	var n uint64
	for _, line := range strings.Split(string(status), "\n") {
		for _, name := range []string{"voluntary_ctxt_switches:", "nonvoluntary_ctxt_switches:"} {
			if v, ok := strings.CutPrefix(line, name); ok {
				if k, err := strconv.ParseUint(strings.TrimSpace(v), 10, 64); err == nil {
					n += k
				}
			}
		}
	}
	return n
}

// readSwitches is the context switches made so far by the threads of
// process pid that still run (a thread that exited takes its count with
// it; Go's runtime seldom ends a thread).
func readSwitches(pid int) uint64 {
	dir := filepath.Join("/proc", strconv.Itoa(pid), "task")
	tasks, err := os.ReadDir(dir)
	if err != nil {
		return 0
	}
	var n uint64
	for _, t := range tasks {
		if b, err := os.ReadFile(filepath.Join(dir, t.Name(), "status")); err == nil {
			n += parseSwitches(b)
		}
	}
	return n
}

// readCmdline is a process's arguments.
func readCmdline(pid int) []string {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "cmdline"))
	if err != nil {
		return nil
	}
	return strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
}

// descendants lists the processes below pid (children, their children, ...)
// with their stat, by scanning /proc.
func descendants(pid int) map[int]procStat {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	parent := map[int]procStat{}
	for _, e := range ents {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if st, err := readStat(p); err == nil {
			parent[p] = st
		}
	}
	out := map[int]procStat{}
	for changed := true; changed; {
		changed = false
		for p, st := range parent {
			if _, seen := out[p]; seen {
				continue
			}
			if _, under := out[st.ppid]; st.ppid == pid || under {
				out[p] = st
				changed = true
			}
		}
	}
	return out
}

// alive reports whether the process pid started at startTime still runs
// (a zombie does not count: it has exited, its parent has not reaped it).
func alive(pid int, startTime uint64) bool {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return false
	}
	st, err := parseStat(b)
	if err != nil || st.startTime != startTime {
		return false
	}
	i := bytes.LastIndexByte(b, ')')
	state := strings.Fields(string(b[i+1:]))[0]
	return state != "Z" && state != "X"
}
