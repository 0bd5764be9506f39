// Package intent holds the cryptographic core of intent tokens: the canonical
// JSON form the ArmorIQ SDKs sign, the plan hash, the Merkle tree over a plan's
// steps and its inclusion proofs, and the Ed25519 token and JWT that bind a
// plan to an identity for a short time.
//
// It is a leaf: it imports nothing of ours, so the gateway, the Go SDK and the
// tests can share one definition of every byte that is hashed or signed. The
// exact rules, with test vectors, are written in docs/intent.md.
package intent
