// Package bundle is the signed policy bundle format: writing, reading,
// signing and verifying. It is a leaf: compiler and runtime both import it,
// it imports nothing of ours.
package bundle
