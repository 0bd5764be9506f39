package main

import (
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/rogpeppe/go-internal/testscript"
)

// cmdWaitReady waits for a gateway's --ready-file and puts its URL in an
// environment variable, and the admin listener's (its second line) in
// another: waitready FILE VAR [ADMINVAR].
func cmdWaitReady(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) < 2 || len(args) > 3 {
		ts.Fatalf("usage: waitready FILE VAR [ADMINVAR]")
	}
	path := ts.MkAbs(args[0])
	deadline := time.Now().Add(30 * time.Second)
	for {
		if b, err := os.ReadFile(path); err == nil && strings.HasSuffix(string(b), "\n") {
			lines := strings.Split(strings.TrimSpace(string(b)), "\n")
			ts.Setenv(args[1], lines[0])
			if len(args) == 3 {
				if len(lines) < 2 {
					ts.Fatalf("%s has no admin URL (second line)", args[0])
				}
				ts.Setenv(args[2], lines[1])
			}
			return
		}
		if time.Now().After(deadline) {
			ts.Fatalf("%s did not appear within 30s", args[0])
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// cmdHTTPGet fetches a URL and writes the body to stdout: httpget URL.
// It fails on a status other than 200; with ! it expects one.
func cmdHTTPGet(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 1 {
		ts.Fatalf("usage: httpget URL")
	}
	resp, err := http.Get(args[0])
	if err != nil {
		ts.Fatalf("httpget: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	ts.Stdout().Write(body)
	if (resp.StatusCode == http.StatusOK) == neg {
		ts.Fatalf("httpget %s: status %d", args[0], resp.StatusCode)
	}
}
