// Package proto holds the generated gRPC code of the adapter contract
// (adapter.proto). Only package plugins should import it.
package proto

//go:generate protoc --go_out=. --go_opt=paths=source_relative --go-grpc_out=. --go-grpc_opt=paths=source_relative adapter.proto
