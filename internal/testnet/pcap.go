package testnet

import (
	"os"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/pcapgo"
)

// Frame is one captured packet: its 1-based number, as tshark's frame.number
// and tcpdump -r count them, and its decoded layers.
type Frame struct {
	Num    int
	Packet gopacket.Packet
}

// ReadPcap decodes every packet of a classic pcap file (what tcpdump -w
// writes) and fails the test when the file cannot be read or holds none.
func ReadPcap(t testing.TB, path string) []Frame {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatalf("testnet: %v", err)
	}
	defer f.Close()
	r, err := pcapgo.NewReader(f)
	if err != nil {
		t.Fatalf("testnet: read %s: %v", path, err)
	}
	var out []Frame
	for i := 1; ; i++ {
		data, _, err := r.ReadPacketData()
		if err != nil {
			break
		}
		out = append(out, Frame{Num: i, Packet: gopacket.NewPacket(data, r.LinkType(), gopacket.Default)})
	}
	if len(out) == 0 {
		t.Fatalf("testnet: %s holds no packets", path)
	}
	return out
}
