package attribute

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"strings"
	"testing"
)

func TestName(t *testing.T) {
	s := NewStore()
	a := netip.MustParseAddr("192.0.2.1")
	s.Add(a, 100, "Old.Example.")
	s.Add(a, 200, "new.example")
	s.Add(netip.MustParseAddr("::ffff:192.0.2.9"), 100, "mapped.example")
	// The lab resolver answered for itself: infrastructure keeps its address.
	res := netip.MustParseAddr("10.0.0.53")
	s.Add(res, 100, "q4.host34.example.org")
	s.AddResolver(netip.MustParseAddr("::ffff:10.0.0.53"))
	// A DHCP/DNS server that is not a resolver but has a name.
	s.Add(netip.MustParseAddr("10.0.0.67"), 100, "dhcp.example")
	cases := []struct {
		sni, host string
		addr      string
		ts        int64
		service   string
		name, src string
	}{
		{"sni.example", "host.example", "192.0.2.1", 300, "", "sni.example", SourceSNI},
		{"", "Host.Example", "192.0.2.1", 300, "", "host.example", SourceHTTPHost},
		{"192.0.2.1", "10.0.0.1", "192.0.2.1", 150, "", "old.example", SourceDNS}, // IP literals are not names
		{"", "", "192.0.2.1", 250, "", "new.example", SourceDNS},
		{"", "", "192.0.2.1", 200, "", "new.example", SourceDNS},
		{"", "", "192.0.2.1", 50, "", "192.0.2.1", SourceIP}, // answers after the connection do not count
		{"", "", "192.0.2.9", 150, "", "mapped.example", SourceDNS},
		{"", "", "2001:db8::1", 150, "", "2001:db8::1", SourceIP},
		{"", "", "10.0.0.53", 150, "dns", "10.0.0.53", SourceIP},
		{"", "", "10.0.0.53", 150, "ntp", "10.0.0.53", SourceIP}, // any service to a resolver
		{"", "", "10.0.0.53", 150, "", "10.0.0.53", SourceIP},
		{"", "dns.lab", "10.0.0.53", 150, "http", "dns.lab", SourceHTTPHost},     // Host still wins
		{"resolver.lab", "", "10.0.0.53", 150, "dns", "resolver.lab", SourceSNI}, // DoT/DoQ SNI still wins
		{"", "", "10.0.0.67", 150, "dhcp", "10.0.0.67", SourceIP},
		{"", "", "10.0.0.67", 150, "dns", "10.0.0.67", SourceIP},
		{"", "", "10.0.0.67", 150, "ntp", "dhcp.example", SourceDNS}, // not a resolver: DNS answers count
	}
	for _, c := range cases {
		name, src := s.Name(c.sni, c.host, netip.MustParseAddr(c.addr), c.ts, c.service)
		if name != c.name || src != c.src {
			t.Errorf("Name(%q, %q, %s, %d, %q) = %s (%s), want %s (%s)", c.sni, c.host, c.addr, c.ts, c.service, name, src, c.name, c.src)
		}
	}
}

func TestIsFirstParty(t *testing.T) {
	list := []string{"apple.com", "icloud.com."}
	for name, want := range map[string]bool{
		"apple.com": true, "gs.apple.com": true, "x.y.icloud.com": true,
		"notapple.com": false, "apple.com.evil.net": false, "": false, "1.2.3.4": false,
	} {
		if got := IsFirstParty(name, list); got != want {
			t.Errorf("IsFirstParty(%q) = %v, want %v", name, got, want)
		}
	}
}

// TestLookupOrder checks Lookup against a linear scan over answers added in
// random time order, many sharing one address and some sharing a time (the
// later added wins).
func TestLookupOrder(t *testing.T) {
	type ans struct {
		ts   int64
		name string
	}
	rng := rand.New(rand.NewPCG(1, 2))
	s := NewStore()
	a := netip.MustParseAddr("198.51.100.7")
	var all []ans
	for i := 0; i < 2000; i++ {
		x := ans{int64(rng.IntN(500)), fmt.Sprintf("n%d.example", i)}
		all = append(all, x)
		s.Add(a, x.ts, x.name)
	}
	for ts := int64(-1); ts <= 501; ts++ {
		want, wantOK := "", false
		var best int64 = -1
		for _, x := range all { // later additions win ties
			if x.ts <= ts && x.ts >= best {
				best, want, wantOK = x.ts, x.name, true
			}
		}
		got, ok := s.Lookup(a, ts)
		if got != want || ok != wantOK {
			t.Fatalf("Lookup(%d) = %q %v, want %q %v", ts, got, ok, want, wantOK)
		}
	}
}

