package reconciler

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	git "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/transport"
	githttp "github.com/go-git/go-git/v5/plumbing/transport/http"
	gitssh "github.com/go-git/go-git/v5/plumbing/transport/ssh"
	"github.com/go-git/go-git/v5/storage/memory"
)

// SourceOptions says where the policy lives and how to reach it.
type SourceOptions struct {
	// URL is a local repository path, an https:// URL or an SSH URL
	// (ssh://… or git@host:owner/repo).
	URL string
	// Branch is the branch to follow; empty means the source's own HEAD
	// branch (the branch a local repository has checked out, the default
	// branch a remote advertises), resolved at the first Head.
	Branch string
	Path   string // config file in the tree; default "armoriq.yaml"

	// Token authenticates HTTPS (sent as basic auth, the way GitHub and
	// GitLab accept tokens).
	Token string
	// SSHKeyFile and SSHKeyPassphrase authenticate SSH URLs.
	SSHKeyFile       string
	SSHKeyPassphrase string
	// SSHKnownHosts is a known_hosts file to check the server's host key
	// against (default: the user's and the system's known_hosts).
	SSHKnownHosts string

	// CacheDir, when set, keeps the fetched objects on disk (a bare
	// repository) so a restart does not fetch the whole history again;
	// otherwise they are kept in memory.
	CacheDir string
}

// Source is a git branch the reconciler watches. It never checks out a
// worktree: the config is read from the commit's tree.
type Source struct {
	opts SourceOptions
	// bmu guards opts.Branch, resolved from the source's HEAD when empty.
	bmu    sync.Mutex
	auth   transport.AuthMethod
	mu     sync.Mutex // serializes fetches against the storage
	repo   *git.Repository
	remote *git.Remote
	// local is set for a repository on this machine: it is read in place,
	// reopened on every call so new commits and packs are seen, with no
	// transport and no git binary involved.
	local string
	// file is set for a plain config file, not in git (NewFileSource).
	file string
}

// Commit is one commit of the watched branch with the config file it holds.
type Commit struct {
	Hash    string
	Time    time.Time // committer time: the bundle's creation time
	Message string
	// Config is the config file's content at this commit; nil when the file
	// is missing (ConfigErr says why).
	Config    []byte
	ConfigErr error
	commit    *object.Commit
}

// NewSource prepares a source; it touches the network only when asked to
// poll or fetch.
func NewSource(opts SourceOptions) (*Source, error) {
	if opts.URL == "" {
		return nil, errors.New("source: no URL")
	}
	if opts.Path == "" {
		opts.Path = "armoriq.yaml"
	}
	opts.URL = normalizeURL(opts.URL)
	if local, ok := localPath(opts.URL); ok {
		return &Source{opts: opts, local: local}, nil
	}
	auth, err := sourceAuth(opts)
	if err != nil {
		return nil, err
	}
	var repo *git.Repository
	if opts.CacheDir != "" {
		repo, err = git.PlainOpen(opts.CacheDir)
		if errors.Is(err, git.ErrRepositoryNotExists) {
			repo, err = git.PlainInit(opts.CacheDir, true)
		}
		if err != nil {
			return nil, fmt.Errorf("source cache %s: %v", opts.CacheDir, err)
		}
	} else {
		repo, err = git.Init(memory.NewStorage(), nil)
		if err != nil {
			return nil, err
		}
	}
	remote, err := repo.Remote("origin")
	if errors.Is(err, git.ErrRemoteNotFound) {
		remote, err = repo.CreateRemote(&config.RemoteConfig{Name: "origin", URLs: []string{opts.URL}})
	}
	if err != nil {
		return nil, err
	}
	if got := remote.Config().URLs; len(got) == 0 || got[0] != opts.URL {
		if err := repo.DeleteRemote("origin"); err != nil {
			return nil, err
		}
		if remote, err = repo.CreateRemote(&config.RemoteConfig{Name: "origin", URLs: []string{opts.URL}}); err != nil {
			return nil, err
		}
	}
	return &Source{opts: opts, auth: auth, repo: repo, remote: remote}, nil
}

// localPath reports whether u names a repository on this machine: a path
// or a file:// URL.
func localPath(u string) (string, bool) {
	if p, ok := strings.CutPrefix(u, "file://"); ok {
		return p, true
	}
	if strings.Contains(u, "://") || strings.HasPrefix(u, "git@") {
		return "", false
	}
	return u, true
}

// openLocal opens the local repository afresh.
func (s *Source) openLocal() (*git.Repository, error) {
	repo, err := git.PlainOpenWithOptions(s.local, &git.PlainOpenOptions{DetectDotGit: true})
	if err != nil {
		return nil, fmt.Errorf("opening %s: %v", s.local, err)
	}
	return repo, nil
}

