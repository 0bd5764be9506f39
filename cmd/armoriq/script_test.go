package main

import (
	"flag"
	"os"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"
)

var updateScripts = flag.Bool("update", false, "rewrite the expected output in testdata/script/*.txtar")

func TestMain(m *testing.M) {
	testscript.Main(m, map[string]func(){
		"armoriq": func() { os.Exit(Main()) },
	})
}

// TestScript runs the CLI end to end: each testdata/script/*.txtar file holds
// the fixtures, the commands and their expected output and exit status.
// Custom commands shared by scripts are registered in scriptCmds.
func TestScript(t *testing.T) {
	testscript.Run(t, testscript.Params{
		Dir:           "testdata/script",
		UpdateScripts: *updateScripts,
		Cmds:          scriptCmds(),
		Setup: func(e *testscript.Env) error {
			e.Setenv("HOME", e.WorkDir)
			e.Setenv("NO_COLOR", "1")
			e.Values[fakeGitHubKey{}] = &fakeGitHubSlot{}
			return nil
		},
	})
}
