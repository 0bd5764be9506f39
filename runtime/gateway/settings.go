package gateway

import (
	"crypto/ed25519"
	"errors"
	"maps"
	"time"
)

// Settings are the parts of a Server's configuration that can change while
// it runs (Reload). Everything else in Config is fixed at NewServer.
type Settings struct {
	// TrustedKeys are the bundle-signing keys a new bundle must be signed
	// with. The active bundle stays active when its key is dropped: it was
	// verified when it was activated.
	TrustedKeys map[string]ed25519.PublicKey
	// MaxTokenTTL caps the validity of tokens issued from now on.
	MaxTokenTTL time.Duration
	// CallTimeout bounds tool calls forwarded from now on.
	CallTimeout time.Duration
}

// Reload applies st to calls and bundles that start after it returns. A
// zero duration keeps the current value; TrustedKeys is replaced as given
// (nil or empty trusts no key: every new bundle is refused).
func (s *Server) Reload(st Settings) error {
	if st.MaxTokenTTL < 0 || st.CallTimeout < 0 {
		return errors.New("gateway: durations must not be negative")
	}
	cur := s.live.Load()
	next := &Settings{TrustedKeys: maps.Clone(st.TrustedKeys), MaxTokenTTL: cur.MaxTokenTTL, CallTimeout: cur.CallTimeout}
	if st.MaxTokenTTL > 0 {
		next.MaxTokenTTL = st.MaxTokenTTL
	}
	if st.CallTimeout > 0 {
		next.CallTimeout = st.CallTimeout
	}
	s.live.Store(next)
	return nil
}

// callTimeout is the current limit of one forwarded call.
func (s *Server) callTimeout() time.Duration { return s.live.Load().CallTimeout }
