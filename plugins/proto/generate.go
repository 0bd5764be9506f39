// Package proto holds the generated gRPC code of the adapter contract,
// version 1 (adapter.proto); v2/ holds version 2, v3/ version 3. Only package plugins
// should import them.
package proto

//go:generate protoc --go_out=. --go_opt=paths=source_relative --go-grpc_out=. --go-grpc_opt=paths=source_relative adapter.proto
//go:generate protoc --go_out=. --go_opt=paths=source_relative --go-grpc_out=. --go-grpc_opt=paths=source_relative v2/adapter.proto
//go:generate protoc --go_out=. --go_opt=paths=source_relative --go-grpc_out=. --go-grpc_opt=paths=source_relative v3/adapter.proto
