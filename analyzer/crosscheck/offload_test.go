package crosscheck

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/firstboot/firstboot/analyzer"
	"github.com/firstboot/firstboot/analyzer/capfile"
	"github.com/firstboot/firstboot/analyzer/decode"
	"github.com/firstboot/firstboot/internal/testnet"
)

// labCapture is a real capture of the test guest on its tap (a run of
// scenarios/testguest.yaml): every TCP and UDP checksum in it, the guest's
// and the responders', was left to a NIC that the capture comes before.
const labCapture = "testdata/testguest-tap.pcapng"

// TestChecksumOffloadLabCapture: on a clean lab capture the checksums tshark
// finds bad are exactly those the analysis counts as left to offload, and no
// warning is shown; one packet damaged by hand is counted as bad and shown.
func TestChecksumOffloadLabCapture(t *testing.T) {
	testnet.RequireTools(t, "tshark")
	badTCP, badUDP := tsharkBadChecksums(t, labCapture, "tcp"), tsharkBadChecksums(t, labCapture, "udp")
	if badTCP == 0 || badUDP == 0 {
		t.Fatalf("tshark finds %d TCP and %d UDP checksums bad: the capture is not the offloaded one this test is about", badTCP, badUDP)
	}

	a, err := analyzer.AnalyzeFile(context.Background(), labCapture, analyzer.Options{})
	if err != nil {
		t.Fatal(err)
	}
	w := a.Summary.Warnings
	if w.OffloadTCPChecksums != int64(badTCP) || w.OffloadUDPChecksums != int64(badUDP) || w.BadTCPChecksums != 0 || w.BadUDPChecksums != 0 {
		t.Errorf("offload tcp/udp %d/%d, bad %d/%d; want tshark's bad %d/%d all as offload, none bad",
			w.OffloadTCPChecksums, w.OffloadUDPChecksums, w.BadTCPChecksums, w.BadUDPChecksums, badTCP, badUDP)
	}
	var table strings.Builder
	if err := analyzer.WriteTable(&table, a); err != nil {
		t.Fatal(err)
	}
	if p := w.Problems(); len(p) != 0 || !strings.Contains(table.String(), "warnings     none\n") {
		t.Errorf("a clean lab capture shows warnings %q:\n%s", p, table.String())
	}

	// Damage one TCP packet's checksum field: one bad, one fewer offloaded.
	damaged := filepath.Join(t.TempDir(), "damaged.pcapng")
	frame := damageFirstTCPChecksum(t, labCapture, damaged)
	if n := tsharkBadChecksums(t, damaged, "tcp"); n != badTCP {
		t.Fatalf("tshark finds %d bad TCP checksums in the damaged copy, want %d", n, badTCP)
	}
	d, err := analyzer.AnalyzeFile(context.Background(), damaged, analyzer.Options{})
	if err != nil {
		t.Fatal(err)
	}
	dw := d.Summary.Warnings
	if dw.BadTCPChecksums != 1 || dw.OffloadTCPChecksums != int64(badTCP-1) {
		t.Errorf("after damaging frame %d: bad tcp %d, offload tcp %d; want 1 and %d", frame, dw.BadTCPChecksums, dw.OffloadTCPChecksums, badTCP-1)
	}
	table.Reset()
	if err := analyzer.WriteTable(&table, d); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(table.String(), "warnings     1 bad TCP checksums\n") {
		t.Errorf("the damaged packet is not shown as a warning:\n%s", table.String())
	}
}

// damageFirstTCPChecksum copies src to dst with the first TCP packet's
// checksum field changed, and returns that packet's frame number.
func damageFirstTCPChecksum(t *testing.T, src, dst string) int {
	t.Helper()
	raw, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	r, err := capfile.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var cp capfile.Packet
	var p decode.Packet
	for frame := 1; ; frame++ {
		if err := r.Next(&cp); errors.Is(err, io.EOF) {
			t.Fatal("no TCP packet in the capture")
		} else if err != nil {
			t.Fatal(err)
		}
		if decode.Decode(cp.LinkType, cp.Data, &p) != decode.OK || p.Proto != decode.ProtoTCP || p.IPVersion != 4 {
			continue
		}
		at := bytes.Index(raw, cp.Data)
		if at < 0 || bytes.Index(raw[at+1:], cp.Data) >= 0 {
			t.Fatal("cannot find the packet's bytes once in the file")
		}
		ck := at + cap(cp.Data) - cap(p.L4) + 16 // p.L4 is a slice of cp.Data
		binary.BigEndian.PutUint16(raw[ck:], binary.BigEndian.Uint16(raw[ck:])^0x5a5a)
		if err := os.WriteFile(dst, raw, 0o644); err != nil {
			t.Fatal(err)
		}
		return frame
	}
}

// tsharkBadChecksums counts the packets whose proto ("tcp", "udp") checksum
// tshark finds bad when told to verify it.
func tsharkBadChecksums(t *testing.T, pcap, proto string) int {
	t.Helper()
	out := testnet.Tshark(t, "-r", pcap, "-n", "-o", proto+".check_checksum:TRUE",
		"-Y", proto+`.checksum.status == "Bad"`, "-T", "fields", "-e", "frame.number")
	return len(strings.Fields(out))
}
