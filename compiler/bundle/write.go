package bundle

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"time"
)

// serversFile is servers.json: an object, so later versions can add to it.
type serversFile struct {
	Servers []Server `json:"servers"`
}

// Write encodes b as a bundle signed with key under keyID (KeyID of the
// key's public half when empty) and writes it to w. The output depends only
// on b, key and keyID: the same inputs give the same bytes on any machine
// with the same Go release. Manifest.FormatVersion 0 means FormatVersion;
// Manifest.CreatedAt is written in UTC to the second and is also every
// archive entry's modification time. Identity providers are written sorted
// by name, their scopes and algorithms sorted (their order means nothing).
func Write(w io.Writer, b *Bundle, key ed25519.PrivateKey, keyID string) error {
	if b == nil {
		return errors.New("writing bundle: nil bundle")
	}
	if len(key) != ed25519.PrivateKeySize {
		return errors.New("writing bundle: signing key is not an Ed25519 private key")
	}
	if keyID == "" {
		keyID = KeyID(key.Public().(ed25519.PublicKey))
	}
	files, mtime, err := encode(b)
	if err != nil {
		return fmt.Errorf("writing bundle: %v", err)
	}
	sigs, err := sign(files, key, keyID, b.Manifest.Revision)
	if err != nil {
		return fmt.Errorf("writing bundle: %v", err)
	}
	files = append(files, file{name: SignaturesFile, data: sigs})
	return writeArchive(w, files, mtime)
}

// encode renders the bundle's files in archive order, normalised so that
// equal bundles give equal bytes (UTC time, empty lists rather than null).
func encode(b *Bundle) ([]file, time.Time, error) {
	m := b.Manifest
	switch m.FormatVersion {
	case 0:
		m.FormatVersion = FormatVersion
	case FormatVersion:
	default:
		return nil, time.Time{}, fmt.Errorf("format version %d: this build writes version %d", m.FormatVersion, FormatVersion)
	}
	if m.Sequence < 0 {
		return nil, time.Time{}, fmt.Errorf("sequence %d is negative", m.Sequence)
	}
	m.CreatedAt = m.CreatedAt.UTC().Truncate(time.Second)
	if m.Sources == nil {
		m.Sources = []Source{}
	}
	p := b.Policy
	if err := checkIdentityProviders(p.IdentityProviders); err != nil {
		return nil, time.Time{}, err
	}
	p.IdentityProviders = sortedProviders(p.IdentityProviders)
	if p.Rules == nil {
		p.Rules = []Rule{}
	}
	s := serversFile{Servers: b.Servers}
	if s.Servers == nil {
		s.Servers = []Server{}
	}
	var files []file
	for _, f := range []struct {
		name string
		v    any
	}{{ManifestFile, m}, {PolicyFile, p}, {ServersFile, s}} {
		data, err := marshalFile(f.v)
		if err != nil {
			return nil, time.Time{}, fmt.Errorf("encoding %s: %v", f.name, err)
		}
		files = append(files, file{name: f.name, data: data})
	}
	return files, m.CreatedAt, nil
}
