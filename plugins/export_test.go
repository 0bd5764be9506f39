package plugins

import (
	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	protov3 "github.com/armoriq/controlplane/plugins/proto/v3"
)

// ServeV1 serves impl under contract version 1 only, as an adapter built
// before version 2 does.
func ServeV1(impl Adapter) {
	serve(impl, map[int]plugin.PluginSet{1: {pluginName: &AdapterPlugin{Impl: impl}}})
}

// ServeV3 serves impl under contract versions 1 to 3, with a Raw service
// that has Call but no Session: an adapter built before version 4.
func ServeV3(impl Adapter) {
	serve(impl, map[int]plugin.PluginSet{
		1: {pluginName: &AdapterPlugin{Impl: impl}},
		2: {pluginName: &AdapterPluginV2{Impl: impl}},
		3: {pluginName: &adapterPluginV3Only{AdapterPluginV3{Impl: impl}}},
	})
}

// adapterPluginV3Only is AdapterPluginV3 as it was before version 4.
type adapterPluginV3Only struct{ AdapterPluginV3 }

func (p *adapterPluginV3Only) GRPCServer(b *plugin.GRPCBroker, s *grpc.Server) error {
	if err := (&AdapterPluginV2{Impl: p.Impl}).GRPCServer(b, s); err != nil {
		return err
	}
	protov3.RegisterRawServer(s, rawCallOnly{s: &grpcServerV3{impl: p.Impl.(AdapterRaw)}})
	return nil
}

// rawCallOnly serves Raw.Call; Raw.Session answers Unimplemented.
type rawCallOnly struct {
	protov3.UnimplementedRawServer
	s *grpcServerV3
}

func (r rawCallOnly) Call(stream protov3.Raw_CallServer) error { return r.s.Call(stream) }

// ServeV4 serves impl under contract versions 1 to 4: an adapter built
// before version 5 (no hop).
func ServeV4(impl Adapter) {
	serve(impl, map[int]plugin.PluginSet{
		1: {pluginName: &AdapterPlugin{Impl: impl}},
		2: {pluginName: &AdapterPluginV2{Impl: impl}},
		3: {pluginName: &AdapterPluginV3{Impl: impl}},
		4: {pluginName: &AdapterPluginV4{Impl: impl}},
	})
}
