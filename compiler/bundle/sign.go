package bundle

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
)

// HashAlgorithm names the digest of every file in a signature payload.
const HashAlgorithm = "SHA-256"

// SignatureAlgorithm is the JWS "alg" of bundle signatures.
const SignatureAlgorithm = "EdDSA"

// Signature is a bundle's signed statement as read from .signatures.json. As
// returned by Read it is unverified: only Verify says it can be trusted.
type Signature struct {
	KeyID     string     `json:"keyid"`
	Algorithm string     `json:"algorithm"`
	Revision  string     `json:"revision"`
	Files     []FileHash `json:"files"`
}

// FileHash is one file's digest in a signature payload.
type FileHash struct {
	Name      string `json:"name"`
	Hash      string `json:"hash"` // lowercase hex
	Algorithm string `json:"algorithm"`
}

// payload is what the JWS signs: every file but .signatures.json with its
// digest, the key id and the revision. The field order is the wire order.
type payload struct {
	Files    []FileHash `json:"files"`
	KeyID    string     `json:"keyid"`
	Revision string     `json:"revision"`
}

// jwsHeader is the protected header of a bundle signature.
type jwsHeader struct {
	Alg string `json:"alg"`
	Kid string `json:"kid"`
}

// signaturesFile is .signatures.json, as in OPA: a list of compact JWS.
type signaturesFile struct {
	Signatures []string `json:"signatures"`
}

var b64 = base64.RawURLEncoding

func sha256Hex(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// sign returns the .signatures.json contents for files. Ed25519 signatures
// are deterministic, so the result depends only on its inputs.
func sign(files []file, key ed25519.PrivateKey, keyID, revision string) ([]byte, error) {
	p := payload{KeyID: keyID, Revision: revision, Files: make([]FileHash, 0, len(files))}
	for _, f := range files {
		p.Files = append(p.Files, FileHash{Name: f.name, Hash: sha256Hex(f.data), Algorithm: HashAlgorithm})
	}
	hdr, err := json.Marshal(jwsHeader{Alg: SignatureAlgorithm, Kid: keyID})
	if err != nil {
		return nil, err
	}
	body, err := json.Marshal(p)
	if err != nil {
		return nil, err
	}
	signingInput := b64.EncodeToString(hdr) + "." + b64.EncodeToString(body)
	sig := ed25519.Sign(key, []byte(signingInput))
	jws := signingInput + "." + b64.EncodeToString(sig)
	return marshalFile(signaturesFile{Signatures: []string{jws}})
}

// jws is a parsed, unverified compact JWS.
type jws struct {
	header       jwsHeader
	payload      payload
	signingInput string
	sig          []byte
}

func parseJWS(s string) (*jws, error) {
	parts := strings.Split(s, ".")
	if len(parts) != 3 {
		return nil, malformedf("signature is not a compact JWS (%d parts, want 3)", len(parts))
	}
	var j jws
	hb, err := b64.DecodeString(parts[0])
	if err != nil {
		return nil, malformedf("signature header: %v", err)
	}
	if err := strictUnmarshal(hb, &j.header); err != nil {
		return nil, malformedf("signature header: %v", err)
	}
	pb, err := b64.DecodeString(parts[1])
	if err != nil {
		return nil, malformedf("signature payload: %v", err)
	}
	if err := strictUnmarshal(pb, &j.payload); err != nil {
		return nil, malformedf("signature payload: %v", err)
	}
	if j.sig, err = b64.DecodeString(parts[2]); err != nil {
		return nil, malformedf("signature value: %v", err)
	}
	j.signingInput = parts[0] + "." + parts[1]
	return &j, nil
}

// parseSignatures decodes .signatures.json into its JWS list. A file with
// no signature is Unsigned.
func parseSignatures(data []byte) ([]*jws, error) {
	var sf signaturesFile
	if err := strictUnmarshal(data, &sf); err != nil {
		return nil, malformedf("%s: %v", SignaturesFile, err)
	}
	if len(sf.Signatures) == 0 {
		return nil, verifyErrorf(Unsigned, "%s lists no signature", SignaturesFile)
	}
	out := make([]*jws, 0, len(sf.Signatures))
	for _, s := range sf.Signatures {
		j, err := parseJWS(s)
		if err != nil {
			return nil, err
		}
		out = append(out, j)
	}
	return out, nil
}

func (j *jws) signature() *Signature {
	return &Signature{KeyID: j.header.Kid, Algorithm: j.header.Alg, Revision: j.payload.Revision, Files: j.payload.Files}
}

// marshalFile is the one JSON encoding of every bundle file: indented, with
// a final newline, fields in struct order and map keys sorted.
func marshalFile(v any) ([]byte, error) {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// strictUnmarshal decodes one JSON value, refusing unknown fields and
// trailing data: a signed artifact has no room for fields a reader would
// silently ignore.
func strictUnmarshal(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if rest := bytes.TrimSpace(data[dec.InputOffset():]); len(rest) != 0 {
		return fmt.Errorf("trailing data after the JSON value")
	}
	return nil
}
