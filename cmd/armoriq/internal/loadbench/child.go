package loadbench

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"time"
)

// child is a process the bench started: the upstream, the proxy, the
// gateway, a stdio server.
type child struct {
	role   string
	cmd    *exec.Cmd
	exited chan struct{} // closed once the process has been waited for
	err    error         // its exit, once exited is closed
	stderr *tailBuffer   // the end of its standard error, for messages
}

// startChild starts exe with args in a process group of its own, its
// standard error kept (the end of it) and copied to logw if set.
func startChild(role, exe string, args []string, env []string, logw io.Writer, setup func(*exec.Cmd) error) (*child, error) {
	cmd := exec.Command(exe, args...)
	cmd.Env = env
	if setup != nil {
		if err := setup(cmd); err != nil {
			return nil, err
		}
	}
	tb := &tailBuffer{max: 8 << 10}
	if logw != nil {
		cmd.Stderr = io.MultiWriter(tb, logw)
	} else {
		cmd.Stderr = tb
	}
	setChildProcAttr(cmd)
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting the %s (%s %s): %v", role, exe, strings.Join(args, " "), err)
	}
	c := &child{role: role, cmd: cmd, exited: make(chan struct{}), stderr: tb}
	go func() {
		c.err = cmd.Wait()
		close(c.exited)
	}()
	return c, nil
}

func (c *child) pid() int { return c.cmd.Process.Pid }

// waitReady waits for the child's ready file and returns its lines. It
// fails when the child exits first, or after timeout.
func (c *child) waitReady(ctx context.Context, path string, timeout time.Duration) ([]string, error) {
	t := time.NewTimer(timeout)
	defer t.Stop()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		if b, err := os.ReadFile(path); err == nil && strings.HasSuffix(string(b), "\n") {
			return strings.Split(strings.TrimSpace(string(b)), "\n"), nil
		}
		select {
		case <-c.exited:
			return nil, fmt.Errorf("the %s exited (%v) before it was ready: %s", c.role, c.err, c.stderr.String())
		case <-t.C:
			return nil, fmt.Errorf("the %s %w within %s: %s", c.role, errNotReady, timeout, c.stderr.String())
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-tick.C:
		}
	}
}

// stop asks the child's process group to stop (SIGTERM), waits up to
// grace for it to exit, then kills the group.
func (c *child) stop(grace time.Duration) {
	select {
	case <-c.exited:
		killGroup(c.pid()) // anything left in its group
		return
	default:
	}
	terminate(c.pid())
	select {
	case <-c.exited:
	case <-time.After(grace):
	}
	killGroup(c.pid())
	<-c.exited
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	b   []byte
	max int
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if len(t.b) > t.max {
		t.b = append(t.b[:0], t.b[len(t.b)-t.max:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := strings.TrimSpace(string(t.b))
	if s == "" {
		return "(no output)"
	}
	return s
}
