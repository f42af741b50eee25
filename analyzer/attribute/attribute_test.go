package attribute

import (
	"net/netip"
	"testing"
)

func TestName(t *testing.T) {
	s := NewStore()
	a := netip.MustParseAddr("192.0.2.1")
	s.Add(a, 100, "Old.Example.")
	s.Add(a, 200, "new.example")
	s.Add(netip.MustParseAddr("::ffff:192.0.2.9"), 100, "mapped.example")
	s.Sort()
	cases := []struct {
		sni, host string
		addr      string
		ts        int64
		name, src string
	}{
		{"sni.example", "host.example", "192.0.2.1", 300, "sni.example", SourceSNI},
		{"", "Host.Example", "192.0.2.1", 300, "host.example", SourceHTTPHost},
		{"192.0.2.1", "10.0.0.1", "192.0.2.1", 150, "old.example", SourceDNS}, // IP literals are not names
		{"", "", "192.0.2.1", 250, "new.example", SourceDNS},
		{"", "", "192.0.2.1", 200, "new.example", SourceDNS},
		{"", "", "192.0.2.1", 50, "192.0.2.1", SourceIP}, // answers after the connection do not count
		{"", "", "192.0.2.9", 150, "mapped.example", SourceDNS},
		{"", "", "2001:db8::1", 150, "2001:db8::1", SourceIP},
	}
	for _, c := range cases {
		name, src := s.Name(c.sni, c.host, netip.MustParseAddr(c.addr), c.ts)
		if name != c.name || src != c.src {
			t.Errorf("Name(%q, %q, %s, %d) = %s (%s), want %s (%s)", c.sni, c.host, c.addr, c.ts, name, src, c.name, c.src)
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
