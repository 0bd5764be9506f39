// Package deploy holds the files that run the gateway in production: a
// Dockerfile (a static binary on distroless, non-root, no shell) and
// Kubernetes manifests for three replicas on PostgreSQL. Its tests decode
// the manifests strictly against the Kubernetes API types and check the
// Dockerfile, so neither can rot. docs/operations.md explains them.
package deploy
