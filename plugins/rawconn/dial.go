package rawconn

import (
	"context"
	"net"
)

// DialContext returns d's DialContext, its connections wrapped: what an
// http.Transport or a pool takes to dial raw connections.
func DialContext(d *net.Dialer) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := d.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return Wrap(c), nil
	}
}
