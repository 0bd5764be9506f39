package main

import (
	"os"
	"strconv"
	"time"

	"github.com/rogpeppe/go-internal/testscript"
)

// cmdChtime sets a file's modification time: chtime FILE UNIX-SECONDS.
func cmdChtime(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: chtime FILE UNIX-SECONDS")
	}
	sec, err := strconv.ParseInt(args[1], 10, 64)
	ts.Check(err)
	t := time.Unix(sec, 0)
	ts.Check(os.Chtimes(ts.MkAbs(args[0]), t, t))
}
