package tlshello

import (
	"crypto/md5"
	"encoding/hex"
	"github.com/firstboot/firstboot/internal/testenv"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
)

func hexList(t *testing.T, s string) []uint16 {
	t.Helper()
	var out []uint16
	for _, f := range strings.Split(s, ",") {
		v, err := strconv.ParseUint(f, 16, 16)
		if err != nil {
			t.Fatalf("bad hex %q: %v", f, err)
		}
		out = append(out, uint16(v))
	}
	return out
}

// withGREASE puts GREASE values in front and in the middle of vs, the way
// Chrome does, so the tests prove they are ignored.
func withGREASE(vs []uint16, g uint16) []uint16 {
	out := []uint16{g}
	out = append(out, vs[:len(vs)/2]...)
	out = append(out, g^0x1010)
	return append(out, vs[len(vs)/2:]...)
}

// TestJA4Spec checks the worked example and the edge cases of FoxIO's JA4
// specification (github.com/FoxIO-LLC/ja4, technical_details/JA4.md, at
// commit d8f731ce): the inputs are the lists the example gives in wire order,
// the expected values are the spec's.
func TestJA4Spec(t *testing.T) {
	const (
		specCiphers = "1301,1302,1303,c02b,c02f,c02c,c030,cca9,cca8,c013,c014,009c,009d,002f,0035"
		specExts    = "001b,0000,0033,0010,4469,0017,002d,000d,0005,0023,0012,002b,ff01,000b,000a,0015"
		specSigAlgs = "0403,0804,0401,0503,0805,0501,0806,0601"
	)
	example := helloSpec{
		legacy:   0x0303,
		ciphers:  withGREASE(hexList(t, specCiphers), 0x0a0a),
		exts:     withGREASE(hexList(t, specExts), 0x3a3a),
		sni:      "example.test",
		alpn:     []string{"h2", "http/1.1"},
		sigalgs:  hexList(t, specSigAlgs),
		versions: []uint16{0x5a5a, 0x0304, 0x0303},
		groups:   []uint16{0x001d},
	}
	parse := func(s helloSpec) *ClientHello {
		ch, err := ParseClientHello(buildClientHello(s))
		if err != nil {
			t.Fatal(err)
		}
		return ch
	}
	ch := parse(example)
	if got, want := JA4(ch, 't'), "t13d1516h2_8daaf6152771_e5627efa2ab1"; got != want {
		t.Errorf("spec example: JA4 = %s, want %s", got, want)
	}
	wantRaw := "t13d1516h2_002f,0035,009c,009d,1301,1302,1303,c013,c014,c02b,c02c,c02f,c030,cca8,cca9_0005,000a,000b,000d,0012,0015,0017,001b,0023,002b,002d,0033,4469,ff01_0403,0804,0401,0503,0805,0501,0806,0601"
	if got := JA4Raw(ch, 't'); got != wantRaw {
		t.Errorf("spec example: JA4_r =\n%s\nwant\n%s", got, wantRaw)
	}

	// FoxIO's own test data (python/test/testdata/sigalg-grease.pcapng.json):
	// the JA4_ro lists in wire order, with a GREASE signature algorithm added.
	sg := helloSpec{
		legacy:   0x0303,
		ciphers:  hexList(t, "1301,1302,1303,c02b,c02f,c02c,c030,cca9,cca8,c013,c014,009c,009d,002f,0035"),
		exts:     hexList(t, "fe0d,0010,0017,0033,44cd,ff01,000a,000d,0023,002b,000b,ca34,002d,0000,0005,001b,0012"),
		sni:      "optimizationguide-pa.googleapis.com",
		alpn:     []string{"h2", "http/1.1"},
		sigalgs:  append([]uint16{0x0a0a}, hexList(t, "0904,0905,0906,0403,0804,0401,0503,0805,0501,0806,0601")...),
		versions: []uint16{0x0304, 0x0303},
	}
	if got, want := JA4(parse(sg), 't'), "t13d1517h2_8daaf6152771_cb7bf5808d99"; got != want {
		t.Errorf("FoxIO sigalg-grease: JA4 = %s, want %s", got, want)
	}

	cases := []struct {
		name      string
		mod       func(s *helloSpec)
		transport byte
		want      string // full JA4, or a prefix/suffix check below
		check     func(t *testing.T, ja4 string)
	}{
		{"no signature algorithms: no underscore, spec value 6d807ffa2a79",
			func(s *helloSpec) { s.sigalgs = nil }, 't',
			"", func(t *testing.T, j string) {
				// The spec's example list still contains 000d but no
				// algorithms: an empty signature_algorithms extension.
				if !strings.HasSuffix(j, "_6d807ffa2a79") {
					t.Errorf("got %s, want suffix _6d807ffa2a79", j)
				}
			}},
		{"no ciphers", func(s *helloSpec) { s.ciphers = []uint16{0x0a0a} }, 't', "", func(t *testing.T, j string) {
			if !strings.HasPrefix(j, "t13d0016h2_000000000000_") {
				t.Errorf("got %s", j)
			}
		}},
		{"only SNI and ALPN extensions", func(s *helloSpec) { s.exts = []uint16{0x0000, 0x0010} }, 't', "", func(t *testing.T, j string) {
			// No supported_versions: legacy version 1.2.
			if !strings.HasPrefix(j, "t12d1502h2_") || !strings.HasSuffix(j, "_000000000000") {
				t.Errorf("got %s", j)
			}
		}},
		{"quic, no SNI", func(s *helloSpec) { s.exts = withGREASE(hexList(t, strings.Replace(specExts, "0000,", "", 1)), 0x3a3a) }, 'q', "", func(t *testing.T, j string) {
			if !strings.HasPrefix(j, "q13i1515h2_8daaf6152771_e5627efa2ab1") {
				t.Errorf("got %s", j)
			}
		}},
		{"dtls 1.2", func(s *helloSpec) { s.versions = []uint16{0xfefd, 0xfeff} }, 'd', "", func(t *testing.T, j string) {
			if !strings.HasPrefix(j, "dd2d") {
				t.Errorf("got %s", j)
			}
		}},
		{"ssl3 legacy, no supported_versions", func(s *helloSpec) { s.legacy = 0x0300; s.versions = nil }, 't', "", func(t *testing.T, j string) {
			if !strings.HasPrefix(j, "ts3d") {
				t.Errorf("got %s", j)
			}
		}},
		{"unknown version", func(s *helloSpec) { s.versions = []uint16{0x7f1c} }, 't', "", func(t *testing.T, j string) {
			if !strings.HasPrefix(j, "t00d") {
				t.Errorf("got %s", j)
			}
		}},
		{"more than 99 ciphers", func(s *helloSpec) {
			s.ciphers = nil
			for i := 0; i < 120; i++ {
				s.ciphers = append(s.ciphers, uint16(0x0100+i))
			}
		}, 't', "", func(t *testing.T, j string) {
			if j[4:6] != "99" {
				t.Errorf("got %s", j)
			}
		}},
	}
	// ALPN rules with the spec's own examples.
	for _, a := range []struct{ alpn, want string }{
		{"h2", "h2"}, {"http/1.1", "h1"}, {"x", "xx"}, {"\xab", "ab"}, {"\xab\xcd", "ad"}, {"0\xab", "3b"},
		{"01\xab\xcd", "3d"}, {"0\xab\xcd1", "01"}, {"", "00"},
	} {
		a := a
		cases = append(cases, struct {
			name      string
			mod       func(s *helloSpec)
			transport byte
			want      string
			check     func(t *testing.T, ja4 string)
		}{"alpn " + hex.EncodeToString([]byte(a.alpn)), func(s *helloSpec) { s.alpn = []string{a.alpn, "h2"} }, 't', "", func(t *testing.T, j string) {
			if j[8:10] != a.want {
				t.Errorf("ALPN %q: got %s, want %s", a.alpn, j[8:10], a.want)
			}
		}})
	}
	cases = append(cases, struct {
		name      string
		mod       func(s *helloSpec)
		transport byte
		want      string
		check     func(t *testing.T, ja4 string)
	}{"no ALPN extension", func(s *helloSpec) { s.exts = withGREASE(hexList(t, strings.Replace(specExts, "0010,", "", 1)), 0x3a3a) }, 't', "", func(t *testing.T, j string) {
		if j[:10] != "t13d151500" {
			t.Errorf("got %s", j)
		}
	}})
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := example
			c.mod(&s)
			j := JA4(parse(s), c.transport)
			if len(j) != 36 {
				t.Errorf("JA4 %q has length %d, want 36", j, len(j))
			}
			c.check(t, j)
		})
	}
}

