package intent

import (
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
)

func leavesN(n int) [][32]byte {
	out := make([][32]byte, n)
	for i := range out {
		out[i] = HashLeaf([]byte(fmt.Sprintf("leaf %d", i)))
	}
	return out
}

// refRoot is an independent, recursive statement of the tree rule: split the
// leaves level by level, pair left to right, promote the odd one out.
func refRoot(level [][32]byte) [32]byte {
	if len(level) == 1 {
		return level[0]
	}
	var next [][32]byte
	for i := 0; i < len(level); i += 2 {
		if i+1 == len(level) {
			next = append(next, level[i])
			continue
		}
		buf := append([]byte{1}, level[i][:]...)
		buf = append(buf, level[i+1][:]...)
		next = append(next, sha256.Sum256(buf))
	}
	return refRoot(next)
}

func TestHashDomainSeparation(t *testing.T) {
	data := []byte("x")
	if got, want := HashLeaf(data), sha256.Sum256(append([]byte{0}, data...)); got != want {
		t.Errorf("HashLeaf = %x, want sha256(0x00||x) %x", got, want)
	}
	var l, r [32]byte
	l[0], r[0] = 1, 2
	want := sha256.Sum256(append(append([]byte{1}, l[:]...), r[:]...))
	if got := HashNode(l, r); got != want {
		t.Errorf("HashNode = %x, want %x", got, want)
	}
}

func TestProofsEveryIndex(t *testing.T) {
	for n := 1; n <= 17; n++ {
		leaves := leavesN(n)
		tree := NewTree(leaves)
		root := tree.Root()
		if want := refRoot(leaves); root != want {
			t.Fatalf("n=%d: root %x, want %x", n, root, want)
		}
		for i := 0; i < n; i++ {
			p := tree.Proof(i)
			if err := VerifyProof(root, leaves[i], p); err != nil {
				t.Fatalf("n=%d i=%d: VerifyProof = %v", n, i, err)
			}
			// Through the wire form.
			data, _ := json.Marshal(p)
			back, err := ParseProof(data)
			if err != nil {
				t.Fatalf("n=%d i=%d: ParseProof(%s) = %v", n, i, data, err)
			}
			if err := VerifyProof(root, leaves[i], back); err != nil {
				t.Fatalf("n=%d i=%d: VerifyProof after JSON = %v", n, i, err)
			}
			// Another leaf does not verify with this proof.
			other := leaves[(i+1)%n]
			if n > 1 {
				if err := VerifyProof(root, other, p); !errors.Is(err, ErrBadProof) {
					t.Fatalf("n=%d i=%d: proof accepted leaf %d: %v", n, i, (i+1)%n, err)
				}
			}
			tamperProof(t, n, i, root, leaves[i], p)
		}
	}
}

func tamperProof(t *testing.T, n, i int, root, leaf [32]byte, p Proof) {
	t.Helper()
	clone := func() Proof {
		q := p
		q.Siblings = append([]Sibling(nil), p.Siblings...)
		return q
	}
	var cases []struct {
		name string
		p    Proof
	}
	add := func(name string, q Proof) {
		cases = append(cases, struct {
			name string
			p    Proof
		}{name, q})
	}
	for k := range p.Siblings {
		q := clone()
		h := []byte(q.Siblings[k].Hash)
		if h[0] == '0' {
			h[0] = '1'
		} else {
			h[0] = '0'
		}
		q.Siblings[k].Hash = string(h)
		add(fmt.Sprintf("sibling %d hash", k), q)
		q = clone()
		if q.Siblings[k].Position == "left" {
			q.Siblings[k].Position = "right"
		} else {
			q.Siblings[k].Position = "left"
		}
		add(fmt.Sprintf("sibling %d side", k), q)
	}
	if len(p.Siblings) > 0 {
		q := clone()
		q.Siblings = q.Siblings[:len(q.Siblings)-1]
		add("sibling dropped", q)
	}
	q := clone()
	q.Siblings = append(q.Siblings, Sibling{Hash: q.Leaf, Position: "right"})
	add("sibling added", q)
	q = clone()
	q.LeafIndex = (i + 1) % (n + 1)
	add("index changed", q)
	q = clone()
	q.LeafCount = n + 1
	add("count changed", q)
	q = clone()
	q.LeafIndex = -1
	add("negative index", q)
	q = clone()
	q.LeafCount = 0
	add("zero count", q)
	q = clone()
	q.Root = RootHex(HashLeaf(nil))
	add("root copy changed", q)
	q = clone()
	q.Leaf = RootHex(HashLeaf(nil))
	add("leaf copy changed", q)
	for _, c := range cases {
		if err := VerifyProof(root, leaf, c.p); err == nil {
			// Changing index or count can keep the same path only if it
			// implies the same positions; for the promote rule it still
			// has to reach the root, which it does: that is no forgery,
			// as long as the leaf and the root are the right ones.
			if c.name == "index changed" || c.name == "count changed" {
				if expectedEqual(p.LeafIndex, p.LeafCount, c.p.LeafIndex, c.p.LeafCount) {
					continue
				}
			}
			t.Errorf("n=%d i=%d: %s: VerifyProof accepted it", n, i, c.name)
		} else if !errors.Is(err, ErrBadProof) {
			t.Errorf("n=%d i=%d: %s: error %v does not match ErrBadProof", n, i, c.name, err)
		}
	}
}

