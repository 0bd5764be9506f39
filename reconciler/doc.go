// Package reconciler keeps gateways running the policy a git branch
// describes: it watches a git source, and for each new commit validates,
// compiles and signs the config, pushes the bundle to every target gateway
// over the admin HTTP API and reads back what each one runs (Reconciler,
// Source, Gateway, Webhook). It also holds the one-shot paths: Registrar,
// shared by "armoriq register" and the gateway's SDK registration endpoint,
// and Check, the pull request check; and the GitHub reporting they use
// (commit statuses, check runs with annotations, the PR comment), which is
// best effort (what a token may not write goes out as workflow commands)
// and cuts every text to GitHub's limits.
//
// It imports the schema and the compiler, never the runtime: gateways are
// reached over HTTP only.
package reconciler
