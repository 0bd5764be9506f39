package main

import (
	"encoding/json"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/rogpeppe/go-internal/testscript"
)

// cmdDeviceCode waits for a pending device login on a gateway and sets VAR
// to its user code: devicecode GATEWAY ADMINKEYFILE VAR.
func cmdDeviceCode(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 3 {
		ts.Fatalf("usage: devicecode GATEWAY ADMINKEYFILE VAR")
	}
	key, err := os.ReadFile(ts.MkAbs(args[1]))
	ts.Check(err)
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		req, _ := http.NewRequest("GET", args[0]+"/v1/devices", nil)
		req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(key)))
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			var out struct {
				Devices []struct {
					UserCode string `json:"user_code"`
					State    string `json:"state"`
				} `json:"devices"`
			}
			json.NewDecoder(resp.Body).Decode(&out)
			resp.Body.Close()
			for _, d := range out.Devices {
				if d.State == "pending" {
					ts.Setenv(args[2], d.UserCode)
					return
				}
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	ts.Fatalf("no pending device login appeared")
}

// cmdFileMode checks a file's permission bits: filemode FILE 0600.
func cmdFileMode(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 2 {
		ts.Fatalf("usage: filemode FILE MODE")
	}
	fi, err := os.Stat(ts.MkAbs(args[0]))
	ts.Check(err)
	want, err := strconv.ParseUint(args[1], 8, 32)
	ts.Check(err)
	if got := fi.Mode().Perm(); (uint64(got) == want) == neg {
		ts.Fatalf("%s has mode %#o, want %s", args[0], got, args[1])
	}
}
