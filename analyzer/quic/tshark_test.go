package quic

import (
	"github.com/firstboot/firstboot/internal/testenv"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"github.com/firstboot/firstboot/analyzer/tlshello"
)

// TestAgainstTshark writes the recorded quic-go Initial datagrams into a
// pcap (UDP to port 443) and lets tshark decrypt and reassemble them on its
// own: its SNI, ALPN and JA3 must equal ours.
func TestAgainstTshark(t *testing.T) {
	if _, err := exec.LookPath("tshark"); err != nil {
		testenv.Missing(t, "tshark not installed")
	}
	datagrams := readGolden(t, "quic-go-v1-initials")
	var cs CryptoStream
	for _, dg := range datagrams {
		ins, err := ParseInitials(dg)
		if err != nil {
			t.Fatal(err)
		}
		for _, in := range ins {
			for _, f := range in.Frames {
				cs.Add(f, 1<<16)
			}
		}
	}
	ch, err := tlshello.ParseClientHello(cs.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	full, hash := tlshello.JA3(ch)

	path := filepath.Join(t.TempDir(), "quic.pcap")
	writeUDPPcap(t, path, datagrams)
	out, err := exec.Command("tshark", "-r", path, "-Y", "tls.handshake.type == 1", "-T", "fields",
		"-e", "tls.handshake.extensions_server_name", "-e", "tls.handshake.extensions_alpn_str",
		"-e", "tls.handshake.ja3_full", "-e", "tls.handshake.ja3").Output()
	if err != nil {
		t.Fatalf("tshark: %v", err)
	}
	f := strings.Split(strings.TrimSpace(string(out)), "\t")
	if len(f) != 4 {
		t.Fatalf("tshark output %q", out)
	}
	if f[0] != ch.ServerName || f[1] != strings.Join(ch.ALPN, ",") || f[2] != full || f[3] != hash {
		t.Fatalf("tshark %q\nours   [%s %s %s %s]", f, ch.ServerName, strings.Join(ch.ALPN, ","), full, hash)
	}
	t.Logf("tshark agrees: sni %s ja3 %s", f[0], f[3])
}

func writeUDPPcap(t *testing.T, path string, datagrams [][]byte) {
	t.Helper()
	fh, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	w := pcapgo.NewWriter(fh)
	if err := w.WriteFileHeader(65535, layers.LinkTypeEthernet); err != nil {
		t.Fatal(err)
	}
	ts := time.Unix(1_700_000_000, 0)
	for _, d := range datagrams {
		eth := &layers.Ethernet{SrcMAC: net.HardwareAddr{2, 0, 0, 0, 0, 1}, DstMAC: net.HardwareAddr{2, 0, 0, 0, 0, 2}, EthernetType: layers.EthernetTypeIPv4}
		ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolUDP, SrcIP: net.IPv4(10, 0, 0, 1).To4(), DstIP: net.IPv4(10, 0, 0, 2).To4()}
		udp := &layers.UDP{SrcPort: 50000, DstPort: 443}
		if err := udp.SetNetworkLayerForChecksum(ip); err != nil {
			t.Fatal(err)
		}
		buf := gopacket.NewSerializeBuffer()
		if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, eth, ip, udp, gopacket.Payload(d)); err != nil {
			t.Fatal(err)
		}
		ts = ts.Add(time.Millisecond)
		b := buf.Bytes()
		if err := w.WritePacket(gopacket.CaptureInfo{Timestamp: ts, CaptureLength: len(b), Length: len(b)}, b); err != nil {
			t.Fatal(err)
		}
	}
}
