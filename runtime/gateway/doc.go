// Package gateway is the armoriq gateway: the HTTP server agents call. It
// serves the ArmorIQ SDK API (token issuance, invoke, register), the admin
// API (keys, bundles, audit) and enforces the active signed policy bundle,
// writing a hash-chained audit record for every decision.
//
// It lives in runtime/gateway rather than runtime itself so its package name
// does not shadow the standard library's runtime.
package gateway