// normalizeURL turns a relative local path into an absolute one, which
// go-git's file transport needs.
func normalizeURL(u string) string {
	if strings.Contains(u, "://") || strings.HasPrefix(u, "git@") {
		return u
	}
	if abs, err := filepath.Abs(u); err == nil {
		return abs
	}
	return u
}

func sourceAuth(o SourceOptions) (transport.AuthMethod, error) {
	switch {
	case strings.HasPrefix(o.URL, "http://") || strings.HasPrefix(o.URL, "https://"):
		if o.Token == "" {
			return nil, nil
		}
		return &githttp.BasicAuth{Username: "x-access-token", Password: o.Token}, nil
	case strings.HasPrefix(o.URL, "ssh://") || strings.HasPrefix(o.URL, "git@"):
		if o.SSHKeyFile == "" {
			return nil, nil // ssh-agent, the library's default
		}
		if _, err := os.Stat(o.SSHKeyFile); err != nil {
			return nil, fmt.Errorf("ssh key: %v", err)
		}
		keys, err := gitssh.NewPublicKeysFromFile(sshUser(o.URL), o.SSHKeyFile, o.SSHKeyPassphrase)
		if err != nil {
			return nil, fmt.Errorf("ssh key %s: %v", o.SSHKeyFile, err)
		}
		if o.SSHKnownHosts != "" {
			if keys.HostKeyCallback, err = gitssh.NewKnownHostsCallback(o.SSHKnownHosts); err != nil {
				return nil, fmt.Errorf("ssh known hosts %s: %v", o.SSHKnownHosts, err)
			}
		}
		return keys, nil
	}
	return nil, nil
}

// sshUser is the user named in an SSH URL, "git" when none is.
func sshUser(u string) string {
	rest := strings.TrimPrefix(u, "ssh://")
	host, _, _ := strings.Cut(rest, "/")
	if user, _, ok := strings.Cut(host, "@"); ok && user != "" {
		return user
	}
	return "git"
}

// Options returns the source's options with defaults applied. Branch is
// empty until the source's HEAD branch is resolved (ResolveBranch, Head).
func (s *Source) Options() SourceOptions {
	o := s.opts
	o.Branch = s.branch()
	return o
}

func (s *Source) branch() string {
	s.bmu.Lock()
	defer s.bmu.Unlock()
	return s.opts.Branch
}

// String names the source in logs and status without credentials.
func (s *Source) String() string {
	if s.file != "" {
		return s.file
	}
	b := s.branch()
	if b == "" {
		b = "HEAD"
	}
	return redactURL(s.opts.URL) + "@" + b
}

// ResolveBranch makes sure the branch to follow is known: with no Branch
// option, it is the branch the source's HEAD names (a local repository's
// checked-out branch, a remote's default branch). It returns the branch.
func (s *Source) ResolveBranch(ctx context.Context) (string, error) {
	if b := s.branch(); b != "" || s.file != "" {
		return b, nil
	}
	var (
		head *plumbing.Reference
		refs []*plumbing.Reference
		err  error
	)
	if s.local != "" {
		repo, err := s.openLocal()
		if err != nil {
			return "", err
		}
		if head, err = repo.Reference(plumbing.HEAD, false); err != nil {
			return "", fmt.Errorf("%s: reading HEAD: %v", s.local, err)
		}
		if head.Type() != plumbing.SymbolicReference {
			return "", fmt.Errorf("%s: HEAD is detached (not on a branch): give the branch to follow", s.local)
		}
	} else {
		if refs, err = s.remote.ListContext(ctx, &git.ListOptions{Auth: s.auth}); err != nil {
			return "", fmt.Errorf("ls-remote %s: %v", redactURL(s.opts.URL), err)
		}
		head = headOf(refs)
		if head == nil {
			return "", fmt.Errorf("ls-remote %s: the remote names no HEAD branch: give the branch to follow", redactURL(s.opts.URL))
		}
	}
	name := head.Target()
	if !name.IsBranch() {
		return "", fmt.Errorf("%s: HEAD points at %s, not a branch: give the branch to follow", redactURL(s.opts.URL), name)
	}
	s.bmu.Lock()
	defer s.bmu.Unlock()
	if s.opts.Branch == "" {
		s.opts.Branch = name.Short()
	}
	return s.opts.Branch, nil
}

// headOf finds the remote's HEAD branch among its advertised refs: the
// symbolic HEAD when the server sends it, else the one branch at HEAD's
// commit (main, then master, when several are).
func headOf(refs []*plumbing.Reference) *plumbing.Reference {
	var head *plumbing.Reference
	for _, r := range refs {
		if r.Name() == plumbing.HEAD {
			head = r
		}
	}
	switch {
	case head == nil:
		return nil
	case head.Type() == plumbing.SymbolicReference:
		return head
	}
	var at []plumbing.ReferenceName
	for _, r := range refs {
		if r.Name().IsBranch() && r.Type() == plumbing.HashReference && r.Hash() == head.Hash() {
			at = append(at, r.Name())
		}
	}
	for _, pref := range []plumbing.ReferenceName{"refs/heads/main", "refs/heads/master"} {
		if slices.Contains(at, pref) {
			return plumbing.NewSymbolicReference(plumbing.HEAD, pref)
		}
	}
	if len(at) == 1 {
		return plumbing.NewSymbolicReference(plumbing.HEAD, at[0])
	}
	return nil
}

