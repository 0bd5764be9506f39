package reconciler

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	git "github.com/go-git/go-git/v5"
)

// maxConfigFile bounds a config file read from disk.
const maxConfigFile = 16 << 20

// NewFileSource returns a source that follows a config file on disk, not in
// git: each saved change is a new revision, "sha256:" and the hex SHA-256 of
// the file's bytes, built when it is first seen and stamped with that time.
// It serves "armoriq up" in a directory that is not a git repository, where
// an edit is enforced without a commit.
func NewFileSource(path string) (*Source, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("source: %v", err)
	}
	return &Source{
		opts: SourceOptions{URL: "file:" + abs, Path: filepath.Base(abs)},
		file: abs,
	}, nil
}

// readFile reads the file and returns its content and revision.
func (s *Source) readFile() ([]byte, string, error) {
	f, err := os.Open(s.file)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, "", fmt.Errorf("%s: no such file", s.file)
		}
		return nil, "", err
	}
	defer f.Close()
	data := make([]byte, 0, 4096)
	buf := make([]byte, 32<<10)
	for {
		n, err := f.Read(buf)
		data = append(data, buf[:n]...)
		if len(data) > maxConfigFile {
			return nil, "", fmt.Errorf("%s: larger than %d MiB", s.file, maxConfigFile>>20)
		}
		if err != nil {
			break
		}
	}
	sum := sha256.Sum256(data)
	return data, "sha256:" + hex.EncodeToString(sum[:]), nil
}

// fetchFile returns the file as a Commit when it still has revision rev; a
// file changed since Head is an error, so the next pass builds what is there.
func (s *Source) fetchFile(rev string) (*Commit, error) {
	data, got, err := s.readFile()
	if err != nil {
		return nil, err
	}
	if got != rev {
		return nil, fmt.Errorf("%s changed while it was read; reading it again", s.file)
	}
	return &Commit{Hash: rev, Time: time.Now().UTC().Truncate(time.Second), Message: "saved " + filepath.Base(s.file), Config: data}, nil
}

// TrackedFile reports whether the file at path is committed at HEAD in the
// git repository that holds it: then it returns the repository's root and
// the file's slash-separated path inside it, for a local Source. A file
// outside any repository, untracked, or in a repository with no commit yet
// is not tracked.
func TrackedFile(path string) (root, rel string, ok bool) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", "", false
	}
	repo, err := git.PlainOpenWithOptions(filepath.Dir(abs), &git.PlainOpenOptions{DetectDotGit: true})
	if err != nil {
		return "", "", false
	}
	wt, err := repo.Worktree()
	if err != nil {
		return "", "", false
	}
	root = wt.Filesystem.Root()
	if r, err := filepath.EvalSymlinks(root); err == nil {
		root = r
	}
	if a, err := filepath.EvalSymlinks(abs); err == nil {
		abs = a
	}
	rel, err = filepath.Rel(root, abs)
	if err != nil || strings.HasPrefix(rel, "..") {
		return "", "", false
	}
	rel = filepath.ToSlash(rel)
	head, err := repo.Head()
	if err != nil || !head.Name().IsBranch() {
		return "", "", false
	}
	c, err := repo.CommitObject(head.Hash())
	if err != nil {
		return "", "", false
	}
	if _, err := c.File(rel); err != nil {
		return "", "", false
	}
	return root, rel, true
}
