package lan_test

import (
	"net/netip"
	"slices"
	"testing"

	"github.com/gopacket/gopacket/layers"

	"github.com/firstboot/firstboot/analyzer/dhcpv6"
	"github.com/firstboot/firstboot/analyzer/dns"
	"github.com/firstboot/firstboot/analyzer/lan"
	"github.com/firstboot/firstboot/analyzer/mdns"
	"github.com/firstboot/firstboot/analyzer/nbns"
	"github.com/firstboot/firstboot/analyzer/ssdp"
	"github.com/firstboot/firstboot/analyzer/wsd"
	"github.com/firstboot/firstboot/internal/testnet"
)

// seed is the capture of real LAN announcers (scripts/lan-seed.sh).
const seed = "../testdata/seed-lan.pcap"

// messages returns the payloads of the seed capture's ARP frames, ICMPv6
// and IGMP messages and UDP datagrams to or from port.
func messages(t testing.TB, what string, port uint16) [][]byte {
	t.Helper()
	var out [][]byte
	for _, f := range testnet.ReadPcap(t, seed) {
		p := f.Packet
		switch what {
		case "arp":
			if a, ok := p.Layer(layers.LayerTypeARP).(*layers.ARP); ok {
				out = append(out, append(a.Contents, a.Payload...))
			}
		case "icmpv6":
			if i, ok := p.Layer(layers.LayerTypeICMPv6).(*layers.ICMPv6); ok {
				out = append(out, append([]byte{i.TypeCode.Type()}, i.Payload...))
			}
		case "igmp":
			if ip, ok := p.Layer(layers.LayerTypeIPv4).(*layers.IPv4); ok && ip.Protocol == layers.IPProtocolIGMP {
				out = append(out, ip.Payload)
			}
		case "udp":
			if u, ok := p.Layer(layers.LayerTypeUDP).(*layers.UDP); ok && (u.SrcPort == layers.UDPPort(port) || u.DstPort == layers.UDPPort(port)) {
				out = append(out, u.Payload)
			}
		}
	}
	if len(out) == 0 {
		t.Fatalf("no %s %d messages in %s", what, port, seed)
	}
	return out
}

