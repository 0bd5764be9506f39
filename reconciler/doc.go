// Package reconciler keeps gateways running the policy a git branch
// describes: it watches a git source, and for each new commit validates,
// compiles and signs the config, pushes the bundle to every target gateway
// over the admin HTTP API and reads back what each one runs. It also holds
// the one-shot path shared by "armoriq register" and the gateway's SDK
// registration endpoint, and the GitHub reporting (commit statuses, check
// runs, pull request comments).
package reconciler
