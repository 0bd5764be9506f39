package bundle

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/ed25519"
	"crypto/sha256"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/rogpeppe/go-internal/txtar"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// testKey returns a fixed key so golden files are stable.
func testKey(name string) ed25519.PrivateKey {
	seed := sha256.Sum256([]byte("armoriq bundle test key " + name))
	return ed25519.NewKeyFromSeed(seed[:])
}

func pubOf(k ed25519.PrivateKey) ed25519.PublicKey { return k.Public().(ed25519.PublicKey) }

func pinned(keys ...ed25519.PrivateKey) map[string]ed25519.PublicKey {
	m := map[string]ed25519.PublicKey{}
	for _, k := range keys {
		m[KeyID(pubOf(k))] = pubOf(k)
	}
	return m
}

func sampleBundle() *Bundle {
	return &Bundle{
		Manifest: Manifest{
			Revision:  "0123456789abcdef0123456789abcdef01234567",
			CreatedAt: time.Date(2026, 11, 22, 10, 30, 0, 0, time.FixedZone("CET", 3600)),
			Compiler:  "armoriq test",
			Sources:   []Source{{Path: "armoriq.yaml", SHA256: "5e0d"}},
			Sequence:  1795340000,
		},
		Policy: Policy{
			Groups: []Group{{Name: "eng", Members: []string{"*@example.com"}}},
			Rules: []Rule{
				{ID: "policy.allow[0]", Effect: Allow, Tools: []string{"github/*"}, Pos: Pos{File: "armoriq.yaml", Line: 12, Col: 7}},
				{ID: "no-prod-writes", Effect: Deny, Tools: []string{"db/write_*"}, Groups: []string{"eng"}, When: `args.env == "prod"`, Reason: "no writes to prod", Pos: Pos{File: "armoriq.yaml", Line: 20, Col: 7}, WhenPos: Pos{File: "armoriq.yaml", Line: 24, Col: 13}},
			},
			DefaultTTLSeconds: 300,
		},
		Servers: []Server{
			{ID: "github", Transport: "http", URL: "https://api.example.com/mcp", ToolPrefix: "conditional", Auth: &Auth{Type: "bearer", ValueRef: "$GITHUB_TOKEN"}},
			{ID: "db", Transport: "stdio", Command: "db-mcp", Args: []string{"--ro"}, Env: map[string]string{"Z": "1", "A": "$DB_URL"}, ToolPrefix: "always"},
		},
	}
}

func writeBundle(t *testing.T, b *Bundle, key ed25519.PrivateKey) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := Write(&buf, b, key, ""); err != nil {
		t.Fatalf("Write: %v", err)
	}
	return buf.Bytes()
}

func TestWriteDeterministic(t *testing.T) {
	key := testKey("a")
	first := writeBundle(t, sampleBundle(), key)
	second := writeBundle(t, sampleBundle(), key)
	if !bytes.Equal(first, second) {
		t.Fatalf("writing the sample bundle twice gave different bytes (%d and %d bytes)", len(first), len(second))
	}
	// The same instant in another zone is the same bundle.
	b := sampleBundle()
	b.Manifest.CreatedAt = b.Manifest.CreatedAt.UTC()
	if third := writeBundle(t, b, key); !bytes.Equal(first, third) {
		t.Errorf("CreatedAt in UTC instead of CET changed the bundle bytes")
	}
}