// TestRealMessages reads the messages real programs sent in TestRealLAN
// (avahi-daemon, nmbd, nmblookup, wsdd, upnpc, dig, arping, dhclient -6
// and dnsmasq, the kernel) with each parser, and checks what they were
// configured to announce. TestRealLAN compares every value with tshark.
func TestRealMessages(t *testing.T) {
	var kinds []string
	for _, b := range messages(t, "arp", 0) {
		a, err := lan.ParseARP(b)
		if err != nil {
			t.Fatal(err)
		}
		kinds = append(kinds, a.Kind())
		if c, ok := a.Claimed(); ok && a.Kind() == "probe" && c != netip.MustParseAddr("10.79.0.9") {
			t.Errorf("probe for %v", c)
		}
	}
	if !slices.Contains(kinds, "probe") || !slices.Contains(kinds, "announcement") {
		t.Errorf("ARP kinds %v", kinds)
	}
	var groups []string
	for _, b := range messages(t, "igmp", 0) {
		m, err := lan.ParseIGMP(b)
		if err != nil {
			t.Fatal(err)
		}
		for _, g := range m.Joined {
			groups = append(groups, g.String())
		}
	}
	var rs, dad bool
	for _, b := range messages(t, "icmpv6", 0) {
		if !lan.Discovery(b[0]) {
			continue
		}
		m, err := lan.ParseICMPv6(b[0], b[1:])
		if err != nil {
			t.Fatalf("icmpv6 type %d: %v", b[0], err)
		}
		for _, g := range m.Joined {
			groups = append(groups, g.String())
		}
		rs = rs || m.Type == lan.TypeRS && m.LinkAddr.String() == "02:79:00:00:00:02"
		dad = dad || m.Type == lan.TypeNS && m.Target.IsLinkLocalUnicast()
	}
	if !slices.Contains(groups, "224.0.0.251") || !slices.Contains(groups, "ff02::fb") || !rs || !dad {
		t.Errorf("groups %v, router solicitation %v, DAD %v", groups, rs, dad)
	}

	var names []string
	for _, b := range messages(t, "udp", 137) {
		m, err := nbns.Parse(b)
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range m.Names {
			names = append(names, m.OpName()+" "+n.String())
		}
	}
	if !slices.Contains(names, "registration FBHOST<20>") || !slices.Contains(names, "query FBWORKGROUP<1d>") {
		t.Errorf("NBNS names %v", names)
	}
	ha, err := nbns.ParseDatagram(messages(t, "udp", 138)[0])
	if err != nil || ha == nil || ha.Server != "FBHOST" || ha.Comment != "Firstboot test host" || ha.OSMajor != 6 {
		t.Errorf("host announcement %+v, %v", ha, err)
	}
	s, err := ssdp.Parse(messages(t, "udp", 1900)[0])
	if err != nil || s.Method != "M-SEARCH" || s.Host != "239.255.255.250:1900" || s.ST == "" || s.Man != `"ssdp:discover"` {
		t.Errorf("SSDP %+v, %v", s, err)
	}
	w, err := wsd.Parse(messages(t, "udp", 3702)[0])
	if err != nil || w.Action != "Hello" || len(w.Endpoints) != 1 || len(w.XAddrs) != 1 {
		t.Errorf("WS-Discovery %+v, %v", w, err)
	}
	var sol, reply *dhcpv6.Message
	for _, b := range messages(t, "udp", 547) {
		m, err := dhcpv6.Parse(b)
		if err != nil {
			t.Fatal(err)
		}
		switch m.Type {
		case 1:
			sol = m
		case 7:
			reply = m
		}
	}
	if sol == nil || sol.FQDN != "fbhost.lab.test" || dhcpv6.DUIDMAC(sol.ClientID).String() != "02:79:00:00:00:02" || len(sol.ORO) == 0 {
		t.Errorf("SOLICIT %+v", sol)
	}
	if reply == nil || len(reply.Addrs) != 1 || reply.Valid == 0 || len(reply.ServerID) == 0 {
		t.Errorf("REPLY %+v", reply)
	}
	var items []mdns.Item
	for _, b := range messages(t, "udp", 5353) {
		m, err := dns.ParseFull(b)
		if err != nil {
			t.Fatal(err)
		}
		items = append(items, mdns.Items(m)...)
	}
	for _, want := range []mdns.Item{{Kind: "hostname", Value: "fbhost.local"}, {Kind: "hinfo", Value: "X86_64 LINUX"}, {Kind: "address", Value: "10.79.0.2"}} {
		if !slices.Contains(items, want) {
			t.Errorf("mDNS items %v lack %v", items, want)
		}
	}
}

// FuzzLAN feeds arbitrary bytes to every LAN parser; seeds are the real
// messages of the seed capture.
func FuzzLAN(f *testing.F) {
	for i, what := range []struct {
		what string
		port uint16
	}{{"arp", 0}, {"icmpv6", 0}, {"igmp", 0}, {"udp", 137}, {"udp", 138}, {"udp", 1900}, {"udp", 3702}, {"udp", 547}, {"udp", 5353}} {
		for _, b := range messages(f, what.what, what.port) {
			f.Add(uint8(i), b)
		}
	}
	f.Fuzz(func(t *testing.T, which uint8, b []byte) {
		switch which % 9 {
		case 0:
			if a, err := lan.ParseARP(b); err == nil {
				a.Kind()
				a.Claimed()
			}
		case 1:
			if len(b) > 0 {
				_, _ = lan.ParseICMPv6(b[0], b[1:])
			}
		case 2:
			_, _ = lan.ParseIGMP(b)
		case 3:
			if m, err := nbns.Parse(b); m != nil {
				_ = err
				for _, n := range m.Names {
					_ = n.String()
				}
			}
		case 4:
			_, _ = nbns.ParseDatagram(b)
		case 5:
			_, _ = ssdp.Parse(b)
		case 6:
			_, _ = wsd.Parse(b)
		case 7:
			if m, err := dhcpv6.Parse(b); err == nil {
				_ = dhcpv6.DUIDString(m.ClientID)
				_ = dhcpv6.DUIDMAC(m.ClientID)
			}
		case 8:
			m, _ := dns.ParseFull(b)
			_ = mdns.Items(m)
			_ = mdns.Kind(m)
		}
	})
}
