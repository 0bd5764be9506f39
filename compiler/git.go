package compiler

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
)

// ErrUncommitted is wrapped by GitRevision's error when a config has no
// clean committed state to name it by: it is outside any git repository,
// not committed, or changed since HEAD. Callers then fall back to
// ContentRevision and say why.
var ErrUncommitted = errors.New("not a clean git checkout")

// maxConfigSize bounds a file read from git history.
const maxConfigSize = 8 << 20

// GitRevision returns the HEAD commit of the git repository containing path
// (a config file or a directory; the repository is found by walking up, as
// git does) and the commit's committer time. If path has uncommitted changes
// (modified, staged, untracked, or, for a directory, anything under it) the
// error wraps ErrUncommitted and says which.
func GitRevision(path string) (commit string, commitTime time.Time, err error) {
	abs, err := realPath(path)
	if err != nil {
		return "", time.Time{}, err
	}
	fi, err := os.Stat(abs)
	if err != nil {
		return "", time.Time{}, err
	}
	dir := abs
	if !fi.IsDir() {
		dir = filepath.Dir(abs)
	}
	repo, err := git.PlainOpenWithOptions(dir, &git.PlainOpenOptions{DetectDotGit: true})
	if errors.Is(err, git.ErrRepositoryNotExists) {
		return "", time.Time{}, fmt.Errorf("%w: %s is not in a git repository", ErrUncommitted, path)
	}
	if err != nil {
		return "", time.Time{}, err
	}
	wt, err := repo.Worktree()
	if err != nil {
		return "", time.Time{}, err
	}
	root, err := realPath(wt.Filesystem.Root())
	if err != nil {
		return "", time.Time{}, err
	}
	rel, err := filepath.Rel(root, abs)
	if err != nil {
		return "", time.Time{}, err
	}
	rel = filepath.ToSlash(rel)
	head, err := repo.Head()
	if errors.Is(err, plumbing.ErrReferenceNotFound) {
		return "", time.Time{}, fmt.Errorf("%w: the repository has no commit yet", ErrUncommitted)
	}
	if err != nil {
		return "", time.Time{}, err
	}
	c, err := repo.CommitObject(head.Hash())
	if err != nil {
		return "", time.Time{}, err
	}
	if !fi.IsDir() {
		if _, err := c.File(rel); errors.Is(err, object.ErrFileNotFound) {
			return "", time.Time{}, fmt.Errorf("%w: %s is not committed", ErrUncommitted, path)
		} else if err != nil {
			return "", time.Time{}, err
		}
	}
	st, err := wt.Status()
	if err != nil {
		return "", time.Time{}, err
	}
	for p, fs := range st {
		under := p == rel || fi.IsDir() && (rel == "." || strings.HasPrefix(p, rel+"/"))
		if under && (fs.Worktree != git.Unmodified || fs.Staging != git.Unmodified) {
			return "", time.Time{}, fmt.Errorf("%w: %s has uncommitted changes", ErrUncommitted, path)
		}
	}
	return head.Hash().String(), c.Committer.When, nil
}

// ReadAtRevision reads path as it is at rev in the git repository
// containing repoDir. rev is anything git can resolve to a commit here: a
// branch, a tag (lightweight or annotated), HEAD~1, a full or unambiguous
// short hash. path is relative to repoDir, or absolute inside the worktree;
// in a bare repository it is relative to the repository root. It returns the
// file's bytes with the full commit hash and its committer time.
func ReadAtRevision(repoDir, rev, path string) (data []byte, commit string, commitTime time.Time, err error) {
	repo, err := git.PlainOpenWithOptions(repoDir, &git.PlainOpenOptions{DetectDotGit: true})
	if err != nil {
		return nil, "", time.Time{}, fmt.Errorf("opening git repository at %s: %v", repoDir, err)
	}
	rel, err := repoPath(repo, repoDir, path)
	if err != nil {
		return nil, "", time.Time{}, err
	}
	h, err := repo.ResolveRevision(plumbing.Revision(rev))
	if err != nil {
		return nil, "", time.Time{}, fmt.Errorf("unknown revision %q: %v", rev, err)
	}
	c, err := repo.CommitObject(*h)
	if err != nil {
		return nil, "", time.Time{}, fmt.Errorf("revision %q: %v", rev, err)
	}
	f, err := c.File(rel)
	if errors.Is(err, object.ErrFileNotFound) {
		return nil, "", time.Time{}, fmt.Errorf("%s does not exist at %s (%s)", rel, rev, c.Hash.String()[:12])
	}
	if err != nil {
		return nil, "", time.Time{}, err
	}
	if f.Size > maxConfigSize {
		return nil, "", time.Time{}, fmt.Errorf("%s at %s is %d bytes, more than the %d-byte limit", rel, rev, f.Size, maxConfigSize)
	}
	s, err := f.Contents()
	if err != nil {
		return nil, "", time.Time{}, err
	}
	return []byte(s), c.Hash.String(), c.Committer.When, nil
}

// RepoPath returns path (a file or directory) relative to the root of the
// git worktree containing it, with forward slashes: the name a config file
// has in every checkout, whatever the working directory.
func RepoPath(path string) (string, error) {
	abs, err := realPath(path)
	if err != nil {
		return "", err
	}
	dir := abs
	if fi, err := os.Stat(abs); err != nil || !fi.IsDir() {
		dir = filepath.Dir(abs)
	}
	repo, err := git.PlainOpenWithOptions(dir, &git.PlainOpenOptions{DetectDotGit: true})
	if err != nil {
		return "", err
	}
	return repoPath(repo, dir, abs)
}

// repoPath turns path (relative to dir, or absolute) into a slash path
// relative to the repository's worktree root.
func repoPath(repo *git.Repository, dir, path string) (string, error) {
	wt, err := repo.Worktree()
	if errors.Is(err, git.ErrIsBareRepository) {
		return filepath.ToSlash(filepath.Clean(path)), nil
	}
	if err != nil {
		return "", err
	}
	root, err := realPath(wt.Filesystem.Root())
	if err != nil {
		return "", err
	}
	base, err := realPath(dir)
	if err != nil {
		return "", err
	}
	p := path
	if !filepath.IsAbs(p) {
		p = filepath.Join(base, p)
	} else if rp, err := realPath(filepath.Dir(p)); err == nil {
		p = filepath.Join(rp, filepath.Base(p))
	}
	rel, err := filepath.Rel(root, p)
	if err != nil || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
		return "", fmt.Errorf("%s is outside the git repository at %s", path, root)
	}
	return filepath.ToSlash(rel), nil
}

// realPath is the absolute path with symlinks resolved, so that paths
// compare equal to go-git's worktree root.
func realPath(p string) (string, error) {
	abs, err := filepath.Abs(p)
	if err != nil {
		return "", err
	}
	if r, err := filepath.EvalSymlinks(abs); err == nil {
		return r, nil
	}
	return abs, nil
}
