// Package compiler turns a validated schema.Config into a policy bundle: the
// SDK allow/deny lists and policy.rules become one list of rules, the
// server catalogue loses every secret value, and the manifest records where
// the bundle came from (git revision or content hash, commit time, source
// digests) so that the same input always compiles to the same bytes.
//
// It also reads revision information from git (GitRevision,
// ReadAtRevision), policy tests and the access diff between two configs.
// Signing and the archive format live in compiler/bundle.
package compiler