// TestGolden pins the exact bytes of the sample bundle, and shows its files
// in a readable txtar next to it, so any change to the format shows in review.
func TestGolden(t *testing.T) {
	got := writeBundle(t, sampleBundle(), testKey("a"))
	files, err := readArchive(got)
	if err != nil {
		t.Fatal(err)
	}
	ar := &txtar.Archive{Comment: []byte("The files of testdata/sample.tar.gz, written by TestGolden.\n")}
	for _, f := range files {
		ar.Files = append(ar.Files, txtar.File{Name: f.name, Data: f.data})
	}
	gotText := txtar.Format(ar)
	binPath, textPath := filepath.Join("testdata", "sample.tar.gz"), filepath.Join("testdata", "sample.txtar")
	if *update {
		if err := os.WriteFile(binPath, got, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(textPath, gotText, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	wantText, err := os.ReadFile(textPath)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if diff := cmp.Diff(string(wantText), string(gotText)); diff != "" {
		t.Errorf("bundle files differ from %s (-want +got):\n%s", textPath, diff)
	}
	want, err := os.ReadFile(binPath)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("bundle bytes differ from %s: got %d bytes, want %d", binPath, len(got), len(want))
	}
}

func TestRoundTrip(t *testing.T) {
	key := testKey("a")
	data := writeBundle(t, sampleBundle(), key)
	want := sampleBundle()
	want.Manifest.FormatVersion = FormatVersion
	want.Manifest.CreatedAt = want.Manifest.CreatedAt.UTC()

	got, err := Verify(data, pinned(testKey("other"), key))
	if err != nil {
		t.Fatalf("Verify(sample bundle, its own key): %v", err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Verify(Write(sample)) differs from sample (-want +got):\n%s", diff)
	}

	_, vsig, err := VerifyWithSignature(data, pinned(testKey("other"), key))
	if err != nil || vsig.KeyID != KeyID(pubOf(key)) {
		t.Errorf("VerifyWithSignature(sample bundle) signature %+v, %v; want key %s", vsig, err, KeyID(pubOf(key)))
	}

	got, sig, err := Read(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("Read(sample bundle): %v", err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Read(Write(sample)) differs from sample (-want +got):\n%s", diff)
	}
	if sig == nil || sig.KeyID != KeyID(pubOf(key)) || sig.Algorithm != "EdDSA" || sig.Revision != want.Manifest.Revision || len(sig.Files) != 3 {
		t.Errorf("Read(sample bundle) signature = %+v, want EdDSA by %s over 3 files", sig, KeyID(pubOf(key)))
	}
}

func TestWriteEmptyBundle(t *testing.T) {
	key := testKey("a")
	data := writeBundle(t, &Bundle{}, key)
	b, err := Verify(data, pinned(key))
	if err != nil {
		t.Fatalf("Verify(empty bundle): %v", err)
	}
	if b.Policy.Rules == nil || b.Servers == nil || b.Manifest.Sources == nil {
		t.Errorf("empty bundle decoded with nil lists: %+v", b)
	}
}

func TestWriteErrors(t *testing.T) {
	var buf bytes.Buffer
	b := sampleBundle()
	b.Manifest.FormatVersion = 2
	if err := Write(&buf, b, testKey("a"), ""); err == nil {
		t.Errorf("Write(format version 2) succeeded, want an error")
	}
	if err := Write(&buf, sampleBundle(), nil, ""); err == nil {
		t.Errorf("Write(nil key) succeeded, want an error")
	}
	if err := Write(&buf, nil, testKey("a"), ""); err == nil {
		t.Errorf("Write(nil bundle) succeeded, want an error")
	}
}

func TestKeyIDGiven(t *testing.T) {
	key := testKey("a")
	var buf bytes.Buffer
	if err := Write(&buf, sampleBundle(), key, "prod-2026"); err != nil {
		t.Fatal(err)
	}
	if _, err := Verify(buf.Bytes(), map[string]ed25519.PublicKey{"prod-2026": pubOf(key)}); err != nil {
		t.Errorf("Verify(bundle signed as prod-2026, pinned as prod-2026): %v", err)
	}
	_, err := Verify(buf.Bytes(), pinned(key))
	if !errors.Is(err, &VerifyError{Reason: UnknownKey}) {
		t.Errorf("Verify(bundle signed as prod-2026, pinned under its fingerprint) = %v, want unknown key", err)
	}
}

// entry is a raw tar entry for building hostile archives.
type entry struct {
	hdr  tar.Header
	data string
}

func rawTarGz(t *testing.T, entries ...entry) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	for _, e := range entries {
		h := e.hdr
		if h.Typeflag == 0 {
			h.Typeflag = tar.TypeReg
		}
		if h.Typeflag == tar.TypeReg {
			h.Size = int64(len(e.data))
		}
		if h.Mode == 0 {
			h.Mode = 0o644
		}
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(e.data)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func newTarGz(buf *bytes.Buffer) (*gzip.Writer, *tar.Writer) {
	zw := gzip.NewWriter(buf)
	return zw, tar.NewWriter(zw)
}

// TestSequence: the sequence is signed into the manifest and read back; the
// same bundle with the same sequence gives the same bytes, another sequence
// other bytes; a negative one is neither written nor read.
func TestSequence(t *testing.T) {
	key := testKey("a")
	at := func(seq int64) []byte {
		b := sampleBundle()
		b.Manifest.CreatedAt, b.Manifest.Sequence = time.Time{}, seq // a content-hash revision
		return writeBundle(t, b, key)
	}
	tests := []struct {
		name string
		seq  int64
	}{
		{"unsequenced", 0},
		{"modification time", 1790000000},
		{"user given", 42},
		{"largest", 1<<63 - 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data := at(tt.seq)
			if again := at(tt.seq); !bytes.Equal(data, again) {
				t.Errorf("sequence %d: two writes gave different bytes", tt.seq)
			}
			if other := at(tt.seq ^ 1); bytes.Equal(data, other) {
				t.Errorf("sequence %d and %d gave the same bytes", tt.seq, tt.seq^1)
			}
			b, err := Verify(data, pinned(key))
			if err != nil {
				t.Fatal(err)
			}
			if b.Manifest.Sequence != tt.seq {
				t.Errorf("read back sequence %d, want %d", b.Manifest.Sequence, tt.seq)
			}
		})
	}

	b := sampleBundle()
	b.Manifest.Sequence = -1
	var buf bytes.Buffer
	if err := Write(&buf, b, key, ""); err == nil || !strings.Contains(err.Error(), "sequence -1 is negative") {
		t.Errorf("Write with sequence -1: %v, want an error", err)
	}
	// A signed manifest with a negative sequence (not from Write) is malformed.
	files := sampleFiles(t)
	m := sampleBundle().Manifest
	m.FormatVersion, m.Sequence = FormatVersion, -5
	md, _ := marshalFile(m)
	files = replace(files, ManifestFile, md)
	data := archive(t, withSig(t, files, files, key, KeyID(pubOf(key)), m.Revision))
	if _, err := Verify(data, pinned(key)); !errors.Is(err, &VerifyError{Reason: Malformed}) || !strings.Contains(err.Error(), "sequence -5 is negative") {
		t.Errorf("Verify of a signed manifest with sequence -5: %v, want a malformed error", err)
	}
}
