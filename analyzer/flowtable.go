package analyzer

import (
	"encoding/binary"
	"math/bits"
	"math/rand/v2"
)

// flowTable maps flow keys to live flows; every packet looks its flow up.
//
// It is not a Go map because of the cache: a map's slot holds the 38-byte
// key beside the slot's control bytes, so a lookup in a table larger than
// the cache touched the control word, then the slot, then the flow. Here an
// entry is a hash and a pointer, and the key is compared in the flow, which
// the packet updates next anyway.
//
// Open addressing with linear probing; removal shifts the entries after the
// removed one back, so no deleted markers lengthen the probes.
type flowTable struct {
	seed    [5]uint64   // random: a capture cannot be built to collide
	entries []flowEntry // a power of two long, at most 3/4 full
	n       int
}

type flowEntry struct {
	hash uint64
	f    *flow // nil: empty
}

func newFlowTable(size int) *flowTable {
	n := 8
	for n*3/4 < size {
		n *= 2
	}
	t := &flowTable{entries: make([]flowEntry, n)}
	for i := range t.seed {
		t.seed[i] = rand.Uint64()
	}
	return t
}

// hash mixes the key's five words with the seed as wyhash does (the high
// and low halves of 128-bit products): inline, where a generic hash of the
// 38 bytes was a call.
func (t *flowTable) hash(k *flowKey) uint64 {
	le := binary.LittleEndian
	w := uint64(k.ap) | uint64(k.bp)<<16 | uint64(k.proto)<<32 | uint64(k.v)<<40
	return mum(le.Uint64(k.a[:8])^t.seed[0], le.Uint64(k.a[8:])^t.seed[1]) ^
		mum(le.Uint64(k.b[:8])^t.seed[2], le.Uint64(k.b[8:])^t.seed[3]) ^
		mum(w^t.seed[4], t.seed[0]^t.seed[3])
}

func mum(a, b uint64) uint64 {
	hi, lo := bits.Mul64(a, b)
	return hi ^ lo
}

// same reports whether two keys are equal, word by word: a struct compare
// calls memequal for the address arrays.
func (k *flowKey) same(o *flowKey) bool {
	le := binary.LittleEndian
	return le.Uint64(k.a[:8]) == le.Uint64(o.a[:8]) && le.Uint64(k.a[8:]) == le.Uint64(o.a[8:]) &&
		le.Uint64(k.b[:8]) == le.Uint64(o.b[:8]) && le.Uint64(k.b[8:]) == le.Uint64(o.b[8:]) &&
		k.ap == o.ap && k.bp == o.bp && k.proto == o.proto && k.v == o.v
}

// get returns the flow of k, or nil.
func (t *flowTable) get(k *flowKey) *flow {
	h := t.hash(k)
	mask := uint64(len(t.entries) - 1)
	for i := h & mask; ; i = (i + 1) & mask {
		e := &t.entries[i]
		if e.f == nil {
			return nil
		}
		if e.hash == h && e.f.key.same(k) {
			return e.f
		}
	}
}

// add adds f under its key, which must not be in the table.
func (t *flowTable) add(f *flow) {
	if (t.n+1)*4 > len(t.entries)*3 {
		t.grow()
	}
	t.insert(flowEntry{t.hash(&f.key), f})
	t.n++
}

func (t *flowTable) insert(e flowEntry) {
	mask := uint64(len(t.entries) - 1)
	i := e.hash & mask
	for t.entries[i].f != nil {
		i = (i + 1) & mask
	}
	t.entries[i] = e
}

func (t *flowTable) grow() {
	old := t.entries
	t.entries = make([]flowEntry, 2*len(old))
	for _, e := range old {
		if e.f != nil {
			t.insert(e)
		}
	}
}

// remove removes f, which must be in the table under its key.
func (t *flowTable) remove(f *flow) {
	mask := uint64(len(t.entries) - 1)
	i := t.hash(&f.key) & mask
	for t.entries[i].f != f {
		i = (i + 1) & mask
	}
	// Move back each following entry whose home slot is not between the
	// hole and it, so every entry stays reachable from its home slot.
	for j := (i + 1) & mask; t.entries[j].f != nil; j = (j + 1) & mask {
		home := t.entries[j].hash & mask
		if (j-home)&mask >= (j-i)&mask {
			t.entries[i] = t.entries[j]
			i = j
		}
	}
	t.entries[i] = flowEntry{}
	t.n--
}

// flows appends every flow in the table to fs, in no useful order.
func (t *flowTable) flows(fs []*flow) []*flow {
	for _, e := range t.entries {
		if e.f != nil {
			fs = append(fs, e.f)
		}
	}
	return fs
}

// reset empties the table.
func (t *flowTable) reset() {
	clear(t.entries)
	t.n = 0
}
