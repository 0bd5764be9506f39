package schema

import (
	"fmt"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
)

// TestMemoryBounded validates the same file many times, as a long-running
// reconciler would: the heap must not keep growing, because the CUE
// context (which never frees what it holds) is replaced after
// contextBudget values.
func TestMemoryBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("slow")
	}
	data, err := os.ReadFile("../examples/sdk-minimal.yaml")
	if err != nil {
		t.Fatal(err)
	}
	heap := func() uint64 {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapInuse
	}
	// Each run adds keys never seen before (CUE interns every label for
	// the life of its context), as a reconciler sees new commits.
	seq := 0
	run := func(n int) {
		for i := 0; i < n; i++ {
			seq++
			extra := fmt.Sprintf("\ngroups:\n  team_%d_%s: [a@example.com]\n", seq, strings.Repeat("x", 200))
			if _, ds := Parse("armoriq.yaml", append(append([]byte(nil), data...), extra...)); len(ds) > 0 {
				t.Fatal(ds)
			}
		}
	}
	run(3000) // past the first context replacement
	before := heap()
	run(6000)
	after := heap()
	t.Logf("heap after 3,000 validations: %.1f MB; after 6,000 more: %.1f MB", float64(before)/(1<<20), float64(after)/(1<<20))
	if after > before+8<<20 {
		t.Errorf("heap grew from %d to %d bytes over 6,000 validations of the same file", before, after)
	}
}

// TestParseConcurrent runs Parse from several goroutines: the CUE context
// is shared under a mutex, and results must not mix.
func TestParseConcurrent(t *testing.T) {
	files := exampleFiles(t)
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 20; i++ {
				f := files[(g+i)%len(files)]
				if c, ds := LoadFile(f); c == nil || len(ds) > 0 {
					t.Errorf("LoadFile(%s) concurrently: %v", f, ds)
					return
				}
			}
		}()
	}
	wg.Wait()
}

// TestParseLargeParallel checks a file big enough to be validated by
// several CUE contexts at once: errors from every chunk are reported, in
// position order.
func TestParseLargeParallel(t *testing.T) {
	data := largeConfig(50, 1500)
	data = []byte(strings.Replace(string(data), "effect: hold", "effect: wait", 1)) // an early rule
	i := strings.LastIndex(string(data), "effect: deny")
	data = []byte(string(data[:i]) + "effect: nope" + string(data[i+len("effect: deny"):])) // the last deny rule
	_, ds := Parse("large.yaml", data)
	if len(ds) != 2 {
		t.Fatalf("got %d diagnostics, want 2 (one early rule, one late):\n%s", len(ds), ds)
	}
	if !strings.Contains(ds[0].Summary, `got "wait"`) || !strings.Contains(ds[1].Summary, `got "nope"`) || ds[0].Pos.Line >= ds[1].Pos.Line {
		t.Errorf("got\n%s\nwant the \"wait\" rule first, then the \"nope\" rule", ds)
	}
}
