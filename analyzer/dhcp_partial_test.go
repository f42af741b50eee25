package analyzer

import (
	"net"
	"testing"
	"time"

	"github.com/gopacket/gopacket/layers"
)

// TestDHCPTruncatedOption: a DHCP message whose last option runs past the end
// is counted as a parser error but what came before it (message type,
// hostname) is still used.
func TestDHCPTruncatedOption(t *testing.T) {
	msg := dhcpMsg(t, layers.DHCPOpRequest, layers.DHCPMsgTypeDiscover, 0x4242, nil,
		layers.NewDHCPOption(layers.DHCPOptHostname, []byte("cutguest")))
	// Options start after the 236-byte BOOTP header and the 4-byte cookie;
	// drop the End option and append a vendor class option that claims 20
	// bytes but carries 3 (RFC 2132 option framing: code, length, data).
	i := 240
	for i < len(msg) && msg[i] != 255 {
		if msg[i] == 0 {
			i++
			continue
		}
		i += 2 + int(msg[i+1])
	}
	msg = append(msg[:i:i], 60, 20, 'a', 'b', 'c')
	pkts := []capPkt{{ts: time.Unix(1800000000, 0), data: ether(macGuest, macRouter, buildIP(t, ipPkt{
		src: net.IPv4zero, dst: net.IPv4bcast, proto: "udp", sport: 68, dport: 67, payload: msg}))}}
	path := tempFile(t, "d.pcap")
	writePcap(t, path, layers.LinkTypeEthernet, pkts)
	a := analyze(t, path, Options{})
	if a.Summary.Warnings.ParserErrors["dhcp"] != 1 {
		t.Errorf("parser errors %v, want one dhcp", a.Summary.Warnings.ParserErrors)
	}
	if len(a.DHCP) != 1 || a.DHCP[0].HostName != "cutguest" || len(a.DHCP[0].MsgTypes) != 1 || a.DHCP[0].MsgTypes[0] != "DISCOVER" {
		t.Fatalf("dhcp records %+v", a.DHCP)
	}
	if a.Conns[0].Service != "dhcp" {
		t.Errorf("service %q", a.Conns[0].Service)
	}
}
