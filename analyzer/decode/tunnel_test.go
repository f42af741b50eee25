package decode

import (
	"net"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

// inner is an IPv4 TCP segment from 192.0.2.1:40000 to 198.51.100.7:443
// (tcp4 in decode_test.go), serialized by gopacket.
func innerFrame(t *testing.T) (ip, eth []byte) {
	ip = tcp4(t, []byte("inner"))
	mac := []byte{2, 0, 0, 0, 0, 9}
	return ip, append(append(append(append([]byte{}, mac...), mac...), 0x08, 0x00), ip...)
}

func ser(t *testing.T, ls ...gopacket.SerializableLayer) []byte { return serialize(t, ls...) }

// TestTunnelHeaders reads each tunnel header gopacket writes (and the ones
// it has no writer for, by the RFC's layout) down to the inner TCP segment,
// and cuts each at every length: a short header is InnerNone or a decode
// error, never a panic.
func TestTunnelHeaders(t *testing.T) {
	ip, eth := innerFrame(t)
	cases := []struct {
		name string
		fn   func([]byte) ([]byte, Inner)
		b    []byte
	}{
		{"gre ip", GRE, ser(t, &layers.GRE{Protocol: layers.EthernetTypeIPv4}, gopacket.Payload(ip))},
		{"gre checksum key seq", GRE, ser(t, &layers.GRE{ChecksumPresent: true, KeyPresent: true, Key: 5, SeqPresent: true, Seq: 9,
			Protocol: layers.EthernetTypeTransparentEthernetBridging}, gopacket.Payload(eth))},
		{"enhanced gre ppp", GRE, append([]byte{0x30, 0x81, 0x88, 0x0b, 0, 4, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 0xff, 0x03, 0x00, 0x21}, ip...)},
		{"erspan I", GRE, append([]byte{0, 0, 0x88, 0xbe}, eth...)},
		{"erspan II", GRE, ser(t, &layers.GRE{SeqPresent: true, Protocol: layers.EthernetTypeERSPAN}, &layers.ERSPANII{Version: 1}, gopacket.Payload(eth))},
		{"erspan III", GRE, append([]byte{0x10, 0, 0x22, 0xeb, 0, 0, 0, 1, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}, eth...)},
		{"gre mpls", GRE, append([]byte{0, 0, 0x88, 0x47, 0, 0x01, 0x01, 0x40}, ip...)},
		{"vxlan", VXLAN, ser(t, &layers.VXLAN{ValidIDFlag: true, VNI: 7}, gopacket.Payload(eth))},
		{"geneve", Geneve, ser(t, &layers.Geneve{Protocol: layers.EthernetTypeTransparentEthernetBridging, OptionsLength: 8,
			Options: []*layers.GeneveOption{{Class: 1, Type: 2, Length: 8, Data: []byte{1, 2, 3, 4}}}}, gopacket.Payload(eth))},
		{"geneve ip", Geneve, append([]byte{0, 0, 0x08, 0, 0, 0, 1, 0}, ip...)},
		{"gtp-u", GTPU, ser(t, &layers.GTPv1U{Version: 1, ProtocolType: 1, MessageType: 0xff, TEID: 3}, gopacket.Payload(ip))},
		{"gtp-u extension", GTPU, append([]byte{0x34, 0xff, 0, byte(8 + len(ip)), 0, 0, 0, 3, 0, 0, 0, 0x85, 1, 0x10, 1, 0}, ip...)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			inner, kind := c.fn(c.b)
			if kind == InnerNone {
				t.Fatalf("no inner frame in % x", c.b[:min(24, len(c.b))])
			}
			var p Packet
			if k := DecodeInner(kind, inner, &p); k != OK || p.SrcPort != 40000 || p.DstPort != 443 || string(p.Payload) != "inner" {
				t.Fatalf("inner: kind %q ports %d→%d payload %q", k, p.SrcPort, p.DstPort, p.Payload)
			}
			for n := range len(c.b) {
				in, k := c.fn(c.b[:n])
				if k != InnerNone {
					DecodeInner(k, in, &p)
				}
			}
		})
	}
	// Control messages carry nothing.
	if _, k := GTPU([]byte{0x32, 0x01, 0, 4, 0, 0, 0, 0, 0, 1, 0, 0}); k != InnerNone {
		t.Error("GTP echo request read as a G-PDU")
	}
	if _, k := VXLAN([]byte{0, 0, 0, 0, 0, 0, 0, 0}); k != InnerNone {
		t.Error("VXLAN without the I flag read")
	}
}

