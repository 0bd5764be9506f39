package bundle

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
)

// Limits a reader enforces before trusting anything in a bundle. A bundle
// holds a handful of small JSON files; anything far larger is an attack or a
// mistake.
const (
	// MaxSize bounds both the compressed archive and the sum of its
	// uncompressed entries, in bytes.
	MaxSize = 32 << 20
	// maxEntries bounds the number of archive entries.
	maxEntries = 64
	// maxNameLen bounds an entry's name.
	maxNameLen = 100
)

// Names of the files in a bundle, in archive order.
const (
	ManifestFile   = "manifest.json"
	PolicyFile     = "policy.json"
	ServersFile    = "servers.json"
	SignaturesFile = ".signatures.json"
)

// file is one archive entry.
type file struct {
	name string
	data []byte
}

// writeArchive writes files as a tar.gz whose bytes depend only on the
// files and mtime: fixed mode, owner and time in every header, a gzip header
// without name or time, a fixed compression level.
func writeArchive(w io.Writer, files []file, mtime time.Time) error {
	if mtime.Before(time.Unix(0, 0)) {
		mtime = time.Unix(0, 0)
	}
	mtime = mtime.UTC().Truncate(time.Second)
	var buf bytes.Buffer
	zw, err := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	if err != nil {
		return err
	}
	tw := tar.NewWriter(zw)
	for _, f := range files {
		hdr := &tar.Header{
			Typeflag: tar.TypeReg,
			Name:     f.name,
			Mode:     0o644,
			Size:     int64(len(f.data)),
			ModTime:  mtime,
			Format:   tar.FormatUSTAR,
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return fmt.Errorf("writing %s: %v", f.name, err)
		}
		if _, err := tw.Write(f.data); err != nil {
			return fmt.Errorf("writing %s: %v", f.name, err)
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	if err := zw.Close(); err != nil {
		return err
	}
	_, err = w.Write(buf.Bytes())
	return err
}

// readArchive splits a tar.gz into its files, refusing anything a bundle
// writer would not produce: oversized input, more than maxEntries entries,
// non-regular entries, names that are not flat file names, duplicates, and
// data after the gzip stream. Errors are *VerifyError with Reason Malformed.
func readArchive(data []byte) ([]file, error) {
	if len(data) > MaxSize {
		return nil, malformedf("bundle is %d bytes, more than the %d-byte limit", len(data), MaxSize)
	}
	br := bytes.NewReader(data)
	zr, err := gzip.NewReader(br)
	if err != nil {
		return nil, malformedf("not a gzip archive: %v", err)
	}
	zr.Multistream(false)
	tr := tar.NewReader(zr)
	var (
		files []file
		seen  = map[string]bool{}
		total int64
	)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, malformedf("reading archive: %v", err)
		}
		if len(files) == maxEntries {
			return nil, malformedf("archive has more than %d entries", maxEntries)
		}
		if err := checkName(hdr.Name); err != nil {
			return nil, err
		}
		if hdr.Typeflag != tar.TypeReg {
			return nil, malformedf("entry %q is not a regular file (tar type %q)", hdr.Name, hdr.Typeflag)
		}
		if seen[hdr.Name] {
			return nil, malformedf("entry %q appears twice", hdr.Name)
		}
		seen[hdr.Name] = true
		if hdr.Size < 0 || hdr.Size > MaxSize-total {
			return nil, malformedf("entry %q makes the bundle larger than the %d-byte limit", hdr.Name, MaxSize)
		}
		total += hdr.Size
		b, err := io.ReadAll(io.LimitReader(tr, hdr.Size))
		if err != nil {
			return nil, malformedf("reading %s: %v", hdr.Name, err)
		}
		if int64(len(b)) != hdr.Size {
			return nil, malformedf("entry %q is truncated", hdr.Name)
		}
		files = append(files, file{name: hdr.Name, data: b})
	}
	// Drain the rest of the gzip stream so its checksum is verified.
	if _, err := io.Copy(io.Discard, io.LimitReader(zr, MaxSize)); err != nil {
		return nil, malformedf("reading archive: %v", err)
	}
	if err := zr.Close(); err != nil {
		return nil, malformedf("reading archive: %v", err)
	}
	if br.Len() != 0 {
		return nil, malformedf("%d bytes of trailing data after the gzip stream", br.Len())
	}
	return files, nil
}

// checkName accepts only flat file names: a bundle has no directories, so
// any separator or dot-dot is either a mistake or a path traversal attempt.
func checkName(name string) error {
	switch {
	case name == "":
		return malformedf("entry with an empty name")
	case len(name) > maxNameLen:
		return malformedf("entry name %.40q... is longer than %d bytes", name, maxNameLen)
	case name == "." || name == ".." || strings.Contains(name, "..") && strings.ContainsAny(name, `/\`):
		return malformedf("entry %q: path traversal", name)
	case strings.ContainsAny(name, "/\\"):
		return malformedf("entry %q: a bundle holds only flat file names", name)
	case strings.ContainsFunc(name, func(r rune) bool { return r < 0x20 || r == 0x7f }):
		return malformedf("entry %q: control character in name", name)
	}
	return nil
}