// Head asks the remote for the branch's head commit: a cheap ls-remote,
// done before any fetch. For a file source it is the file's content hash.
func (s *Source) Head(ctx context.Context) (string, error) {
	if s.file != "" {
		_, rev, err := s.readFile()
		return rev, err
	}
	branch, err := s.ResolveBranch(ctx)
	if err != nil {
		return "", err
	}
	if s.local != "" {
		repo, err := s.openLocal()
		if err != nil {
			return "", err
		}
		ref, err := repo.Reference(plumbing.NewBranchReferenceName(branch), true)
		if err != nil {
			return "", fmt.Errorf("%s: no branch %q: %v", s.local, branch, err)
		}
		return ref.Hash().String(), nil
	}
	refs, err := s.remote.ListContext(ctx, &git.ListOptions{Auth: s.auth})
	if err != nil {
		return "", fmt.Errorf("ls-remote %s: %v", redactURL(s.opts.URL), err)
	}
	want := plumbing.NewBranchReferenceName(branch)
	for _, r := range refs {
		if r.Name() == want {
			return r.Hash().String(), nil
		}
	}
	return "", fmt.Errorf("ls-remote %s: no branch %q", redactURL(s.opts.URL), branch)
}

// Fetch makes sure hash is in the local storage, fetching the branch with
// force when it is not (a force-pushed branch is followed, not merged).
func (s *Source) Fetch(ctx context.Context, hash string) (*Commit, error) {
	if s.file != "" {
		return s.fetchFile(hash)
	}
	branch, err := s.ResolveBranch(ctx)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	h := plumbing.NewHash(hash)
	repo := s.repo
	if s.local != "" {
		var err error
		if repo, err = s.openLocal(); err != nil {
			return nil, err
		}
	} else if _, err := repo.CommitObject(h); err != nil {
		spec := config.RefSpec(fmt.Sprintf("+refs/heads/%s:refs/remotes/origin/%s", branch, branch))
		err := s.repo.FetchContext(ctx, &git.FetchOptions{
			RemoteName: "origin",
			RefSpecs:   []config.RefSpec{spec},
			Auth:       s.auth,
			Force:      true,
			Tags:       git.NoTags,
		})
		if err != nil && !errors.Is(err, git.NoErrAlreadyUpToDate) {
			return nil, fmt.Errorf("fetch %s: %v", s, err)
		}
	}
	c, err := repo.CommitObject(h)
	if err != nil {
		return nil, fmt.Errorf("commit %s not found after fetching %s: %v", short(hash), s, err)
	}
	out := &Commit{Hash: hash, Time: c.Committer.When.UTC(), Message: c.Message, commit: c}
	f, err := c.File(s.opts.Path)
	switch {
	case errors.Is(err, object.ErrFileNotFound):
		out.ConfigErr = fmt.Errorf("%s: no such file at commit %s", s.opts.Path, short(hash))
	case err != nil:
		out.ConfigErr = fmt.Errorf("%s at %s: %v", s.opts.Path, short(hash), err)
	default:
		content, err := f.Contents()
		if err != nil {
			out.ConfigErr = fmt.Errorf("%s at %s: %v", s.opts.Path, short(hash), err)
		} else {
			out.Config = []byte(content)
		}
	}
	return out, nil
}

// VerifySignature checks the commit's PGP signature against an armored key
// ring and returns the signer's identity.
func (c *Commit) VerifySignature(armoredKeyRing string) (string, error) {
	if c.commit == nil || c.commit.PGPSignature == "" {
		return "", fmt.Errorf("commit %s is not signed", short(c.Hash))
	}
	ent, err := c.commit.Verify(armoredKeyRing)
	if err != nil {
		return "", fmt.Errorf("commit %s: signature does not verify with the trusted keys: %v", short(c.Hash), err)
	}
	for name := range ent.Identities {
		return name, nil
	}
	return ent.PrimaryKey.KeyIdString(), nil
}

// redactURL drops credentials embedded in a URL.
func redactURL(u string) string {
	scheme, rest, ok := strings.Cut(u, "://")
	if !ok {
		return u
	}
	if at := strings.LastIndex(strings.SplitN(rest, "/", 2)[0], "@"); at >= 0 {
		rest = rest[at+1:]
	}
	return scheme + "://" + rest
}

func short(h string) string {
	if len(h) > 12 {
		return h[:12]
	}
	return h
}
