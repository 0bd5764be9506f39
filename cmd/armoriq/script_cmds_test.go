package main

import "github.com/rogpeppe/go-internal/testscript"

// scriptCmds lists custom testscript commands (servers, fixtures) that
// scripts may use. Add one entry per command, defined in its own *_test.go file.
func scriptCmds() map[string]func(ts *testscript.TestScript, neg bool, args []string) {
	return map[string]func(ts *testscript.TestScript, neg bool, args []string){
		"mcpserver":      cmdMCPServer,      // mcpserver_test.go
		"deadurl":        cmdDeadURL,        // mcpserver_test.go
		"waitready":      cmdWaitReady,      // gateway_script_test.go
		"httpget":        cmdHTTPGet,        // gateway_script_test.go
		"eventually":     cmdEventually,     // up_script_test.go
		"envfile":        cmdEnvFile,        // up_script_test.go
		"perm":           cmdPerm,           // up_script_test.go
		"sleep":          cmdSleep,          // up_script_test.go
		"fakegithub":     cmdFakeGitHub,     // github_script_test.go
		"githubrequests": cmdGitHubRequests, // github_script_test.go
		"githook":        cmdGitHook,        // github_script_test.go
		"auditfixture":   cmdAuditFixture,   // auditfixture_test.go
		"devicecode":     cmdDeviceCode,     // login_script_test.go
		"filemode":       cmdFileMode,       // login_script_test.go
		"chtime":         cmdChtime,         // chtime_test.go
		"procsgone":      cmdProcsGone,      // bench_test.go
	}
}
