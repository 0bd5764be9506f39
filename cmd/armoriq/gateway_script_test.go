package main

import (
	"io"
	"net/http"
	"os"
	"regexp"
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

// cmdHTTPGet fetches a URL and writes the body to stdout: httpget
// [-until REGEXP] URL. It fails on a status other than 200; with ! it
// expects one. With -until it fetches again, for up to 10 s, until the
// body matches REGEXP (a state the gateway reaches in its own time, such
// as an adapter's restart loop settling on "down"), and fails if it never
// does.
func cmdHTTPGet(ts *testscript.TestScript, neg bool, args []string) {
	var until *regexp.Regexp
	if len(args) == 3 && args[0] == "-until" {
		re, err := regexp.Compile(args[1])
		if err != nil {
			ts.Fatalf("httpget -until: %v", err)
		}
		until, args = re, args[2:]
	}
	if len(args) != 1 {
		ts.Fatalf("usage: httpget [-until REGEXP] URL")
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get(args[0])
		if err != nil {
			ts.Fatalf("httpget: %v", err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if until != nil && !until.Match(body) && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
			continue
		}
		ts.Stdout().Write(body)
		if (resp.StatusCode == http.StatusOK) == neg {
			ts.Fatalf("httpget %s: status %d", args[0], resp.StatusCode)
		}
		if until != nil && !until.Match(body) {
			ts.Fatalf("httpget %s: the body never matched %q in 10s; last: %s", args[0], until, body)
		}
		return
	}
}
