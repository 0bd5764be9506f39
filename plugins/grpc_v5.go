package plugins

import (
	"context"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	protov2 "github.com/armoriq/controlplane/plugins/proto/v2"
	protov3 "github.com/armoriq/controlplane/plugins/proto/v3"
)

// AdapterPluginV5 is the go-plugin glue of contract version 5: version 4
// plus the hop, a unix socket of the adapter's own that carries every raw
// call in frames of our own (hop.go), whose address and token the service
// armoriq.plugins.v5.Hop answers (Open). On the adapter side Impl must
// implement AdapterRaw; on the host side it returns an AdapterRaw whose
// CallRaw goes on the hop, or on Raw.Session where the adapter cannot
// offer it.
type AdapterPluginV5 struct {
	plugin.NetRPCUnsupportedPlugin
	Impl Adapter // adapter side only

	hop *hopServer   // adapter side: made by Serve
	log hclog.Logger // host side: where a hop that fails is logged
}

var _ plugin.GRPCPlugin = (*AdapterPluginV5)(nil)

// GRPCServer registers the adapter's services: those of version 4, and Hop.
func (p *AdapterPluginV5) GRPCServer(b *plugin.GRPCBroker, s *grpc.Server) error {
	if err := (&AdapterPluginV4{Impl: p.Impl}).GRPCServer(b, s); err != nil {
		return err
	}
	hop := p.hop
	if hop == nil {
		hop = newHopServer(p.Impl.(AdapterRaw))
	}
	s.RegisterService(&hopServiceDesc, hop)
	return nil
}

// GRPCClient returns the host's AdapterRaw over conn.
func (p *AdapterPluginV5) GRPCClient(_ context.Context, _ *plugin.GRPCBroker, conn *grpc.ClientConn) (any, error) {
	r := protov3.NewRawClient(conn)
	log := p.log
	if log == nil {
		log = hclog.NewNullLogger()
	}
	mux := &rawMux{r: r}
	return &grpcClientV3{
		grpcClientV2: grpcClientV2{c: protov2.NewAdapterClient(conn)}, r: r, mux: mux,
		hop: &hopMux{conn: conn, fallback: mux, warn: log.Warn, logErr: log.Error},
	}, nil
}
