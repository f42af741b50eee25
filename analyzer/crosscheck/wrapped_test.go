package crosscheck

import (
	"context"
	"encoding/binary"
	"net"
	"os"
	"path/filepath"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"github.com/firstboot/firstboot/analyzer"
	"github.com/firstboot/firstboot/internal/testnet"
)

// testWrappedTunnels wraps every IP packet of a capture of real traffic in
// the encapsulations this machine's kernel cannot make (it has no GRE,
// IP-in-IP, SIT, Geneve, VLAN, MPLS or PPPoE devices), with gopacket's
// serializers (an implementation independent of firstboot's), and checks
// that firstboot reads through each what tshark reads through it, and
// lists the tunnel in the inner conns' tunnel_parents.
func testWrappedTunnels(t *testing.T, path string) {
	frames := testnet.ReadPcap(t, path)
	var pkts [][]byte // the IP packets, from their IP header on
	var eths [][]byte // the whole frames
	var cis []gopacket.CaptureInfo
	for _, f := range frames {
		eth, ok := f.Packet.Layer(layers.LayerTypeEthernet).(*layers.Ethernet)
		if !ok || (eth.EthernetType != layers.EthernetTypeIPv4 && eth.EthernetType != layers.EthernetTypeIPv6) {
			continue
		}
		pkts = append(pkts, eth.Payload)
		eths = append(eths, f.Packet.Data())
		cis = append(cis, f.Packet.Metadata().CaptureInfo)
	}
	mac1, mac2 := net.HardwareAddr{2, 0, 0, 0, 0, 1}, net.HardwareAddr{2, 0, 0, 0, 0, 2}
	ip4 := func(proto layers.IPProtocol) *layers.IPv4 {
		return &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Protocol: proto, SrcIP: net.IP{192, 0, 2, 1}, DstIP: net.IP{192, 0, 2, 2}}
	}
	ip6 := func(next layers.IPProtocol) *layers.IPv6 {
		return &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: next, SrcIP: net.ParseIP("2001:db8::1"), DstIP: net.ParseIP("2001:db8::2")}
	}
	ether := func(t layers.EthernetType) *layers.Ethernet {
		return &layers.Ethernet{SrcMAC: mac1, DstMAC: mac2, EthernetType: t}
	}
	udp := func(port uint16, ip gopacket.NetworkLayer) *layers.UDP {
		u := &layers.UDP{SrcPort: 40000, DstPort: layers.UDPPort(port)}
		_ = u.SetNetworkLayerForChecksum(ip)
		return u
	}
	innerProto := func(p []byte) layers.EthernetType {
		if p[0]>>4 == 6 {
			return layers.EthernetTypeIPv6
		}
		return layers.EthernetTypeIPv4
	}
	ipInIP := func(p []byte) layers.IPProtocol {
		if p[0]>>4 == 6 {
			return layers.IPProtocolIPv6
		}
		return layers.IPProtocolIPv4
	}
	cases := []struct {
		name   string
		tunnel bool // inner conns list a tunnel parent
		wrap   func(i int) []gopacket.SerializableLayer
		raw    func(i int) []byte // hand-made where gopacket has no serializer
	}{
		{"gre", true, func(i int) []gopacket.SerializableLayer {
			return []gopacket.SerializableLayer{ether(layers.EthernetTypeIPv4), ip4(layers.IPProtocolGRE),
				&layers.GRE{Protocol: innerProto(pkts[i])}, gopacket.Payload(pkts[i])}
		}, nil},
		{"gre-key-seq-ethernet", true, func(i int) []gopacket.SerializableLayer {
			return []gopacket.SerializableLayer{ether(layers.EthernetTypeIPv4), ip4(layers.IPProtocolGRE),
				&layers.GRE{KeyPresent: true, Key: 7, SeqPresent: true, Seq: uint32(i), Protocol: layers.EthernetTypeTransparentEthernetBridging},
				gopacket.Payload(eths[i])}
		}, nil},
		{"gre-over-ipv6", true, func(i int) []gopacket.SerializableLayer {
			return []gopacket.SerializableLayer{ether(layers.EthernetTypeIPv6), ip6(layers.IPProtocolGRE),
				&layers.GRE{Protocol: innerProto(pkts[i])}, gopacket.Payload(pkts[i])}
		}, nil},
		{"erspan2", true, func(i int) []gopacket.SerializableLayer {
			return []gopacket.SerializableLayer{ether(layers.EthernetTypeIPv4), ip4(layers.IPProtocolGRE),
				&layers.GRE{SeqPresent: true, Seq: uint32(i), Protocol: layers.EthernetTypeERSPAN},
				&layers.ERSPANII{Version: 1, SessionID: 5, Index: 1}, gopacket.Payload(eths[i])}
		}, nil},
		{"erspan3", true, nil, func(i int) []byte {
			// GRE with a sequence number, ERSPAN type III's 12-byte
			// header (version 2) with the 8-byte platform sub-header.
			h := []byte{0x10, 0x00, 0x22, 0xeb, 0, 0, 0, byte(i)}
			e3 := make([]byte, 20)
			e3[0] = 0x20 // version 2
			e3[11] = 1   // O: platform sub-header present
			return outer4(t, layers.IPProtocolGRE, append(append(h, e3...), eths[i]...))
		}},
		{"ipip-6in4", true, func(i int) []gopacket.SerializableLayer {
			return []gopacket.SerializableLayer{ether(layers.EthernetTypeIPv4), ip4(ipInIP(pkts[i])), gopacket.Payload(pkts[i])}
		}, nil},
		{"ip6tnl", true, func(i int) []gopacket.SerializableLayer {
			return []gopacket.SerializableLayer{ether(layers.EthernetTypeIPv6), ip6(ipInIP(pkts[i])), gopacket.Payload(pkts[i])}
		}, nil},
		{"geneve", true, func(i int) []gopacket.SerializableLayer {
			o := ip4(layers.IPProtocolUDP)
			return []gopacket.SerializableLayer{ether(layers.EthernetTypeIPv4), o, udp(6081, o),
				&layers.Geneve{Protocol: layers.EthernetTypeTransparentEthernetBridging, VNI: 42, OptionsLength: 8,
					Options: []*layers.GeneveOption{{Class: 0x0102, Type: 0x80, Length: 8, Data: []byte{1, 2, 3, 4}}}},
				gopacket.Payload(eths[i])}
		}, nil},
		{"gtpu", true, nil, func(i int) []byte {
			// A G-PDU with a PDU session container extension header (5G).
			g := []byte{0x34, 0xff, 0, 0, 0, 0, 0, 9, 0, 0, 0, 0x85, 1, 0x10, 0x01, 0x00}
			g = append(g, pkts[i]...)
			binary.BigEndian.PutUint16(g[2:], uint16(len(g)-8))
			return outer4UDP(t, 2152, g)
		}},
		{"qinq", false, func(i int) []gopacket.SerializableLayer {
			return []gopacket.SerializableLayer{ether(layers.EthernetTypeQinQ),
				&layers.Dot1Q{VLANIdentifier: 100, Type: layers.EthernetTypeDot1Q},
				&layers.Dot1Q{VLANIdentifier: 200, Type: innerProto(pkts[i])}, gopacket.Payload(pkts[i])}
		}, nil},
		{"mpls", false, func(i int) []gopacket.SerializableLayer {
			return []gopacket.SerializableLayer{ether(layers.EthernetTypeMPLSUnicast),
				&layers.MPLS{Label: 16, TTL: 64}, &layers.MPLS{Label: 17, StackBottom: true, TTL: 64}, gopacket.Payload(pkts[i])}
		}, nil},
		{"pppoe", false, func(i int) []gopacket.SerializableLayer {
			pt := layers.PPPTypeIPv4
			if pkts[i][0]>>4 == 6 {
				pt = layers.PPPTypeIPv6
			}
			return []gopacket.SerializableLayer{ether(layers.EthernetTypePPPoESession),
				&layers.PPPoE{Version: 1, Type: 1, Code: layers.PPPoECodeSession, SessionId: 3},
				&layers.PPP{PPPType: pt}, gopacket.Payload(pkts[i])}
		}, nil},
		{"llc-snap", false, func(i int) []gopacket.SerializableLayer {
			return []gopacket.SerializableLayer{&layers.Ethernet{SrcMAC: mac1, DstMAC: mac2, EthernetType: layers.EthernetTypeLLC, Length: uint16(8 + len(pkts[i]))},
				&layers.LLC{DSAP: 0xaa, SSAP: 0xaa, Control: 3}, &layers.SNAP{OrganizationalCode: []byte{0, 0, 0}, Type: innerProto(pkts[i])}, gopacket.Payload(pkts[i])}
		}, nil},
		{"vxlan-in-gre", true, func(i int) []gopacket.SerializableLayer {
			in := ip4(layers.IPProtocolUDP)
			in.SrcIP, in.DstIP = net.IP{198, 51, 100, 1}, net.IP{198, 51, 100, 2}
			return []gopacket.SerializableLayer{ether(layers.EthernetTypeIPv4), ip4(layers.IPProtocolGRE),
				&layers.GRE{Protocol: layers.EthernetTypeIPv4}, in, udp(4789, in), &layers.VXLAN{ValidIDFlag: true, VNI: 9},
				gopacket.Payload(eths[i])}
		}, nil},
	}
	dir := t.TempDir()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(dir, tc.name+".pcap")
			f, err := os.Create(p)
			if err != nil {
				t.Fatal(err)
			}
			w := pcapgo.NewWriter(f)
			if err := w.WriteFileHeader(65535, layers.LinkTypeEthernet); err != nil {
				t.Fatal(err)
			}
			for i := range pkts {
				var b []byte
				if tc.raw != nil {
					b = tc.raw(i)
				} else {
					buf := gopacket.NewSerializeBuffer()
					if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, tc.wrap(i)...); err != nil {
						t.Fatal(err)
					}
					b = buf.Bytes()
				}
				ci := cis[i]
				ci.CaptureLength, ci.Length = len(b), len(b)
				if err := w.WritePacket(ci, b); err != nil {
					t.Fatal(err)
				}
			}
			f.Close()
			a, err := analyzer.AnalyzeFile(context.Background(), p, analyzer.Options{})
			if err != nil {
				t.Fatal(err)
			}
			report := newAgreementReport()
			report.add(t, tc.name, tc.name, firstbootValues(a), tsharkValues(t, p))
			report.check(t, 100)
			if len(a.TLS) < 10 {
				t.Errorf("%d TLS records through %s, want the capture's", len(a.TLS), tc.name)
			}
			if w := a.Summary.Warnings; len(w.DecodeErrors) > 0 {
				t.Errorf("decode errors %v", w.DecodeErrors)
			}
			if !tc.tunnel {
				return
			}
			for _, c := range a.Conns {
				if c.Service == "ssl" || c.Service == "http,ssl" {
					if len(c.TunnelParents) == 0 {
						t.Errorf("conn %s (%s) has no tunnel_parents", c.UID, c.Name)
					}
				}
			}
			if len(a.Tunnels) == 0 {
				t.Error("no tunnel.log record")
			}
		})
	}
}

