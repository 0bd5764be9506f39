package reconciler

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
)

// sshGitServer serves git-upload-pack over SSH for one client key, the way
// GitHub serves git@github.com:owner/repo.
func sshGitServer(t *testing.T, root string, client ssh.PublicKey) (addr string, hostKey ssh.PublicKey) {
	t.Helper()
	if _, err := exec.LookPath("git-upload-pack"); err != nil {
		t.Skip("needs git-upload-pack")
	}
	_, hostPriv, _ := ed25519.GenerateKey(rand.Reader)
	signer, err := ssh.NewSignerFromKey(hostPriv)
	if err != nil {
		t.Fatal(err)
	}
	cfg := &ssh.ServerConfig{PublicKeyCallback: func(_ ssh.ConnMetadata, k ssh.PublicKey) (*ssh.Permissions, error) {
		if string(k.Marshal()) != string(client.Marshal()) {
			return nil, fmt.Errorf("unknown key")
		}
		return nil, nil
	}}
	cfg.AddHostKey(signer)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go serveSSH(c, cfg, root)
		}
	}()
	return ln.Addr().String(), signer.PublicKey()
}

func serveSSH(c net.Conn, cfg *ssh.ServerConfig, root string) {
	_, chans, reqs, err := ssh.NewServerConn(c, cfg)
	if err != nil {
		return
	}
	go ssh.DiscardRequests(reqs)
	for nc := range chans {
		ch, creqs, err := nc.Accept()
		if err != nil {
			continue
		}
		go func() {
			defer ch.Close()
			for req := range creqs {
				if req.Type != "exec" {
					req.Reply(false, nil)
					continue
				}
				var p struct{ Cmd string }
				ssh.Unmarshal(req.Payload, &p)
				name, arg, _ := strings.Cut(p.Cmd, " ")
				if name != "git-upload-pack" {
					req.Reply(false, nil)
					return
				}
				req.Reply(true, nil)
				cmd := exec.Command("git-upload-pack", filepath.Join(root, strings.Trim(arg, "'/")))
				cmd.Stdin, cmd.Stdout, cmd.Stderr = ch, ch, io.Discard
				status := 0
				if err := cmd.Run(); err != nil {
					status = 1
				}
				ch.SendRequest("exit-status", false, ssh.Marshal(struct{ Status uint32 }{uint32(status)}))
				return
			}
		}()
	}
}

func TestSourceSSHWithKey(t *testing.T) {
	repo := newTestRepo(t)
	c1 := repo.commit("first", map[string]string{"armoriq.yaml": "one\n"})

	_, clientPriv, _ := ed25519.GenerateKey(rand.Reader)
	block, err := ssh.MarshalPrivateKey(clientPriv, "")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "id_ed25519")
	os.WriteFile(keyFile, pem.EncodeToMemory(block), 0o600)
	clientSigner, _ := ssh.NewSignerFromKey(clientPriv)

	addr, hostKey := sshGitServer(t, filepath.Dir(repo.dir), clientSigner.PublicKey())
	host, port, _ := net.SplitHostPort(addr)
	knownHosts := filepath.Join(dir, "known_hosts")
	os.WriteFile(knownHosts, []byte(fmt.Sprintf("[%s]:%s %s", host, port, ssh.MarshalAuthorizedKey(hostKey))), 0o600)

	url := fmt.Sprintf("ssh://git@%s/%s", addr, filepath.Base(repo.dir))
	src, err := NewSource(SourceOptions{URL: url, SSHKeyFile: keyFile, SSHKnownHosts: knownHosts})
	if err != nil {
		t.Fatal(err)
	}
	head, err := src.Head(ctxT(t))
	if err != nil || head != c1 {
		t.Fatalf("Head over SSH = %q, %v; want %s", head, err, c1)
	}
	c, err := src.Fetch(ctxT(t), head)
	if err != nil || string(c.Config) != "one\n" {
		t.Fatalf("Fetch over SSH = %+v, %v", c, err)
	}

	// Another host key than the one known is refused.
	os.WriteFile(knownHosts, []byte(fmt.Sprintf("[%s]:%s %s", host, port, ssh.MarshalAuthorizedKey(clientSigner.PublicKey()))), 0o600)
	src, _ = NewSource(SourceOptions{URL: url, SSHKeyFile: keyFile, SSHKnownHosts: knownHosts})
	if _, err := src.Head(ctxT(t)); err == nil {
		t.Error("Head succeeded with a host key that does not match known_hosts")
	}
}