// TestPrune: Prune (forgetting answers before a time) leaves every lookup at
// or after the pruning time as a scan of all answers gives it, with answers
// out of time order and names repeating.
func TestPrune(t *testing.T) {
	type ans struct {
		ts   int64
		name string
	}
	rng := rand.New(rand.NewPCG(3, 4))
	s := NewStore()
	a := netip.MustParseAddr("198.51.100.7")
	var all []ans
	for i := 0; i < 3000; i++ {
		ts := int64(i) + int64(rng.IntN(40)) - 20 // mostly in order, some jitter back
		x := ans{ts, fmt.Sprintf("n%d.example", rng.IntN(3))}
		all = append(all, x)
		s.Add(a, x.ts, x.name)
	}
	want := func(ts int64) (string, bool) {
		name, ok, best := "", false, int64(-1<<62)
		for _, x := range all { // later additions win ties
			if x.ts <= ts && x.ts >= best {
				best, name, ok = x.ts, x.name, true
			}
		}
		return name, ok
	}
	check := func(from int64) {
		t.Helper()
		for ts := from; ts <= 3030; ts++ {
			w, wok := want(ts)
			if got, ok := s.Lookup(a, ts); got != w || ok != wok {
				t.Fatalf("Lookup(%d) = %q %v, want %q %v", ts, got, ok, w, wok)
			}
		}
	}
	check(-30)
	for _, h := range []int64{100, 1500, 2990} {
		s.Prune(h)
		check(h)
	}
	if n := len(*s.m[a.Unmap()]); n > 100 {
		t.Errorf("%d answers kept after Prune(2990)", n)
	}
}

// BenchmarkLookupManyNames: thousands of names resolving to one address (a
// lab resolver answering every name with the same address) used to make each
// Lookup a linear scan.
func BenchmarkLookupManyNames(b *testing.B) {
	s := NewStore()
	a := netip.MustParseAddr("198.51.100.7")
	const n = 50000
	for i := 0; i < n; i++ {
		s.Add(a, int64(i)*1000, fmt.Sprintf("n%d.example", i))
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, ok := s.Lookup(a, int64(i%n)*1000+1); !ok {
			b.Fatal("no name")
		}
	}
}

func TestIsLocal(t *testing.T) {
	for name, want := range map[string]bool{
		"10.77.1.1": true, "192.168.1.1": true, "255.255.255.255": true, "ff02::16": true, "fe80::1": true,
		"224.0.0.251": true, "127.0.0.1": true, "0.0.0.0": true, "fd00::1": true,
		"93.184.216.34": false, "198.18.3.7": false, "2001:db8::1": false, "example.com": false, "10.example.com": false,
	} {
		if got := IsLocal(name); got != want {
			t.Errorf("IsLocal(%q) = %v, want %v", name, got, want)
		}
	}
}

// FuzzNormalize checks the shortcuts of normalize and isIP against their
// plain definitions.
func FuzzNormalize(f *testing.F) {
	for _, s := range []string{"", "a.example", "A.Example.", " x ", "1.2.3.4", "[2001:db8::1]", "fe80::1%eth0", "10.example.com", "\u00a0a\u0085", "1.2.3.4%x", "é."} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if got, want := normalize(s), strings.TrimSuffix(strings.ToLower(strings.TrimSpace(s)), "."); got != want {
			t.Errorf("normalize(%q) = %q, want %q", s, got, want)
		}
		_, err := netip.ParseAddr(strings.TrimSuffix(strings.TrimPrefix(s, "["), "]"))
		if got, want := isIP(s), err == nil; got != want {
			t.Errorf("isIP(%q) = %v, want %v", s, got, want)
		}
	})
}