// outer4 puts an IP payload of protocol proto in an IPv4 packet in an Ethernet frame.
func outer4(t *testing.T, proto layers.IPProtocol, payload []byte) []byte {
	t.Helper()
	buf := gopacket.NewSerializeBuffer()
	err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true},
		&layers.Ethernet{SrcMAC: net.HardwareAddr{2, 0, 0, 0, 0, 1}, DstMAC: net.HardwareAddr{2, 0, 0, 0, 0, 2}, EthernetType: layers.EthernetTypeIPv4},
		&layers.IPv4{Version: 4, IHL: 5, TTL: 64, Protocol: proto, SrcIP: net.IP{192, 0, 2, 1}, DstIP: net.IP{192, 0, 2, 2}},
		gopacket.Payload(payload))
	if err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// outer4UDP puts a UDP payload to port in an IPv4 packet in an Ethernet frame.
func outer4UDP(t *testing.T, port uint16, payload []byte) []byte {
	t.Helper()
	ip := &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Protocol: layers.IPProtocolUDP, SrcIP: net.IP{192, 0, 2, 1}, DstIP: net.IP{192, 0, 2, 2}}
	u := &layers.UDP{SrcPort: 40000, DstPort: layers.UDPPort(port)}
	_ = u.SetNetworkLayerForChecksum(ip)
	buf := gopacket.NewSerializeBuffer()
	err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true},
		&layers.Ethernet{SrcMAC: net.HardwareAddr{2, 0, 0, 0, 0, 1}, DstMAC: net.HardwareAddr{2, 0, 0, 0, 0, 2}, EthernetType: layers.EthernetTypeIPv4},
		ip, u, gopacket.Payload(payload))
	if err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}
