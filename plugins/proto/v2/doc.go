// Package protov2 holds the generated gRPC code of the adapter contract,
// version 2 (adapter.proto). Only package plugins should import it.
package protov2
