// Package e2e runs the reconciler end to end: real git repositories in temp
// dirs, real in-process gateways (runtime/gateway on SQLite stores) behind
// httptest servers, and the webhook. It lives apart from package reconciler
// because the reconciler itself must not import the runtime: only this test
// does, as a client of the gateway's admin HTTP API would.
package e2e
