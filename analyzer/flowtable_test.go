package analyzer

import (
	"math/rand/v2"
	"testing"
)

// TestFlowTable checks the table against a Go map through random adds,
// lookups and removals, in a table kept small so entries cluster and
// removals shift long runs back.
func TestFlowTable(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	tab := newFlowTable(0)
	want := map[flowKey]*flow{}
	key := func() flowKey {
		// Few distinct keys, so adds and removals hit the same ones.
		var k flowKey
		k.a[15] = byte(r.IntN(40))
		k.ap = uint16(r.IntN(40))
		k.proto = 17
		return k
	}
	for i := range 200000 {
		k := key()
		got := tab.get(&k)
		if got != want[k] {
			t.Fatalf("op %d: get(%v) = %p, want %p", i, k, got, want[k])
		}
		switch {
		case got == nil:
			f := &flow{key: k}
			tab.add(f)
			want[k] = f
		case r.IntN(3) > 0:
			tab.remove(got)
			delete(want, k)
		}
		if tab.n != len(want) {
			t.Fatalf("op %d: %d flows, want %d", i, tab.n, len(want))
		}
		if i%1000 == 0 {
			all := tab.flows(nil)
			if len(all) != len(want) {
				t.Fatalf("op %d: flows() has %d, want %d", i, len(all), len(want))
			}
			for _, f := range all {
				if want[f.key] != f || tab.get(&f.key) != f {
					t.Fatalf("op %d: flows() holds %v, which the table does not find", i, f.key)
				}
			}
		}
	}
	if len(tab.entries) > 4096 {
		t.Errorf("table grew to %d entries for at most 1600 flows", len(tab.entries))
	}
	tab.reset()
	for k := range want {
		if tab.get(&k) != nil {
			t.Fatalf("after reset get(%v) found a flow", k)
		}
	}
}

// TestFlowKeySame: same agrees with ==, whichever field differs.
func TestFlowKeySame(t *testing.T) {
	base := flowKey{ap: 1, bp: 2, proto: 6, v: 4}
	for i := range 16 {
		base.a[i], base.b[i] = byte(i), byte(100+i)
	}
	variants := []func(*flowKey){
		func(k *flowKey) { k.ap++ }, func(k *flowKey) { k.bp++ },
		func(k *flowKey) { k.proto++ }, func(k *flowKey) { k.v++ },
	}
	for i := range 16 {
		variants = append(variants, func(k *flowKey) { k.a[i]++ }, func(k *flowKey) { k.b[i]++ })
	}
	if k := base; !k.same(&base) {
		t.Fatal("a key differs from itself")
	}
	for n, change := range variants {
		k := base
		change(&k)
		if k.same(&base) || base.same(&k) {
			t.Errorf("variant %d: %+v is the same as %+v", n, k, base)
		}
	}
}
