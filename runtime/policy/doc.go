// Package policy is the decision engine: it compiles a bundle's policy once
// into lookup structures and decides each tool call (allow, hold or deny)
// for a user, an agent, a server, a tool and its arguments.
//
// The same engine decides tools/call at the gateway, filters tools/list,
// answers `armoriq test` and drives `armoriq diff`. It is a leaf: it imports
// only compiler/bundle. The decision rules are written in docs/policy.md.
package policy
