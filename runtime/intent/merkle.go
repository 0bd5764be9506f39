package intent

import (
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// Domain-separation prefixes: a leaf can never be mistaken for an inner node
// (the second-preimage attack on unprefixed Merkle trees).
const (
	leafPrefix = 0x00
	nodePrefix = 0x01
)

// MaxLeaves bounds the leaf_count a proof may claim.
const MaxLeaves = 1 << 20

// maxProofBytes bounds the size of an encoded proof ParseProof reads.
const maxProofBytes = 64 << 10

// ErrBadProof reports a Merkle proof that is malformed or does not lead from
// the leaf to the root.
var ErrBadProof = errors.New("bad merkle proof")

// HashLeaf returns SHA-256(0x00 || data).
func HashLeaf(data []byte) [32]byte {
	h := sha256.New()
	h.Write([]byte{leafPrefix})
	h.Write(data)
	var out [32]byte
	h.Sum(out[:0])
	return out
}

// HashNode returns SHA-256(0x01 || left || right).
func HashNode(left, right [32]byte) [32]byte {
	var buf [1 + 64]byte
	buf[0] = nodePrefix
	copy(buf[1:], left[:])
	copy(buf[33:], right[:])
	return sha256.Sum256(buf[:])
}

// Tree is a binary Merkle tree over leaf hashes. Each level pairs nodes left
// to right; an odd node out at the end of a level is promoted unchanged to the
// next level (never paired with a copy of itself, which would let two
// different leaf lists share a root, as in CVE-2012-2459).
type Tree struct {
	levels [][][32]byte // levels[0] = leaves, last = [root]
}

// NewTree builds the tree over leaves (which it copies). A tree of no leaves
// has the zero root and no proofs.
func NewTree(leaves [][32]byte) *Tree {
	t := &Tree{}
	if len(leaves) == 0 {
		return t
	}
	level := append([][32]byte(nil), leaves...)
	t.levels = append(t.levels, level)
	for len(level) > 1 {
		next := make([][32]byte, 0, (len(level)+1)/2)
		for i := 0; i+1 < len(level); i += 2 {
			next = append(next, HashNode(level[i], level[i+1]))
		}
		if len(level)%2 == 1 {
			next = append(next, level[len(level)-1])
		}
		t.levels = append(t.levels, next)
		level = next
	}
	return t
}

// Len returns the number of leaves.
func (t *Tree) Len() int {
	if len(t.levels) == 0 {
		return 0
	}
	return len(t.levels[0])
}

// Root returns the root hash (the only leaf's hash for one leaf, zero for none).
func (t *Tree) Root() [32]byte {
	if len(t.levels) == 0 {
		return [32]byte{}
	}
	return t.levels[len(t.levels)-1][0]
}

// Sibling is one step of a proof: the hash to combine with, and on which side
// of the running hash it sits.
type Sibling struct {
	Hash     string `json:"hash"`     // lowercase hex SHA-256
	Position string `json:"position"` // "left" or "right"
}

// Proof is the inclusion proof of one leaf, as it appears in step_proofs[i] of
// a token answer and comes back in X-CSRG-Proof:
//
//	{"leaf_index":1,"leaf_count":3,"leaf":"<hex>","siblings":[{"hash":"<hex>","position":"left"}],"root":"<hex>"}
//
// Siblings run from the leaf up; a level where the node was promoted adds none.
// Leaf and Root repeat what the proof leads from and to; a verifier recomputes
// both and only checks that these copies, when present, agree.
type Proof struct {
	LeafIndex int       `json:"leaf_index"`
	LeafCount int       `json:"leaf_count"`
	Leaf      string    `json:"leaf,omitempty"`
	Siblings  []Sibling `json:"siblings"`
	Root      string    `json:"root,omitempty"`
}

// Proof returns the inclusion proof of leaf i, or the zero Proof (which no
// root verifies) when i is out of range.
func (t *Tree) Proof(i int) Proof {
	if i < 0 || i >= t.Len() {
		return Proof{Siblings: []Sibling{}}
	}
	root := t.Root()
	p := Proof{
		LeafIndex: i,
		LeafCount: t.Len(),
		Leaf:      hex.EncodeToString(t.levels[0][i][:]),
		Siblings:  []Sibling{},
		Root:      hex.EncodeToString(root[:]),
	}
	idx := i
	for _, level := range t.levels[:len(t.levels)-1] {
		switch {
		case idx%2 == 1:
			p.Siblings = append(p.Siblings, Sibling{Hash: hex.EncodeToString(level[idx-1][:]), Position: "left"})
		case idx+1 < len(level):
			p.Siblings = append(p.Siblings, Sibling{Hash: hex.EncodeToString(level[idx+1][:]), Position: "right"})
		}
		idx /= 2
	}
	return p
}

// Proofs returns the proof of every leaf, in order.
func (t *Tree) Proofs() []Proof {
	out := make([]Proof, t.Len())
	for i := range out {
		out[i] = t.Proof(i)
	}
	return out
}

// expectedPositions returns the sibling positions the promote rule implies
// for leaf index of count leaves.
func expectedPositions(index, count int) []string {
	var pos []string
	for width := count; width > 1; width = (width + 1) / 2 {
		switch {
		case index%2 == 1:
			pos = append(pos, "left")
		case index+1 < width:
			pos = append(pos, "right")
		}
		index /= 2
	}
	return pos
}

// VerifyProof checks p against this tree: leaf_count must be the tree's
// number of leaves, and p must lead from leaf to the tree's root. Prefer it
// to the package's VerifyProof when the tree is at hand: only with the count
// fixed does leaf_index name exactly one leaf.
func (t *Tree) VerifyProof(leaf [32]byte, p Proof) error {
	if p.LeafCount != t.Len() {
		return fmt.Errorf("%w: proof is for %d leaves, the tree has %d", ErrBadProof, p.LeafCount, t.Len())
	}
	return VerifyProof(t.Root(), leaf, p)
}

// VerifyProof checks that p leads from leaf to root. It checks the shape too:
// leaf_index within leaf_count, exactly the siblings and sides the promote rule
// implies for that index and count, and, when present, the proof's copies of
// the leaf and the root. Errors wrap ErrBadProof.
//
// It cannot know the tree's size: a proof's (leaf_index, leaf_count) is only
// bound to the true pair when leaf_count is checked too. Leaf 2 of 3 and leaf
// 1 of 2 both have one left sibling, so the proof of step 2 of a 3-step plan
// can claim leaf_index 1 with leaf_count 2 and still verify. Use
// Tree.VerifyProof, or check p.LeafCount yourself, before trusting
// p.LeafIndex.
func VerifyProof(root [32]byte, leaf [32]byte, p Proof) error {
	if p.LeafCount < 1 || p.LeafCount > MaxLeaves {
		return fmt.Errorf("%w: leaf_count %d out of range", ErrBadProof, p.LeafCount)
	}
	if p.LeafIndex < 0 || p.LeafIndex >= p.LeafCount {
		return fmt.Errorf("%w: leaf_index %d out of range for %d leaves", ErrBadProof, p.LeafIndex, p.LeafCount)
	}
	if p.Leaf != "" {
		if h, err := decodeHash(p.Leaf); err != nil || h != leaf {
			return fmt.Errorf("%w: leaf does not match the step", ErrBadProof)
		}
	}
	if p.Root != "" {
		if h, err := decodeHash(p.Root); err != nil || h != root {
			return fmt.Errorf("%w: root does not match the plan", ErrBadProof)
		}
	}
	want := expectedPositions(p.LeafIndex, p.LeafCount)
	if len(p.Siblings) != len(want) {
		return fmt.Errorf("%w: %d siblings, want %d for leaf %d of %d", ErrBadProof, len(p.Siblings), len(want), p.LeafIndex, p.LeafCount)
	}
	acc := leaf
	for i, s := range p.Siblings {
		if s.Position != want[i] {
			return fmt.Errorf("%w: siblings[%d] position %q, want %q", ErrBadProof, i, s.Position, want[i])
		}
		h, err := decodeHash(s.Hash)
		if err != nil {
			return fmt.Errorf("%w: siblings[%d]: %v", ErrBadProof, i, err)
		}
		if s.Position == "left" {
			acc = HashNode(h, acc)
		} else {
			acc = HashNode(acc, h)
		}
	}
	if subtle.ConstantTimeCompare(acc[:], root[:]) != 1 {
		return fmt.Errorf("%w: proof does not lead to the root", ErrBadProof)
	}
	return nil
}

// ParseProof decodes a proof as sent in X-CSRG-Proof or body.merkle_proof,
// refusing unknown fields, trailing data and more than 64 KiB.
func ParseProof(data []byte) (Proof, error) {
	var p Proof
	if len(data) > maxProofBytes {
		return p, fmt.Errorf("%w: proof larger than %d bytes", ErrBadProof, maxProofBytes)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		return Proof{}, fmt.Errorf("%w: %v", ErrBadProof, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return Proof{}, fmt.Errorf("%w: trailing data after proof", ErrBadProof)
	}
	return p, nil
}

// decodeHash decodes a 64-digit hex SHA-256.
func decodeHash(s string) ([32]byte, error) {
	var h [32]byte
	if len(s) != 64 {
		return h, fmt.Errorf("hash %q is not 64 hex digits", truncate(s, 80))
	}
	if _, err := hex.Decode(h[:], []byte(s)); err != nil {
		return h, fmt.Errorf("hash is not hex: %v", err)
	}
	return h, nil
}

// RootHex returns the lowercase hex form of a root or leaf hash.
func RootHex(h [32]byte) string { return hex.EncodeToString(h[:]) }

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