// TestLinkShims decodes IP under the link-layer shims gopacket writes:
// QinQ, VN-tag, PPPoE, MPLS (with and without a pseudowire), LLC/SNAP; and
// names what frames without IP carry.
func TestLinkShims(t *testing.T) {
	ip, eth := innerFrame(t)
	mac1, mac2 := net.HardwareAddr{2, 0, 0, 0, 0, 1}, net.HardwareAddr{2, 0, 0, 0, 0, 2}
	ether := func(et layers.EthernetType) *layers.Ethernet {
		return &layers.Ethernet{SrcMAC: mac1, DstMAC: mac2, EthernetType: et}
	}
	vntag := append(append(append([]byte{}, mac2...), mac1...), 0x89, 0x26, 0x80, 0, 0, 1, 0x08, 0)
	cases := []struct {
		name string
		b    []byte
	}{
		{"qinq", ser(t, ether(layers.EthernetTypeQinQ), &layers.Dot1Q{VLANIdentifier: 10, Type: layers.EthernetTypeDot1Q},
			&layers.Dot1Q{VLANIdentifier: 20, Type: layers.EthernetTypeIPv4}, gopacket.Payload(ip))},
		{"vn-tag", append(vntag, ip...)},
		{"pppoe", ser(t, ether(layers.EthernetTypePPPoESession), &layers.PPPoE{Version: 1, Type: 1, Code: layers.PPPoECodeSession},
			&layers.PPP{PPPType: layers.PPPTypeIPv4}, gopacket.Payload(ip))},
		{"pppoe padded", append(ser(t, ether(layers.EthernetTypePPPoESession), &layers.PPPoE{Version: 1, Type: 1, Code: layers.PPPoECodeSession},
			&layers.PPP{PPPType: layers.PPPTypeIPv4}, gopacket.Payload(ip)), 0, 0, 0, 0)},
		{"mpls", ser(t, ether(layers.EthernetTypeMPLSUnicast), &layers.MPLS{Label: 1}, &layers.MPLS{Label: 2, StackBottom: true}, gopacket.Payload(ip))},
		{"mpls pseudowire", ser(t, ether(layers.EthernetTypeMPLSUnicast), &layers.MPLS{Label: 1, StackBottom: true}, gopacket.Payload(append([]byte{0, 0, 0, 0}, eth...)))},
		{"llc/snap", ser(t, &layers.Ethernet{SrcMAC: mac1, DstMAC: mac2, EthernetType: layers.EthernetTypeLLC, Length: uint16(8 + len(ip))},
			&layers.LLC{DSAP: 0xaa, SSAP: 0xaa, Control: 3}, &layers.SNAP{OrganizationalCode: []byte{0, 0, 0}, Type: layers.EthernetTypeIPv4}, gopacket.Payload(ip))},
	}
	for _, c := range cases {
		var p Packet
		if k := Decode(LinkEthernet, c.b, &p); k != OK || p.SrcPort != 40000 || string(p.Payload) != "inner" {
			t.Errorf("%s: kind %q ports %d payload %q", c.name, k, p.SrcPort, p.Payload)
		}
		for n := range len(c.b) {
			Decode(LinkEthernet, c.b[:n], &p)
		}
	}
	for _, c := range []struct {
		b    []byte
		name string
	}{
		{ser(t, ether(layers.EthernetTypeARP), &layers.ARP{AddrType: 1, Protocol: layers.EthernetTypeIPv4, HwAddressSize: 6, ProtAddressSize: 4,
			SourceHwAddress: mac1, SourceProtAddress: []byte{0, 0, 0, 0}, DstHwAddress: mac2, DstProtAddress: []byte{10, 0, 0, 1}}), "arp"},
		{ser(t, ether(layers.EthernetTypeLinkLayerDiscovery), gopacket.Payload{0, 0}), "lldp"},
		{ser(t, &layers.Ethernet{SrcMAC: mac1, DstMAC: mac2, EthernetType: layers.EthernetTypeLLC, Length: 7},
			&layers.LLC{DSAP: 0x42, SSAP: 0x42, Control: 3}, gopacket.Payload{0, 0, 0, 0}), "stp"},
		{ser(t, ether(0x88b5), gopacket.Payload{1}), "ethertype_0x88b5"},
		{ser(t, ether(layers.EthernetTypePPPoESession), &layers.PPPoE{Version: 1, Type: 1, Code: layers.PPPoECodeSession},
			&layers.PPP{PPPType: 0xc021}, gopacket.Payload{1, 1, 0, 4}), "ppp"},
	} {
		var p Packet
		if k := Decode(LinkEthernet, c.b, &p); k != KindNonIP || NonIPName(&p) != c.name {
			t.Errorf("%s: kind %q name %q", c.name, k, NonIPName(&p))
		}
	}
}
