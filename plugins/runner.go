package plugins

import (
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"strconv"
	"sync"

	"github.com/hashicorp/go-plugin/runner"
)

// procRunner runs an adapter process for go-plugin. It replaces go-plugin's
// default runner so the host learns when the process exits (to restart it),
// knows its pid (for status), and kills its whole process group.
type procRunner struct {
	cmd            *exec.Cmd
	stdout, stderr io.ReadCloser
	exited         chan struct{} // closed once the process has been waited for

	mu      sync.Mutex
	waitErr error
}

var _ runner.Runner = (*procRunner)(nil)

func newProcRunner(cmd *exec.Cmd) (*procRunner, error) {
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	setAdapterProcAttr(cmd)
	return &procRunner{cmd: cmd, stdout: stdout, stderr: stderr, exited: make(chan struct{})}, nil
}

func (r *procRunner) Start(context.Context) error { return r.cmd.Start() }

func (r *procRunner) Diagnose(context.Context) string {
	return "the adapter did not answer the go-plugin handshake: is " + r.cmd.Path + " an armoriq adapter?"
}

func (r *procRunner) Stdout() io.ReadCloser { return r.stdout }
func (r *procRunner) Stderr() io.ReadCloser { return r.stderr }
func (r *procRunner) Name() string          { return r.cmd.Path }

// Wait is called once by go-plugin, after the process's output is drained.
func (r *procRunner) Wait(context.Context) error {
	err := r.cmd.Wait()
	r.mu.Lock()
	r.waitErr = err
	r.mu.Unlock()
	close(r.exited)
	return err
}

// exitErr reports how the process ended; call it after exited is closed.
func (r *procRunner) exitErr() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.waitErr == nil {
		return errors.New("exited")
	}
	return r.waitErr
}

// Kill kills the adapter's process group: the adapter, and anything it
// started that did not leave the group.
func (r *procRunner) Kill(context.Context) error {
	if r.cmd.Process == nil {
		return nil
	}
	killGroup(r.cmd.Process.Pid)
	if err := r.cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return err
	}
	return nil
}

func (r *procRunner) pid() int {
	if r.cmd.Process == nil {
		return 0
	}
	return r.cmd.Process.Pid
}

func (r *procRunner) ID() string { return strconv.Itoa(r.pid()) }

func (r *procRunner) PluginToHost(network, addr string) (string, string, error) {
	return network, addr, nil
}

func (r *procRunner) HostToPlugin(network, addr string) (string, string, error) {
	return network, addr, nil
}
