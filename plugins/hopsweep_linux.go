package plugins

import (
	"bufio"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// hopSweepAge is how old a hop directory must be before a sweep may take
// it: an adapter makes its directory, then binds its socket in it.
const hopSweepAge = time.Minute

// sweepHopLeftovers removes the hop directories (hopDirPrefix*, in the
// temporary directory, owned by this user, older than hopSweepAge) whose
// socket no process listens on any more: left by an adapter that was
// killed together with its host, which otherwise removes them
// (hopMux.removeLeftovers). Linux tells which unix sockets are bound in
// /proc/net/unix; a directory holding anything but a socket named
// hopSocketName is left alone. It returns the directories removed.
func sweepHopLeftovers() []string {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), hopDirPrefix+"*"))
	if len(dirs) == 0 {
		return nil
	}
	bound, err := boundUnixSockets()
	if err != nil {
		return nil // cannot tell live from stale: keep everything
	}
	uid := os.Getuid()
	var removed []string
	for _, dir := range dirs {
		fi, err := os.Lstat(dir)
		if err != nil || !fi.IsDir() || time.Since(fi.ModTime()) < hopSweepAge {
			continue
		}
		if st, ok := fi.Sys().(*syscall.Stat_t); !ok || int(st.Uid) != uid {
			continue
		}
		sock := filepath.Join(dir, hopSocketName)
		if bound[sock] {
			continue // an adapter listens on it
		}
		if entries, err := os.ReadDir(dir); err != nil || len(entries) > 1 || len(entries) == 1 && entries[0].Name() != hopSocketName {
			continue
		}
		if removeHopDir(dir) {
			removed = append(removed, dir)
		}
	}
	return removed
}

// boundUnixSockets returns the paths of the unix sockets bound on this
// machine (/proc/net/unix).
func boundUnixSockets() (map[string]bool, error) {
	f, err := os.Open("/proc/net/unix")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	paths := map[string]bool{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		// Num RefCount Protocol Flags Type St Inode Path
		fields := strings.Fields(sc.Text())
		if len(fields) >= 8 && strings.HasPrefix(fields[7], "/") {
			paths[fields[7]] = true
		}
	}
	return paths, sc.Err()
}
