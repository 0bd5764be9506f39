package bundle

import (
	"bytes"
	"testing"
)

func fuzzSeeds(f *testing.F) {
	good := writeBundle(&testing.T{}, sampleBundle(), testKey("a"))
	f.Add(good)
	f.Add(good[:len(good)/2])
	f.Add([]byte{})
	f.Add([]byte("\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff"))
	f.Add(writeBundle(&testing.T{}, &Bundle{}, testKey("a")))
	f.Add(writeBundle(&testing.T{}, providersBundle(), testKey("a")))
}

func FuzzRead(f *testing.F) {
	fuzzSeeds(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		b, _, err := Read(bytes.NewReader(data))
		if err != nil {
			if _, ok := err.(*VerifyError); !ok {
				t.Fatalf("Read error %T %v, want *VerifyError", err, err)
			}
			return
		}
		// Whatever Read accepts must write again.
		var buf bytes.Buffer
		if err := Write(&buf, b, testKey("a"), ""); err != nil {
			t.Fatalf("Write(Read(data)): %v", err)
		}
	})
}

func FuzzVerify(f *testing.F) {
	fuzzSeeds(f)
	keys := pinned(testKey("a"))
	f.Fuzz(func(t *testing.T, data []byte) {
		b, err := Verify(data, keys)
		if err != nil {
			if _, ok := err.(*VerifyError); !ok {
				t.Fatalf("Verify error %T %v, want *VerifyError", err, err)
			}
			return
		}
		if _, _, err := Read(bytes.NewReader(data)); err != nil {
			t.Fatalf("Verify accepted what Read refuses: %v", err)
		}
		if b == nil {
			t.Fatal("Verify returned neither bundle nor error")
		}
	})
}
