package main

import (
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/rogpeppe/go-internal/testscript"
)

// cmdEventually runs a command until it succeeds (or, with !, fails), for
// at most a duration; its last output is kept for stdout/stderr checks:
// eventually DURATION [!] COMMAND [ARG...].
func cmdEventually(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) < 2 {
		ts.Fatalf("usage: eventually DURATION [!] COMMAND [ARG...]")
	}
	d, err := time.ParseDuration(args[0])
	if err != nil {
		ts.Fatalf("eventually: %v", err)
	}
	args = args[1:]
	wantFail := args[0] == "!"
	if wantFail {
		args = args[1:]
	}
	deadline := time.Now().Add(d)
	for n := 1; ; n++ {
		err := ts.Exec(args[0], args[1:]...)
		if (err != nil) == wantFail {
			return
		}
		if time.Now().After(deadline) {
			ts.Fatalf("%s: still %v after %s (%d attempts)", strings.Join(args, " "), err, d, n)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// cmdEnvFile sets an environment variable to a file's trimmed content:
// envfile VAR FILE.
func cmdEnvFile(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: envfile VAR FILE")
	}
	ts.Setenv(args[0], strings.TrimSpace(ts.ReadFile(args[1])))
}

// cmdPerm checks a file's permission bits: perm FILE 0600.
func cmdPerm(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 2 {
		ts.Fatalf("usage: perm FILE MODE")
	}
	fi, err := os.Stat(ts.MkAbs(args[0]))
	ts.Check(err)
	got := fmt.Sprintf("%#o", fi.Mode().Perm())
	if (got == args[1]) == neg {
		ts.Fatalf("%s has mode %s, want %s%s", args[0], got, map[bool]string{true: "not "}[neg], args[1])
	}
}

// cmdSleep waits: sleep DURATION. Only to let a background process see a
// change it polls for when nothing else can be observed.
func cmdSleep(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: sleep DURATION")
	}
	d, err := time.ParseDuration(args[0])
	ts.Check(err)
	time.Sleep(d)
}
