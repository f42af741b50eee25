package dataset

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"github.com/firstboot/firstboot/analyzer"
)

// TestAnonymizeIPv6 checks the MAC-derived IPv6 identifiers: the EUI-64
// link-local address, the solicited-node group (IPv6 and Ethernet) and the
// NDP link-layer option, with ICMPv6 checksums still valid (tshark).
func TestAnonymizeIPv6(t *testing.T) {
	needTshark(t)
	mac, _ := net.ParseMAC("52:54:00:12:34:56")
	src := net.ParseIP("fe80::5054:ff:fe12:3456")
	dst := net.ParseIP("ff02::1:ff12:3456")
	p := filepath.Join(t.TempDir(), "v6.pcapng")
	f, _ := os.Create(p)
	w, err := pcapgo.NewNgWriter(f, layers.LinkTypeEthernet)
	if err != nil {
		t.Fatal(err)
	}
	ip := &layers.IPv6{Version: 6, NextHeader: layers.IPProtocolICMPv6, HopLimit: 255, SrcIP: src, DstIP: dst}
	icmp := &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(layers.ICMPv6TypeNeighborSolicitation, 0)}
	icmp.SetNetworkLayerForChecksum(ip)
	ns := &layers.ICMPv6NeighborSolicitation{TargetAddress: src,
		Options: layers.ICMPv6Options{{Type: layers.ICMPv6OptSourceAddress, Data: mac}}}
	buf := gopacket.NewSerializeBuffer()
	err = gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true},
		&layers.Ethernet{SrcMAC: mac, DstMAC: net.HardwareAddr{0x33, 0x33, 0xff, 0x12, 0x34, 0x56}, EthernetType: layers.EthernetTypeIPv6}, ip, icmp, ns)
	if err != nil {
		t.Fatal(err)
	}
	data := buf.Bytes()
	w.WritePacket(gopacket.CaptureInfo{Timestamp: time.Unix(1e9, 0), CaptureLength: len(data), Length: len(data)}, data)
	w.Flush()
	f.Close()

	an, err := newAnonymizer(identifiers{MachineMAC: mac.String(), OtherIPs: []string{src.String()}})
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "anon.pcapng")
	if _, err := an.anonymizeCapture(p, out); err != nil {
		t.Fatal(err)
	}
	got := strings.Join(tshark(t, "-r", out, "-T", "fields", "-E", "separator=|",
		"-e", "eth.src", "-e", "eth.dst", "-e", "ipv6.src", "-e", "ipv6.dst", "-e", "icmpv6.nd.ns.target_address",
		"-e", "icmpv6.opt.linkaddr", "-e", "icmpv6.checksum.status"), "\n")
	want := "02:00:00:00:00:01|33:33:ff:00:00:01|fe80::ff:fe00:1|ff02::1:ff00:1|fe80::ff:fe00:1|02:00:00:00:00:01|1"
	if got != want {
		t.Errorf("tshark:\n got %s\nwant %s", got, want)
	}
}

// TestAnonymizeMetadataBlocks: section, interface and statistics comments and
// descriptions lose the lab identifiers too, and the file stays readable.
func TestAnonymizeMetadataBlocks(t *testing.T) {
	needTshark(t)
	p := filepath.Join(t.TempDir(), "meta.pcapng")
	f, _ := os.Create(p)
	w, err := pcapgo.NewNgWriterInterface(f, pcapgo.NgInterface{Name: "vnet0", Description: "tap of labguest-7 (52:54:00:12:34:56)",
		LinkType: layers.LinkTypeEthernet, TimestampResolution: 9},
		pcapgo.NgWriterOptions{SectionInfo: pcapgo.NgSectionInfo{Application: "firstboot", Comment: "run on 10.77.0.0/24, machine 10.77.0.57"}})
	if err != nil {
		t.Fatal(err)
	}
	frame := make([]byte, 60)
	copy(frame[6:], []byte{0x52, 0x54, 0, 0x12, 0x34, 0x56})
	w.WritePacketWithOptions(gopacket.CaptureInfo{Timestamp: time.Unix(1e9, 0), CaptureLength: 60, Length: 60}, frame,
		pcapgo.NgPacketOptions{Comments: []string{"step boot begins on labguest-7"}})
	w.WriteInterfaceStats(0, pcapgo.NgInterfaceStatistics{LastUpdate: time.Unix(1e9+1, 0), Comment: "step boot ends; host 10.77.0.57", PacketsReceived: 1})
	w.Flush()
	f.Close()
	an, err := newAnonymizer(identifiers{MachineMAC: "52:54:00:12:34:56", MachineIP: "10.77.0.57", Subnet: "10.77.0.0/24", Hostname: "labguest-7"})
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "anon.pcapng")
	if _, err := an.anonymizeCapture(p, out); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(out)
	for _, bad := range []string{"labguest-7", "52:54:00:12:34:56", "10.77.0.57", "10.77.0.0"} {
		if strings.Contains(string(data), bad) {
			t.Errorf("%q still in the anonymised file", bad)
		}
	}
	for _, good := range []string{"host000000", "02:00:00:00:00:01", "192.0.2.2", "192.0.2.0/24"} {
		if !strings.Contains(string(data), good) {
			t.Errorf("%q missing", good)
		}
	}
	if got := tshark(t, "-r", out, "-T", "fields", "-e", "frame.comment", "-e", "eth.src"); len(got) != 1 || got[0] != "step boot begins on host000000\t02:00:00:00:00:01" {
		t.Errorf("tshark: %q", got)
	}
}

// TestAnonymizeKeepsChecksumOffload: in a real lab capture every TCP/UDP
// checksum was left to NIC offload; after anonymisation the analysis still
// counts them all as offload and none as damage.
func TestAnonymizeKeepsChecksumOffload(t *testing.T) {
	const lab = "../../analyzer/crosscheck/testdata/testguest-tap.pcapng"
	before, err := analyzer.AnalyzeFile(context.Background(), lab, analyzer.Options{})
	if err != nil {
		t.Fatal(err)
	}
	an, err := newAnonymizer(identifiers{MachineMAC: "52:54:00:23:38:fa", MachineIP: "10.77.1.103", Gateway: "10.77.1.1",
		Subnet: "10.77.1.0/24", Hostname: "firstboot-testguest"})
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "anon.pcapng")
	if _, err := an.anonymizeCapture(lab, out); err != nil {
		t.Fatal(err)
	}
	after, err := analyzer.AnalyzeFile(context.Background(), out, analyzer.Options{})
	if err != nil {
		t.Fatal(err)
	}
	bw, aw := before.Summary.Warnings, after.Summary.Warnings
	if bw.OffloadTCPChecksums+bw.OffloadUDPChecksums == 0 {
		t.Fatal("the lab capture has no offloaded checksums: not the capture this test is about")
	}
	if aw.OffloadTCPChecksums != bw.OffloadTCPChecksums || aw.OffloadUDPChecksums != bw.OffloadUDPChecksums || len(aw.Problems()) != 0 {
		t.Errorf("after anonymisation: offload tcp/udp %d/%d (before %d/%d), problems %q",
			aw.OffloadTCPChecksums, aw.OffloadUDPChecksums, bw.OffloadTCPChecksums, bw.OffloadUDPChecksums, aw.Problems())
	}
}
