package bundle

import (
	"archive/tar"
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
)

// signedFiles returns the sample bundle's files, with .signatures.json made
// by sign over files (which may differ from the archive's, to tamper).
func sampleFiles(t *testing.T) []file {
	t.Helper()
	files, _, err := encode(sampleBundle())
	if err != nil {
		t.Fatal(err)
	}
	return files
}

func withSig(t *testing.T, files, signedOver []file, key ed25519.PrivateKey, kid, rev string) []file {
	t.Helper()
	sig, err := sign(signedOver, key, kid, rev)
	if err != nil {
		t.Fatal(err)
	}
	return append(append([]file(nil), files...), file{name: SignaturesFile, data: sig})
}

func archive(t *testing.T, files []file) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := writeArchive(&buf, files, time.Time{}); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func replace(files []file, name string, data []byte) []file {
	out := append([]file(nil), files...)
	for i := range out {
		if out[i].name == name {
			out[i].data = data
		}
	}
	return out
}

func without(files []file, name string) []file {
	var out []file
	for _, f := range files {
		if f.name != name {
			out = append(out, f)
		}
	}
	return out
}

// jwsWith builds a .signatures.json holding one JWS with the given header
// and payload, signed by key.
func jwsWith(t *testing.T, hdr jwsHeader, p payload, key ed25519.PrivateKey) []byte {
	t.Helper()
	h, _ := json.Marshal(hdr)
	b, _ := json.Marshal(p)
	in := b64.EncodeToString(h) + "." + b64.EncodeToString(b)
	sig := ed25519.Sign(key, []byte(in))
	out, _ := marshalFile(signaturesFile{Signatures: []string{in + "." + b64.EncodeToString(sig)}})
	return out
}

func hashes(files []file) []FileHash {
	var out []FileHash
	for _, f := range files {
		out = append(out, FileHash{Name: f.name, Hash: sha256Hex(f.data), Algorithm: HashAlgorithm})
	}
	return out
}

