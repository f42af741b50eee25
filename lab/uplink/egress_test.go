package uplink

import (
	"errors"
	"net/netip"
	"strings"
	"syscall"
	"testing"
)

func TestFindEgress(t *testing.T) {
	up := uint32(syscall.IFF_UP | iffLowerUp)
	ls := []link{
		{Index: 1, Name: "lo", Flags: up},
		{Index: 2, Name: "eth0", Flags: up},
		{Index: 3, Name: "wlan0", Flags: up},
		{Index: 4, Name: "eth1", Flags: syscall.IFF_UP}, // no carrier
		{Index: 5, Name: "eth2"},                        // down
		{Index: 6, Name: "fbu0123abcdh", Flags: up, Kind: "veth"},
		{Index: 7, Name: "tun0", Flags: up}, // no address
	}
	as := []addr{
		{Index: 2, Prefix: netip.MustParsePrefix("192.168.1.20/24")},
		{Index: 3, Prefix: netip.MustParsePrefix("10.0.0.5/24"), Scope: 253}, // link scope: not to NAT to
		{Index: 3, Prefix: netip.MustParsePrefix("203.0.113.7/24")},
	}
	gw := netip.MustParseAddr("192.168.1.1")
	def := route{Dst: netip.MustParsePrefix("0.0.0.0/0"), Gateway: gw, OIF: 2, Priority: 100}
	wifi := route{Dst: netip.MustParsePrefix("0.0.0.0/0"), Gateway: netip.MustParseAddr("203.0.113.1"), OIF: 3, Priority: 600, PrefSrc: netip.MustParseAddr("203.0.113.7")}
	for _, tc := range []struct {
		name   string
		iface  string
		rs     []route
		want   Egress
		errHas string
		down   bool
	}{
		{name: "default route", rs: []route{wifi, def}, want: Egress{Interface: "eth0", Gateway: gw, Addr: netip.MustParseAddr("192.168.1.20")}},
		{name: "named interface, its own default route", iface: "wlan0", rs: []route{def, wifi},
			want: Egress{Interface: "wlan0", Gateway: netip.MustParseAddr("203.0.113.1"), Addr: netip.MustParseAddr("203.0.113.7")}},
		{name: "no default route", errHas: "has no IPv4 default route", down: true},
		{name: "named but missing", iface: "eth9", rs: []route{def}, errHas: `"eth9" not found`, down: true},
		{name: "no carrier", iface: "eth1", errHas: "eth1 has no carrier", down: true},
		{name: "down", iface: "eth2", errHas: "eth2 is down", down: true},
		{name: "no address", iface: "tun0", errHas: "no IPv4 address", down: true},
		{name: "own veth", iface: "fbu0123abcdh", errHas: "firstboot's own uplink veths"},
		{name: "multipath", rs: []route{{Dst: netip.MustParsePrefix("0.0.0.0/0"), Multi: true}}, errHas: "multipath"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := findEgress(tc.iface, ls, tc.rs, as)
			if tc.errHas != "" {
				if err == nil || !strings.Contains(err.Error(), tc.errHas) {
					t.Fatalf("err %v, want one saying %q", err, tc.errHas)
				}
				if errors.Is(err, ErrDown) != tc.down {
					t.Errorf("errors.Is(err, ErrDown) = %v, want %v", !tc.down, tc.down)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %+v, %v; want %+v", got, err, tc.want)
			}
		})
	}
}

func TestPublic(t *testing.T) {
	for a, public := range map[string]bool{
		"192.168.1.20": false, "10.1.2.3": false, "172.16.0.1": false, "100.64.1.1": false,
		"169.254.1.1": false, "127.0.0.1": false, "203.0.113.7": true, "8.8.8.8": true,
	} {
		got := Egress{Addr: netip.MustParseAddr(a)}.Public()
		if got.IsValid() != public {
			t.Errorf("%s: public %v, want %v", a, got.IsValid(), public)
		}
	}
}

func TestVethNames(t *testing.T) {
	h, l, tag := vethNames("firstboot-20261207T061821Z-testguest-3505b5")
	if len(h) > 15 || len(l) > 15 || h[:len(h)-1] != l[:len(l)-1] || !strings.HasPrefix(h, vethPrefix) {
		t.Errorf("veth names %q %q", h, l)
	}
	if hostVethOfChain(chainName(tag)) != h {
		t.Errorf("chain %s does not lead back to %s", chainName(tag), h)
	}
	if h2, _, _ := vethNames("firstboot-20261207T061821Z-testguest-3505b6"); h2 == h {
		t.Error("two runs got one veth name")
	}
}