func TestJA3Definition(t *testing.T) {
	// JA3 (github.com/salesforce/ja3): decimal fields, '-' joined, GREASE dropped.
	ch, err := ParseClientHello(buildClientHello(helloSpec{
		legacy:  0x0303,
		ciphers: []uint16{0x0a0a, 0x1301, 0xc02b},
		exts:    []uint16{0x1a1a, extServerName, extSupportedGroups, extECPointFormats},
		sni:     "a.test",
		groups:  []uint16{0x2a2a, 0x001d, 0x0017},
		points:  []uint8{0, 1},
	}))
	if err != nil {
		t.Fatal(err)
	}
	full, hash := JA3(ch)
	if want := "771,4865-49195,0-10-11,29-23,0-1"; full != want {
		t.Fatalf("JA3 = %q, want %q", full, want)
	}
	if sum := md5.Sum([]byte(full)); hash != hex.EncodeToString(sum[:]) {
		t.Fatalf("hash %s is not the MD5 of %q", hash, full)
	}
	ch, _ = ParseClientHello(buildClientHello(helloSpec{legacy: 0x0300, ciphers: []uint16{0x000a}}))
	if full, _ := JA3(ch); full != "768,10,,," {
		t.Fatalf("no-extension JA3 = %q", full)
	}
}