func TestVerifyRefuses(t *testing.T) {
	key, other := testKey("a"), testKey("b")
	kid := KeyID(pubOf(key))
	rev := sampleBundle().Manifest.Revision
	good := sampleFiles(t)
	goodData := writeBundle(t, sampleBundle(), key)

	tests := []struct {
		name       string
		data       func(t *testing.T) []byte
		keys       map[string]ed25519.PublicKey
		want       Reason
		wantDetail string // a substring of the error
	}{
		{
			name: "no .signatures.json",
			data: func(t *testing.T) []byte { return archive(t, good) },
			want: Unsigned, wantDetail: "no .signatures.json",
		},
		{
			name: "empty signature list",
			data: func(t *testing.T) []byte {
				return archive(t, append(good, file{name: SignaturesFile, data: []byte(`{"signatures":[]}`)}))
			},
			want: Unsigned, wantDetail: "no signature",
		},
		{
			name: "signed by a key that is not pinned",
			data: func(t *testing.T) []byte { return writeBundle(t, sampleBundle(), other) },
			want: UnknownKey, wantDetail: KeyID(pubOf(other)),
		},
		{
			name: "no pinned keys at all",
			data: func(t *testing.T) []byte { return goodData },
			keys: map[string]ed25519.PublicKey{},
			want: UnknownKey, wantDetail: "no key is pinned",
		},
		{
			name: "signed by another key under the pinned key id",
			data: func(t *testing.T) []byte { return archive(t, withSig(t, good, good, other, kid, rev)) },
			want: BadSignature, wantDetail: kid,
		},
		{
			name: "signature bytes flipped",
			data: func(t *testing.T) []byte {
				s := string(withSig(t, nil, good, key, kid, rev)[0].data)
				i := strings.LastIndex(s, ".") + 3
				c := byte('A')
				if s[i] == 'A' {
					c = 'B'
				}
				s = s[:i] + string(c) + s[i+1:]
				return archive(t, append(good, file{name: SignaturesFile, data: []byte(s)}))
			},
			want: BadSignature, wantDetail: "does not verify",
		},
		{
			name: "payload names another key than the header",
			data: func(t *testing.T) []byte {
				sig := jwsWith(t, jwsHeader{Alg: "EdDSA", Kid: kid}, payload{Files: hashes(good), KeyID: "someone-else", Revision: rev}, key)
				return archive(t, append(good, file{name: SignaturesFile, data: sig}))
			},
			want: BadSignature, wantDetail: "someone-else",
		},
		{
			name: "alg none",
			data: func(t *testing.T) []byte {
				sig := jwsWith(t, jwsHeader{Alg: "none", Kid: kid}, payload{Files: hashes(good), KeyID: kid, Revision: rev}, key)
				return archive(t, append(good, file{name: SignaturesFile, data: sig}))
			},
			want: UnsupportedFormat, wantDetail: `"none"`,
		},
		{
			name: "extra file evil.json not in the signature",
			data: func(t *testing.T) []byte {
				return archive(t, withSig(t, append(good, file{name: "evil.json", data: []byte("{}")}), good, key, kid, rev))
			},
			want: FileAdded, wantDetail: "evil.json",
		},
		{
			name: "servers.json present but left out of the signature",
			data: func(t *testing.T) []byte {
				return archive(t, withSig(t, good, without(good, ServersFile), key, kid, rev))
			},
			want: FileAdded, wantDetail: "servers.json",
		},
		{
			name: "servers.json removed after signing",
			data: func(t *testing.T) []byte {
				return archive(t, withSig(t, without(good, ServersFile), good, key, kid, rev))
			},
			want: FileRemoved, wantDetail: "servers.json",
		},
		{
			name: "policy.json changed after signing",
			data: func(t *testing.T) []byte {
				changed := replace(good, PolicyFile, []byte(`{"rules":[{"id":"x","effect":"allow","tools":["*/*"],"pos":{}}]}`+"\n"))
				return archive(t, withSig(t, changed, good, key, kid, rev))
			},
			want: FileChanged, wantDetail: "policy.json",
		},
		{
			name: "manifest.json changed after signing",
			data: func(t *testing.T) []byte {
				m := bytes.Replace(good[0].data, []byte(`"sequence": 1795340000`), []byte(`"sequence": 1895340000`), 1)
				return archive(t, withSig(t, replace(good, ManifestFile, m), good, key, kid, rev))
			},
			want: FileChanged, wantDetail: "manifest.json",
		},
		{
			name: "format version 2, validly signed",
			data: func(t *testing.T) []byte {
				m := bytes.Replace(good[0].data, []byte(`"format_version": 1`), []byte(`"format_version": 2`), 1)
				v2 := replace(good, ManifestFile, m)
				return archive(t, withSig(t, v2, v2, key, kid, rev))
			},
			want: UnsupportedFormat, wantDetail: "format version 2",
		},
		{
			name: "unknown hash algorithm",
			data: func(t *testing.T) []byte {
				h := hashes(good)
				h[1].Algorithm = "MD5"
				sig := jwsWith(t, jwsHeader{Alg: "EdDSA", Kid: kid}, payload{Files: h, KeyID: kid, Revision: rev}, key)
				return archive(t, append(good, file{name: SignaturesFile, data: sig}))
			},
			want: UnsupportedFormat, wantDetail: "MD5",
		},
		{
			name: "signed revision differs from the manifest",
			data: func(t *testing.T) []byte { return archive(t, withSig(t, good, good, key, kid, "f00d")) },
			want: Malformed, wantDetail: "f00d",
		},
		{
			name: "unknown field in policy.json, validly signed",
			data: func(t *testing.T) []byte {
				p := replace(good, PolicyFile, []byte(`{"rules":[],"fail_open":true}`))
				return archive(t, withSig(t, p, p, key, kid, rev))
			},
			want: Malformed, wantDetail: "fail_open",
		},
		{
			name: "truncated gzip (first half of a good bundle)",
			data: func(t *testing.T) []byte { return goodData[:len(goodData)/2] },
			want: Malformed,
		},
		{
			name: "garbage bytes",
			data: func(t *testing.T) []byte { return []byte("this is not a bundle") },
			want: Malformed, wantDetail: "not a gzip archive",
		},
		{
			name: "empty input",
			data: func(t *testing.T) []byte { return nil },
			want: Malformed,
		},
		{
			name: "trailing bytes after the gzip stream",
			data: func(t *testing.T) []byte { return append(append([]byte(nil), goodData...), "junk"...) },
			want: Malformed, wantDetail: "trailing data",
		},
		{
			name: "a second gzip stream appended",
			data: func(t *testing.T) []byte { return append(append([]byte(nil), goodData...), goodData...) },
			want: Malformed, wantDetail: "trailing data",
		},
		{
			name: "entry ../manifest.json",
			data: func(t *testing.T) []byte {
				return rawTarGz(t, entry{hdr: tar.Header{Name: "../manifest.json"}, data: "{}"})
			},
			want: Malformed, wantDetail: "path traversal",
		},
		{
			name: "entry in a subdirectory",
			data: func(t *testing.T) []byte {
				return rawTarGz(t, entry{hdr: tar.Header{Name: "x/policy.json"}, data: "{}"})
			},
			want: Malformed, wantDetail: "flat file names",
		},
		{
			name: "absolute entry name",
			data: func(t *testing.T) []byte { return rawTarGz(t, entry{hdr: tar.Header{Name: "/etc/passwd"}, data: "x"}) },
			want: Malformed, wantDetail: "/etc/passwd",
		},
		{
			name: "duplicate policy.json",
			data: func(t *testing.T) []byte {
				return rawTarGz(t, entry{hdr: tar.Header{Name: "policy.json"}, data: "{}"}, entry{hdr: tar.Header{Name: "policy.json"}, data: "{}"})
			},
			want: Malformed, wantDetail: "appears twice",
		},
		{
			name: "symlink entry",
			data: func(t *testing.T) []byte {
				return rawTarGz(t, entry{hdr: tar.Header{Name: "policy.json", Typeflag: tar.TypeSymlink, Linkname: "/etc/passwd"}})
			},
			want: Malformed, wantDetail: "not a regular file",
		},
		{
			name: "directory entry",
			data: func(t *testing.T) []byte {
				return rawTarGz(t, entry{hdr: tar.Header{Name: "d", Typeflag: tar.TypeDir, Mode: 0o755}})
			},
			want: Malformed, wantDetail: "not a regular file",
		},
		{
			name: "entry declaring 1 GiB",
			data: func(t *testing.T) []byte {
				var buf bytes.Buffer
				zw, tw := newTarGz(&buf)
				tw.WriteHeader(&tar.Header{Name: "policy.json", Typeflag: tar.TypeReg, Mode: 0o644, Size: 1 << 30})
				zw.Close()
				return buf.Bytes()
			},
			want: Malformed, wantDetail: "limit",
		},
		{
			name: "archive larger than MaxSize",
			data: func(t *testing.T) []byte { return make([]byte, MaxSize+1) },
			want: Malformed, wantDetail: "limit",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			keys := tt.keys
			if keys == nil {
				keys = pinned(key)
			}
			b, err := Verify(tt.data(t), keys)
			var ve *VerifyError
			if !errors.As(err, &ve) {
				t.Fatalf("Verify(%s) = %v, %v; want a *VerifyError %q", tt.name, b, err, tt.want)
			}
			if ve.Reason != tt.want || !strings.Contains(ve.Error(), tt.wantDetail) {
				t.Errorf("Verify(%s) error = %q (reason %q); want reason %q mentioning %q", tt.name, ve, ve.Reason, tt.want, tt.wantDetail)
			}
			if b != nil {
				t.Errorf("Verify(%s) returned a bundle with its error", tt.name)
			}
		})
	}
}