func expectedEqual(i1, n1, i2, n2 int) bool {
	if i2 < 0 || i2 >= n2 {
		return false
	}
	a, b := expectedPositions(i1, n1), expectedPositions(i2, n2)
	if len(a) != len(b) {
		return false
	}
	for k := range a {
		if a[k] != b[k] {
			return false
		}
	}
	return true
}

// With duplication (Bitcoin's rule) [a b c] and [a b c c] share a root; with
// promotion they do not.
func TestOddLeafPromotedNotDuplicated(t *testing.T) {
	l := leavesN(3)
	three := NewTree(l).Root()
	four := NewTree(append(l, l[2])).Root()
	if three == four {
		t.Fatal("[a b c] and [a b c c] have the same root")
	}
	if want := HashNode(HashNode(l[0], l[1]), l[2]); three != want {
		t.Errorf("root of 3 = %x, want H(H(a,b), c) %x", three, want)
	}
	if p := NewTree(l).Proof(2); len(p.Siblings) != 1 || p.Siblings[0].Position != "left" {
		t.Errorf("proof of the promoted leaf = %+v, want one left sibling", p.Siblings)
	}
}

func TestTreeEdges(t *testing.T) {
	empty := NewTree(nil)
	if empty.Root() != ([32]byte{}) || empty.Len() != 0 {
		t.Errorf("empty tree root %x len %d", empty.Root(), empty.Len())
	}
	if err := VerifyProof(empty.Root(), [32]byte{}, empty.Proof(0)); err == nil {
		t.Error("proof of an empty tree verified")
	}
	one := leavesN(1)
	tr := NewTree(one)
	if tr.Root() != one[0] {
		t.Errorf("root of one leaf = %x, want the leaf %x", tr.Root(), one[0])
	}
	if p := tr.Proof(5); p.LeafCount != 0 {
		t.Errorf("out-of-range proof = %+v, want zero", p)
	}
	data, _ := json.Marshal(tr.Proof(0))
	if want := `"siblings":[]`; !contains(string(data), want) {
		t.Errorf("proof of one leaf %s lacks %s", data, want)
	}
	for _, bad := range []string{`{"leaf_index":0,"leaf_count":1,"siblings":[],"extra":1}`, `{"leaf_index":0} {}`, `[1]`, `{"leaf_index":"0"}`} {
		if _, err := ParseProof([]byte(bad)); !errors.Is(err, ErrBadProof) {
			t.Errorf("ParseProof(%s) = %v, want ErrBadProof", bad, err)
		}
	}
}

func contains(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return true
		}
	}
	return false
}

// The aliasing Tree.VerifyProof closes: leaf 2 of 3 has the path of leaf 1 of 2.
func TestTreeVerifyProofBindsIndex(t *testing.T) {
	leaves := leavesN(3)
	tree := NewTree(leaves)
	p := tree.Proof(2)
	alias := p
	alias.LeafIndex, alias.LeafCount = 1, 2
	if err := VerifyProof(tree.Root(), leaves[2], alias); err != nil {
		t.Fatalf("the alias does not verify with VerifyProof (%v): the test premise is wrong", err)
	}
	if err := tree.VerifyProof(leaves[2], alias); !errors.Is(err, ErrBadProof) {
		t.Errorf("Tree.VerifyProof(alias) = %v, want ErrBadProof", err)
	}
	for i, l := range leaves {
		if err := tree.VerifyProof(l, tree.Proof(i)); err != nil {
			t.Errorf("Tree.VerifyProof(%d) = %v", i, err)
		}
	}
}
