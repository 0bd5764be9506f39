// Package proto holds the generated gRPC code of the adapter contract,
// version 1 (adapter.proto); v2/ holds version 2, v3/ version 3. Only package plugins
// should import them.
//
// The .pb.go files are what protoc 3.21.12 with protoc-gen-go v1.36.12 and
// protoc-gen-go-grpc v1.6.2 write (the go:generate lines below). Where
// protoc is not at hand, protoc-gen-go's own generator (internal_gengo, of
// the google.golang.org/protobuf version in go.mod) run over a
// CodeGeneratorRequest built by github.com/bufbuild/protocompile, with
// source info and compiler version 3.21.12, writes the same bytes: it
// reproduces the committed files of an unchanged .proto exactly. The
// *_grpc.pb.go files change only when a service does.
package proto

//go:generate protoc --go_out=. --go_opt=paths=source_relative --go-grpc_out=. --go-grpc_opt=paths=source_relative adapter.proto
//go:generate protoc --go_out=. --go_opt=paths=source_relative --go-grpc_out=. --go-grpc_opt=paths=source_relative v2/adapter.proto
//go:generate protoc --go_out=. --go_opt=paths=source_relative --go-grpc_out=. --go-grpc_opt=paths=source_relative v3/adapter.proto