func TestReadRefuses(t *testing.T) {
	good := sampleFiles(t)
	for _, tt := range []struct {
		name string
		data []byte
		want Reason
	}{
		{"garbage", []byte("garbage"), Malformed},
		{"unexpected file", archive(t, append(good, file{name: "evil.json", data: []byte("{}")})), Malformed},
		{"no servers.json", archive(t, without(good, ServersFile)), Malformed},
		{"format version 7", archive(t, replace(good, ManifestFile, []byte(`{"format_version":7}`))), UnsupportedFormat},
		{"manifest without format version", archive(t, replace(good, ManifestFile, []byte(`{"revision":"x"}`))), UnsupportedFormat},
	} {
		_, _, err := Read(bytes.NewReader(tt.data))
		if !errors.Is(err, &VerifyError{Reason: tt.want}) {
			t.Errorf("Read(%s) error = %v, want reason %q", tt.name, err, tt.want)
		}
	}
}

func TestReadUnsigned(t *testing.T) {
	b, sig, err := Read(bytes.NewReader(archive(t, sampleFiles(t))))
	if err != nil || sig != nil || b == nil {
		t.Errorf("Read(unsigned sample) = %v, %v, %v; want the bundle, no signature, no error", b, sig, err)
	}
}

func TestVerifyErrorMessage(t *testing.T) {
	err := error(&VerifyError{Reason: FileChanged, Detail: `file "policy.json" does not match its signed SHA-256`})
	if got, want := err.Error(), `file changed: file "policy.json" does not match its signed SHA-256`; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	if errors.Is(err, &VerifyError{Reason: BadSignature}) {
		t.Errorf("errors.Is(file changed, bad signature) = true")
	}
}

func TestVerifyErrorClipsUntrustedText(t *testing.T) {
	good := sampleFiles(t)
	kid := strings.Repeat("k\n", 5000)
	sig := jwsWith(t, jwsHeader{Alg: "EdDSA", Kid: kid}, payload{Files: hashes(good), KeyID: kid}, testKey("b"))
	_, err := Verify(archive(t, append(good, file{name: SignaturesFile, data: sig})), pinned(testKey("a")))
	if !errors.Is(err, &VerifyError{Reason: UnknownKey}) || len(err.Error()) > 300 || strings.Contains(err.Error(), "\n") {
		t.Errorf("Verify(bundle signed under a 10 KB key id with newlines) error = %.400q, want a short one-line unknown key error", err)
	}
}