// TestJA3AgainstTshark writes each recorded ClientHello into a pcap as a
// TCP connection to port 443 (split over segments so tshark must reassemble)
// and compares our JA3 with tshark's tls.handshake.ja3 / ja3_full.
func TestJA3AgainstTshark(t *testing.T) {
	if _, err := exec.LookPath("tshark"); err != nil {
		testenv.Missing(t, "tshark not installed")
	}
	streams := map[string][]byte{
		// None of the recorded clients sends GREASE; this one does, in
		// ciphers, extensions, groups and versions, over three records.
		"synthetic-grease": records(buildClientHello(helloSpec{
			legacy: 0x0303, ciphers: []uint16{0x0a0a, 0x1301, 0xc02b, 0x2a2a},
			exts: []uint16{0x1a1a, extServerName, extSupportedGroups, extECPointFormats, extSignatureAlgs, extALPN, extSupportedVersions, 0xfafa},
			sni:  "grease.example.test", alpn: []string{"h2"}, sigalgs: []uint16{0x0403},
			versions: []uint16{0x4a4a, 0x0304}, groups: []uint16{0x3a3a, 29, 23}, points: []uint8{0},
		}), 40),
	}
	for _, lc := range liveClients() {
		streams[lc.name] = goldenStream(t, lc.name+".bin", nil)
	}
	for name, stream := range streams {
		t.Run(name, func(t *testing.T) {
			msg, err := ReadHandshake(stream, TypeClientHello)
			if err != nil {
				t.Fatal(err)
			}
			ch, err := ParseClientHello(msg)
			if err != nil {
				t.Fatal(err)
			}
			full, hash := JA3(ch)
			pcap := filepath.Join(t.TempDir(), "hello.pcap")
			writeTCPPcap(t, pcap, stream, 500)
			out, err := exec.Command("tshark", "-r", pcap, "-Y", "tls.handshake.type == 1",
				"-T", "fields", "-e", "tls.handshake.ja3_full", "-e", "tls.handshake.ja3").Output()
			if err != nil {
				t.Fatalf("tshark: %v", err)
			}
			fields := strings.Split(strings.TrimSpace(string(out)), "\t")
			if len(fields) != 2 {
				t.Fatalf("tshark output %q", out)
			}
			if fields[0] != full || fields[1] != hash {
				t.Errorf("JA3 mismatch:\n ours   %s %s\n tshark %s %s", full, hash, fields[0], fields[1])
			}
			t.Logf("%s: ja3 %s agrees with tshark", name, hash)
		})
	}
}

// writeTCPPcap writes a TCP handshake and payload (in segments of seg bytes)
// from 10.0.0.1:40000 to 10.0.0.2:443.
func writeTCPPcap(t *testing.T, path string, payload []byte, seg int) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w := pcapgo.NewWriter(f)
	if err := w.WriteFileHeader(65535, layers.LinkTypeEthernet); err != nil {
		t.Fatal(err)
	}
	cli, srv := net.IPv4(10, 0, 0, 1).To4(), net.IPv4(10, 0, 0, 2).To4()
	ts := time.Unix(1_700_000_000, 0)
	var cseq, sseq uint32 = 1000, 5000
	write := func(fromClient bool, syn, ack, psh bool, data []byte) {
		eth := &layers.Ethernet{SrcMAC: net.HardwareAddr{2, 0, 0, 0, 0, 1}, DstMAC: net.HardwareAddr{2, 0, 0, 0, 0, 2}, EthernetType: layers.EthernetTypeIPv4}
		ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolTCP, SrcIP: cli, DstIP: srv}
		tcp := &layers.TCP{SrcPort: 40000, DstPort: 443, Seq: cseq, Ack: sseq, SYN: syn, ACK: ack, PSH: psh, Window: 65535}
		if !fromClient {
			eth.SrcMAC, eth.DstMAC = eth.DstMAC, eth.SrcMAC
			ip.SrcIP, ip.DstIP = srv, cli
			tcp.SrcPort, tcp.DstPort, tcp.Seq, tcp.Ack = 443, 40000, sseq, cseq
		}
		if err := tcp.SetNetworkLayerForChecksum(ip); err != nil {
			t.Fatal(err)
		}
		buf := gopacket.NewSerializeBuffer()
		if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true},
			eth, ip, tcp, gopacket.Payload(data)); err != nil {
			t.Fatal(err)
		}
		ts = ts.Add(time.Millisecond)
		b := buf.Bytes()
		if err := w.WritePacket(gopacket.CaptureInfo{Timestamp: ts, CaptureLength: len(b), Length: len(b)}, b); err != nil {
			t.Fatal(err)
		}
	}
	write(true, true, false, false, nil)
	cseq++
	write(false, true, true, false, nil)
	sseq++
	write(true, false, true, false, nil)
	for len(payload) > 0 {
		n := min(seg, len(payload))
		write(true, false, true, true, payload[:n])
		cseq += uint32(n)
		payload = payload[n:]
	}
}
