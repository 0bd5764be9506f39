// Package protov3 holds the generated gRPC code of the adapter contract,
// version 3 (adapter.proto). Only package plugins should import it.
package protov3
