package bundle

import (
	"crypto/ed25519"
	"slices"
	"strconv"
	"strings"
)

// Verify parses a bundle and checks it against the pinned keys, by key id:
// it is the one call a gateway makes before running a bundle. It never
// trusts a key carried in the bundle. Checks, in order: the archive is well
// formed and of a supported format; it is signed; by a pinned key; the
// signature verifies; the archive holds exactly the signed files with the
// signed SHA-256 digests; the files decode. The error is a *VerifyError
// naming the first failure. Rollback protection (Manifest.Sequence) is the
// caller's job.
func Verify(data []byte, keys map[string]ed25519.PublicKey) (*Bundle, error) {
	b, _, err := VerifyWithSignature(data, keys)
	return b, err
}

// VerifyWithSignature is Verify, also returning the signature that
// verified, so a caller can say which pinned key signed the bundle.
func VerifyWithSignature(data []byte, keys map[string]ed25519.PublicKey) (*Bundle, *Signature, error) {
	b, j, err := verify(data, keys)
	if err != nil {
		return nil, nil, err
	}
	return b, j.signature(), nil
}

func verify(data []byte, keys map[string]ed25519.PublicKey) (*Bundle, *jws, error) {
	files, err := readArchive(data)
	if err != nil {
		return nil, nil, err
	}
	if err := checkFormat(files); err != nil {
		return nil, nil, err
	}
	sf := find(files, SignaturesFile)
	if sf == nil {
		return nil, nil, verifyErrorf(Unsigned, "bundle has no %s", SignaturesFile)
	}
	jwss, err := parseSignatures(sf.data)
	if err != nil {
		return nil, nil, err
	}
	j, pub := pick(jwss, keys)
	if j == nil {
		kids := make([]string, 0, len(jwss))
		for _, j := range jwss {
			kids = append(kids, clip(j.header.Kid))
		}
		pinned := make([]string, 0, len(keys))
		for k := range keys {
			pinned = append(pinned, k)
		}
		slices.Sort(pinned)
		if len(pinned) == 0 {
			return nil, nil, verifyErrorf(UnknownKey, "bundle is signed by key %s, and no key is pinned", strings.Join(kids, ", "))
		}
		return nil, nil, verifyErrorf(UnknownKey, "bundle is signed by key %s, which is not pinned (pinned: %s)", strings.Join(kids, ", "), strings.Join(pinned, ", "))
	}
	kid := j.header.Kid
	if j.header.Alg != SignatureAlgorithm {
		return nil, nil, verifyErrorf(UnsupportedFormat, "signature by key %s uses algorithm %q, want %q", kid, truncate(j.header.Alg), SignatureAlgorithm)
	}
	if len(pub) != ed25519.PublicKeySize {
		return nil, nil, verifyErrorf(BadSignature, "pinned key %s is not an Ed25519 public key", kid)
	}
	if !ed25519.Verify(pub, []byte(j.signingInput), j.sig) {
		return nil, nil, verifyErrorf(BadSignature, "signature by key %s does not verify", kid)
	}
	if j.payload.KeyID != kid {
		return nil, nil, verifyErrorf(BadSignature, "signature header names key %s but its payload names key %q", kid, j.payload.KeyID)
	}
	if err := checkFiles(files, j.payload.Files); err != nil {
		return nil, nil, err
	}
	b, err := decode(files)
	if err != nil {
		return nil, nil, err
	}
	if b.Manifest.Revision != j.payload.Revision {
		return nil, nil, malformedf("signed revision %q differs from the manifest's %q", j.payload.Revision, b.Manifest.Revision)
	}
	return b, j, nil
}

// pick returns the first signature made by a pinned key, and that key.
func pick(jwss []*jws, keys map[string]ed25519.PublicKey) (*jws, ed25519.PublicKey) {
	for _, j := range jwss {
		if pub, ok := keys[j.header.Kid]; ok && j.header.Kid != "" {
			return j, pub
		}
	}
	return nil, nil
}

// checkFiles compares the archive with the signed file list: every file but
// .signatures.json must be listed with its digest, and every listed file
// must be there.
func checkFiles(files []file, signed []FileHash) error {
	want := make(map[string]FileHash, len(signed))
	for _, fh := range signed {
		if _, dup := want[fh.Name]; dup {
			return malformedf("signature lists file %q twice", fh.Name)
		}
		if fh.Name == SignaturesFile {
			return malformedf("signature lists %s itself", SignaturesFile)
		}
		if !strings.EqualFold(fh.Algorithm, HashAlgorithm) {
			return verifyErrorf(UnsupportedFormat, "signature hashes file %q with %q, want %s", fh.Name, fh.Algorithm, HashAlgorithm)
		}
		want[fh.Name] = fh
	}
	for _, f := range files {
		if f.name == SignaturesFile {
			continue
		}
		fh, ok := want[f.name]
		if !ok {
			return verifyErrorf(FileAdded, "file %q is in the bundle but not in its signature", f.name)
		}
		if got := sha256Hex(f.data); got != strings.ToLower(fh.Hash) {
			return verifyErrorf(FileChanged, "file %q does not match its signed SHA-256 (signed %s, got %s)", f.name, short(fh.Hash), short(got))
		}
		delete(want, f.name)
	}
	for _, fh := range signed {
		if _, missing := want[fh.Name]; missing {
			return verifyErrorf(FileRemoved, "file %q is signed but missing from the bundle", fh.Name)
		}
	}
	return nil
}

// clip quotes an untrusted string for an error message, cut to a length
// that cannot flood a log or a status page.
func clip(s string) string {
	const max = 64
	if len(s) > max {
		return strconv.Quote(s[:max]) + "…"
	}
	if s == "" || strings.ContainsFunc(s, func(r rune) bool { return r < 0x21 || r > 0x7e }) {
		return strconv.Quote(s)
	}
	return s
}

func truncate(s string) string {
	if len(s) > 64 {
		return s[:64]
	}
	return s
}

func short(h string) string {
	if len(h) > 16 {
		return h[:16] + "…"
	}
	return h
}
