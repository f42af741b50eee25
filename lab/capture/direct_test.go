package capture

import (
	"bytes"
	"context"
	"crypto/sha256"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"github.com/firstboot/firstboot/lab/netns"
)

// TestLargeFramesFromTheRing: a TCP transfer over the veth pair arrives as
// offloaded frames of up to 64 KiB, which the capture writes straight from
// the ring (directBytes), mixed with small datagrams it copies into the
// batch, and a step mark. tshark reads every frame, and the stream put back
// together from the file is, byte for byte, what was sent.
func TestLargeFramesFromTheRing(t *testing.T) {
	c, ns, peer, path := startTest(t, Config{})
	var ln net.Listener
	if err := netns.Do(ns, func() (err error) {
		ln, err = net.Listen("tcp4", "10.99.0.1:5001")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	received := make(chan [32]byte, 1)
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			received <- [32]byte{}
			return
		}
		defer conn.Close()
		h := sha256.New()
		_, _ = io.Copy(h, conn)
		received <- [32]byte(h.Sum(nil))
	}()

	sent := make([]byte, 8<<20)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range sent {
		sent[i] = byte(rng.Uint32())
	}
	if err := netns.Do(peer, func() error {
		conn, err := net.Dial("tcp4", "10.99.0.1:5001")
		if err != nil {
			return err
		}
		defer conn.Close()
		for off := 0; off < len(sent); off += 64 << 10 {
			if off == len(sent)/2 {
				c.Mark("half way")
			}
			if _, err := conn.Write(sent[off : off+64<<10]); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	sendUDP(t, peer, 200, "small")
	if got := <-received; got != sha256.Sum256(sent) {
		t.Fatal("the receiver did not get what was sent")
	}
	st, err := c.Stop(context.Background())
	if err != nil {
		t.Fatal(err)
	}

	lens := tshark(t, path, "frame.cap_len")
	if uint64(len(lens)) != st.Packets || st.Drops != 0 {
		t.Fatalf("tshark reads %d frames; the capture wrote %d and dropped %d", len(lens), st.Packets, st.Drops)
	}
	large := 0
	for _, l := range lens {
		if n, _ := strconv.Atoi(l); n >= directBytes {
			large++
		}
	}
	if large == 0 {
		t.Fatalf("no frame of %d bytes or more: the veth passed no offloaded frame, so the ring path went untested", directBytes)
	}
	marked := 0
	for _, l := range tshark(t, path, "frame.comment") {
		if strings.Contains(l, "half way") {
			marked++
		}
	}
	if marked != 1 {
		t.Errorf("tshark finds the mark on %d frames; want 1", marked)
	}
	if got := reassemble(t, path, 5001); !bytes.Equal(got, sent) {
		t.Fatalf("the stream in the file (%d bytes) differs from what was sent (%d)", len(got), len(sent))
	}
	t.Logf("%d frames, %d of at least %d bytes", len(lens), large, directBytes)
}

// reassemble puts back the TCP payload sent to port from the file, in
// sequence order (a retransmission's copy counts once).
func reassemble(t *testing.T, path string, port layers.TCPPort) []byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := pcapgo.NewNgReader(f, pcapgo.DefaultNgReaderOptions)
	if err != nil {
		t.Fatal(err)
	}
	segs := map[uint32][]byte{}
	var isn uint32
	for {
		data, _, err := r.ReadPacketData()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		p := gopacket.NewPacket(data, layers.LayerTypeEthernet, gopacket.NoCopy)
		tcp, ok := p.Layer(layers.LayerTypeTCP).(*layers.TCP)
		if !ok || tcp.DstPort != port {
			continue
		}
		if tcp.SYN {
			isn = tcp.Seq + 1
		}
		if len(tcp.Payload) > 0 {
			segs[tcp.Seq-isn] = append([]byte(nil), tcp.Payload...)
		}
	}
	offs := make([]uint32, 0, len(segs))
	for o := range segs {
		offs = append(offs, o)
	}
	sort.Slice(offs, func(i, j int) bool { return offs[i] < offs[j] })
	var out []byte
	for _, o := range offs {
		if int(o) == len(out) {
			out = append(out, segs[o]...)
		}
	}
	return out
}
