package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"golang.org/x/term"
)

// Exit codes shared by every command.
const (
	exitOK      = 0
	exitFailure = 1 // the command ran and found a problem (invalid config, failed test)
	exitUsage   = 2 // bad flags or arguments, unreadable input
)

// command is one armoriq command. Command files build these; only this file
// knows that cobra sits underneath.
type command struct {
	Use     string // "validate [PATH...]"
	Short   string
	Long    string
	Example string
	Hidden  bool
	// MinArgs and MaxArgs bound the positional arguments; MaxArgs < 0 means no limit.
	MinArgs, MaxArgs int
	// Flags declares the command's flags on fs.
	Flags func(fs *pflag.FlagSet)
	// Run does the work. It returns nil, an *exitError, or any other error
	// (printed as "armoriq: <err>", exit 1).
	Run func(ctx context.Context, env *env, args []string) error
	Sub []*command
}

// env is what a command may touch of the outside world, so tests can run
// commands in-process with their own streams and environment.
type env struct {
	Stdin    io.Reader
	Stdout   io.Writer
	Stderr   io.Writer
	Getenv   func(string) string
	Terminal bool // stdin and stdout are terminals: prompts are allowed
}

// exitError ends a command with a specific exit code. A nil Err means the
// command has already printed what the user needs to see.
type exitError struct {
	Code int
	Err  error
}

func (e *exitError) Error() string {
	if e.Err == nil {
		return fmt.Sprintf("exit status %d", e.Code)
	}
	return e.Err.Error()
}

func (e *exitError) Unwrap() error { return e.Err }

// usageErrorf reports a usage problem: bad flags, arguments or unreadable input (exit 2).
func usageErrorf(format string, args ...any) error {
	return &exitError{Code: exitUsage, Err: fmt.Errorf(format, args...)}
}

// silentExit ends a command with code after it printed its own report.
func silentExit(code int) error { return &exitError{Code: code} }

// Main runs armoriq with the process's arguments and streams and returns the exit code.
func Main() int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	e := &env{
		Stdin:    os.Stdin,
		Stdout:   os.Stdout,
		Stderr:   os.Stderr,
		Getenv:   os.Getenv,
		Terminal: term.IsTerminal(int(os.Stdin.Fd())) && term.IsTerminal(int(os.Stdout.Fd())),
	}
	return run(ctx, os.Args[1:], e)
}

// run executes one command line and maps its outcome to an exit code: the one
// place where errors become exit statuses.
func run(ctx context.Context, args []string, e *env) int {
	root := toCobra(rootCommand(), e)
	root.SetArgs(args)
	root.SetIn(e.Stdin)
	root.SetOut(e.Stdout)
	root.SetErr(e.Stderr)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return exitOK
	}
	var xe *exitError
	if errors.As(err, &xe) {
		if xe.Err != nil {
			fmt.Fprintf(e.Stderr, "armoriq: %v\n", xe.Err)
		}
		return xe.Code
	}
	var ue *cobraUsageError
	if errors.As(err, &ue) {
		fmt.Fprintf(e.Stderr, "armoriq: %v\nRun '%s --help' for usage.\n", ue.err, strings.TrimSpace("armoriq "+ue.path))
		return exitUsage
	}
	fmt.Fprintf(e.Stderr, "armoriq: %v\n", err)
	return exitFailure
}

// cobraUsageError marks errors cobra raised while parsing flags or arguments.
type cobraUsageError struct {
	path string
	err  error
}

func (e *cobraUsageError) Error() string { return e.err.Error() }

func toCobra(c *command, e *env) *cobra.Command {
	cc := &cobra.Command{
		Use:           c.Use,
		Short:         c.Short,
		Long:          c.Long,
		Example:       c.Example,
		Hidden:        c.Hidden,
		SilenceErrors: true,
		SilenceUsage:  true,
	}
	if c.Flags != nil {
		c.Flags(cc.Flags())
	}
	cc.SetFlagErrorFunc(func(cmd *cobra.Command, err error) error {
		return &cobraUsageError{path: cmdPath(cmd), err: err}
	})
	if c.Run != nil {
		min, max := c.MinArgs, c.MaxArgs
		cc.Args = func(cmd *cobra.Command, args []string) error {
			switch {
			case len(args) < min:
				return &cobraUsageError{path: cmdPath(cmd), err: fmt.Errorf("%s needs at least %d argument(s), got %d", cmd.Name(), min, len(args))}
			case max >= 0 && len(args) > max:
				return &cobraUsageError{path: cmdPath(cmd), err: fmt.Errorf("%s takes at most %d argument(s), got %d", cmd.Name(), max, len(args))}
			}
			return nil
		}
		run := c.Run
		cc.RunE = func(cmd *cobra.Command, args []string) error {
			return run(cmd.Context(), e, args)
		}
	} else {
		cc.Args = func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return &cobraUsageError{path: cmdPath(cmd), err: fmt.Errorf("unknown command %q for %q", args[0], cmd.CommandPath())}
			}
			return nil
		}
		cc.RunE = func(cmd *cobra.Command, args []string) error {
			return cmd.Help()
		}
	}
	for _, sub := range c.Sub {
		cc.AddCommand(toCobra(sub, e))
	}
	return cc
}

func cmdPath(cmd *cobra.Command) string {
	p := cmd.CommandPath()
	if len(p) > len("armoriq ") {
		return p[len("armoriq "):]
	}
	return ""
}
