package simnet

import (
	"net/netip"
	"testing"
)

func TestNamePool(t *testing.T) {
	pool := netip.MustParsePrefix("198.18.0.0/24")
	p := newNamePool(pool)
	seen := map[netip.Addr]string{}
	for _, n := range []string{"time.apple.com", "albert.apple.com.", "swscan.apple.com", "a", "b", "c"} {
		a := p.addr(n)
		if !pool.Contains(a) || a == pool.Addr() || a == netip.MustParseAddr("198.18.0.255") {
			t.Errorf("%s -> %s: outside the usable pool", n, a)
		}
		if other, dup := seen[a]; dup {
			t.Errorf("%s and %s share %s", n, other, a)
		}
		seen[a] = n
	}
	// Stable: same name, same address, across pools built anew (another run).
	if a, b := p.addr("TIME.apple.com"), newNamePool(pool).addr("time.apple.com."); a != b {
		t.Errorf("not stable: %s vs %s", a, b)
	}
	a := p.addr("swscan.apple.com").As4()
	ptr := netip.AddrFrom4([4]byte{a[3], a[2], a[1], a[0]}).String() + ".in-addr.arpa."
	if name, ok := p.reverse(ptr); !ok || name != "swscan.apple.com." {
		t.Errorf("reverse(%s) = %q, %v", ptr, name, ok)
	}
	if _, ok := p.reverse("1.2.3.4.in-addr.arpa."); ok {
		t.Error("reverse of an unallocated address answered")
	}
	// A full pool still answers (addresses shared), and never loops forever.
	small := newNamePool(netip.MustParsePrefix("198.18.0.0/30"))
	for _, n := range []string{"x", "y", "z", "w"} {
		if !netip.MustParsePrefix("198.18.0.0/30").Contains(small.addr(n)) {
			t.Errorf("full pool gave an address outside it")
		}
	}
}
