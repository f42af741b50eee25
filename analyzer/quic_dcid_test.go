package analyzer

import (
	"encoding/hex"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket/layers"
)

// TestQUICServerChosenDCID: a real quic-go exchange (recorded by
// analyzer/quic's TestInitialToServerChosenDCID) where the client's second
// Initial follows the server's first Initial and so addresses the server's
// connection ID. The ClientHello is only whole with that Initial, decrypted
// with keys from the first Initial's DCID.
func TestQUICServerChosenDCID(t *testing.T) {
	raw, err := os.ReadFile("quic/testdata/quic-go-v1-new-dcid.hex")
	if err != nil {
		t.Fatalf("%v (regenerate with go test ./analyzer/quic -run TestInitialToServerChosenDCID -update)", err)
	}
	var pkts []capPkt
	ts := time.Unix(1800000000, 0)
	for _, line := range strings.Fields(string(raw)) {
		b, err := hex.DecodeString(line)
		if err != nil || len(b) < 2 {
			t.Fatalf("bad line %.20q: %v", line, err)
		}
		p := ipPkt{src: ipGuest, dst: ipWeb, proto: "udp", sport: 51000, dport: 443, payload: b[1:]}
		src, dst := macGuest, macRouter
		if b[0] == 'S' {
			p.src, p.dst, p.sport, p.dport = ipWeb, ipGuest, 443, 51000
			src, dst = macRouter, macGuest
		}
		ts = ts.Add(time.Millisecond)
		pkts = append(pkts, capPkt{ts: ts, data: ether(src, dst, buildIP(t, p))})
	}
	path := tempFile(t, "q.pcap")
	writePcap(t, path, layers.LinkTypeEthernet, pkts)
	a := analyze(t, path, Options{})
	if len(a.TLS) != 1 {
		t.Fatalf("tls records %d, want 1 (parser errors %v)", len(a.TLS), a.Summary.Warnings.ParserErrors)
	}
	r := a.TLS[0]
	if r.Transport != "quic" || r.ServerName != "odcid.example.test" || !slices.Equal(r.ClientALPN, []string{"h3"}) ||
		!strings.HasPrefix(r.JA4, "q13d") || r.JA4[8:10] != "h3" {
		t.Errorf("quic tls record %+v", r)
	}
	if n := a.Summary.Warnings.ParserErrors["quic"]; n != 0 {
		t.Errorf("%d quic parser errors", n)
	}
}
