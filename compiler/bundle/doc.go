// Package bundle is the signed policy bundle format: writing, reading,
// signing and verifying. It is a leaf: compiler and runtime both import it,
// it imports nothing of ours.
//
// A bundle is a deterministic tar.gz of manifest.json, policy.json,
// servers.json and .signatures.json, the last holding an Ed25519 compact
// JWS over the SHA-256 of every other file, as OPA's signed bundles do.
// Write signs; Verify, the one call gateways make, checks a bundle against
// pinned keys only and says why it refuses one with a *VerifyError. The
// format is specified in docs/bundle.md.
package bundle
