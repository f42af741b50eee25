package fingerprint

import (
	"context"
	"encoding/binary"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"github.com/firstboot/firstboot/internal/testnet"
	"github.com/firstboot/firstboot/internal/testnet/corpus"
)

// ipBytes returns the IP header onwards of a frame.
func ipBytes(p gopacket.Packet) []byte {
	if l := p.Layer(layers.LayerTypeIPv4); l != nil {
		return append(l.LayerContents(), l.LayerPayload()...)
	}
	if l := p.Layer(layers.LayerTypeIPv6); l != nil {
		return append(l.LayerContents(), l.LayerPayload()...)
	}
	return nil
}

// tcpdumpLines runs `tcpdump -nn -v -r path` and returns the text of each
// packet (continuation lines joined), indexed by frame number.
func tcpdumpLines(t *testing.T, path string) map[int]string {
	t.Helper()
	testnet.RequireTools(t, "tcpdump")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "tcpdump", "-nn", "-v", "-r", path).Output()
	if err != nil {
		t.Fatalf("tcpdump -r %s: %v", path, err)
	}
	res := map[int]string{}
	n := 0
	for _, line := range strings.Split(string(out), "\n") {
		if line == "" {
			continue
		}
		if line[0] != ' ' && line[0] != '\t' {
			n++
		}
		res[n] += " " + strings.TrimSpace(line)
	}
	return res
}

var (
	reFlags   = regexp.MustCompile(`Flags \[.*`)
	reCksum   = regexp.MustCompile(`, cksum 0x[0-9a-f]+ \([^)]*\)`)
	reSeq     = regexp.MustCompile(`, seq [0-9:]+`)
	reAck     = regexp.MustCompile(`, ack [0-9]+`)
	reTS      = regexp.MustCompile(`TS val [0-9]+ ecr [0-9]+`)
	reLength  = regexp.MustCompile(`, length [0-9]+.*$`)
	reSackBlk = regexp.MustCompile(`\{[0-9]+:[0-9]+\}`)
)

// normalizeTcpdump turns tcpdump's TCP text into the stable form Parse produces.
func normalizeTcpdump(s string) string {
	s = reFlags.FindString(s)
	s = reCksum.ReplaceAllString(s, "")
	s = reSeq.ReplaceAllString(s, "")
	s = reAck.ReplaceAllString(s, "")
	s = reTS.ReplaceAllString(s, "TS")
	s = reSackBlk.ReplaceAllString(s, "")
	return reLength.ReplaceAllString(s, "")
}

// p0fSigs runs `p0f -r path -o log` and returns the raw_sigs by "mod ver
// port", where mod is syn or syn+ack, ver the IP version and port the client
// port, in capture order: a port can come back (IPv4 and IPv6 connections
// get their ports independently, and ports are reused).
func p0fSigs(t *testing.T, path string) map[string][]string {
	t.Helper()
	testnet.RequireTools(t, "p0f")
	logPath := path + ".p0f.log"
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if out, err := exec.CommandContext(ctx, "p0f", "-r", path, "-o", logPath).CombinedOutput(); err != nil {
		t.Fatalf("p0f -r %s: %v\n%s", path, err, out)
	}
	b, err := os.ReadFile(logPath)
	if err != nil {
		t.Fatal(err)
	}
	res := map[string][]string{}
	for _, line := range strings.Split(string(b), "\n") {
		f := map[string]string{}
		for _, kv := range strings.Split(line, "|") {
			if k, v, ok := strings.Cut(kv, "="); ok {
				f[strings.TrimSpace(k[strings.LastIndexByte(k, ' ')+1:])] = v
			}
		}
		if f["mod"] != "syn" && f["mod"] != "syn+ack" {
			continue
		}
		cli := f["cli"]
		ver := "4"
		if strings.Contains(cli, ":") {
			ver = "6"
		}
		key := f["mod"] + " " + ver + " " + cli[strings.LastIndexByte(cli, '/')+1:]
		res[key] = append(res[key], f["raw_sig"])
	}
	return res
}

// checkAgainstTools parses every SYN and SYN+ACK in the pcap and compares the
// result with tcpdump and p0f reading the same file. It returns how many
// packets were compared.
func checkAgainstTools(t *testing.T, path string) int {
	t.Helper()
	frames := testnet.ReadPcap(t, path)
	dump := tcpdumpLines(t, path)
	sigs := p0fSigs(t, path)
	synMSS := map[string]uint16{} // "ver port" of the client -> SYN's MSS, for SYN+ACKs
	compared := 0
	seen := map[string]bool{}
	var seeds [][]byte
	defer func() {
		corpus.Save(t, "FuzzFingerprint", seeds)
		for k := range seen {
			t.Logf("distinct: %s", k)
		}
	}()
	for _, fr := range frames {
		tl, ok := fr.Packet.Layer(layers.LayerTypeTCP).(*layers.TCP)
		if !ok || !tl.SYN {
			continue
		}
		ver := "4"
		if fr.Packet.Layer(layers.LayerTypeIPv6) != nil {
			ver = "6"
		}
		var key string
		var peer uint16
		if tl.ACK {
			key = "syn+ack " + ver + " " + strconv.Itoa(int(tl.DstPort))
			peer = synMSS[ver+" "+strconv.Itoa(int(tl.DstPort))]
		} else {
			key = "syn " + ver + " " + strconv.Itoa(int(tl.SrcPort))
		}
		seeds = append(seeds, ipBytes(fr.Packet))
		got, err := ParseWithPeerMSS(ipBytes(fr.Packet), peer)
		if err != nil {
			t.Errorf("frame %d: %v", fr.Num, err)
			continue
		}
		if !tl.ACK {
			synMSS[ver+" "+strconv.Itoa(int(tl.SrcPort))] = got.MSS
		}
		compared++
		seen[got.Tcpdump+"  "+got.P0f] = true
		if want := normalizeTcpdump(dump[fr.Num]); got.Tcpdump != want {
			t.Errorf("frame %d Tcpdump:\n got %q\nwant %q (tcpdump: %s)", fr.Num, got.Tcpdump, want, dump[fr.Num])
		}
		if len(sigs[key]) == 0 {
			t.Errorf("frame %d (%s): p0f logged no signature; ours is %s", fr.Num, key, got.P0f)
			continue
		}
		want := sigs[key][0]
		sigs[key] = sigs[key][1:]
		if got.P0f != want {
			t.Errorf("frame %d (%s) P0f:\n got %s\nwant %s", fr.Num, key, got.P0f, want)
		}
		// The other fields must agree with the p0f signature fields.
		parts := strings.Split(want, ":")
		ittl := strings.SplitN(parts[1], "+", 2)
		if ittl[0] != strconv.Itoa(int(got.TTL)) {
			t.Errorf("frame %d TTL %d, p0f %s", fr.Num, got.TTL, parts[1])
		}
		if d, err := strconv.Atoi(ittl[1]); err == nil && int(got.InitialTTL) != int(got.TTL)+d {
			t.Errorf("frame %d InitialTTL %d, p0f %s", fr.Num, got.InitialTTL, parts[1])
		}
		if got.DF != strings.Contains(parts[6], "df") && got.IPVersion == 4 {
			t.Errorf("frame %d DF %v, p0f quirks %s", fr.Num, got.DF, parts[6])
		}
	}
	return compared
}

// TestRealSYNs captures SYNs and SYN+ACKs of the Linux stack under several
// sysctl settings (ECN, no timestamps, no SACK, no window scaling), over IPv4
// and IPv6, from curl and busybox wget, and compares with tcpdump and p0f.
// It runs on loopback (MSS 65495) and across a veth pair between two
// namespaces (MTU 1500, MSS 1460: what a guest on Ethernet sends).
func TestRealSYNs(t *testing.T) {
	testnet.Require(t, "curl", "busybox", "tcpdump", "p0f", "ss", "sysctl")
	t.Run("loopback", func(t *testing.T) {
		ns := testnet.New(t, "fbt")
		// testnet gives lo Ethernet's MTU; this case wants the kernel's own
		// loopback defaults back (MTU 65536), as a host without testnet has them.
		ns.MustRun(t, "ip", "link", "set", "lo", "mtu", "65536", "gso_max_segs", "65535", "gso_max_size", "65536")
		realSYNs(t, ns, ns, "lo", "127.0.0.1", "::1")
	})
	t.Run("veth", func(t *testing.T) {
		srv, cli := testnet.New(t, "fbt"), testnet.New(t, "fbt")
		testnet.NewVeth(t, testnet.Link{NS: srv, Iface: "fps0", Addrs: []string{"10.78.0.1/24", "fd00:78::1/64"}},
			testnet.Link{NS: cli, Iface: "fpc0", Addrs: []string{"10.78.0.2/24", "fd00:78::2/64"}})
		realSYNs(t, srv, cli, "fps0", "10.78.0.1", "fd00:78::1")
	})
}

// realSYNs serves HTTP in srv, connects from cli under each sysctl setting
// (set in both namespaces, so SYN+ACKs vary too) and checks the capture.
func realSYNs(t *testing.T, srv, cli *testnet.Namespace, iface, addr4, addr6 string) {
	dir := t.TempDir()
	www := filepath.Join(dir, "www")
	if err := os.MkdirAll(www, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(www, "index.html"), []byte("hello\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	capture := testnet.NewCapture(t, srv, iface, filepath.Join(dir, "capture.pcap"))
	srv.Background(t, "busybox", "httpd", "-f", "-p", "8080", "-h", www)
	srv.WaitListening(t, "tcp", "8080")
	settings := []map[string]string{
		{},
		{"net.ipv4.tcp_ecn": "1"},
		{"net.ipv4.tcp_ecn": "0", "net.ipv4.tcp_timestamps": "0"},
		{"net.ipv4.tcp_timestamps": "1", "net.ipv4.tcp_sack": "0"},
		{"net.ipv4.tcp_sack": "1", "net.ipv4.tcp_window_scaling": "0"},
	}
	for _, s := range settings {
		for k, v := range s {
			srv.MustRun(t, "sysctl", "-q", "-w", k+"="+v)
			if cli != srv {
				cli.MustRun(t, "sysctl", "-q", "-w", k+"="+v)
			}
		}
		cli.MustRun(t, "curl", "-sS", "--max-time", "5", "-o", "/dev/null", "http://"+addr4+":8080/")
		cli.MustRun(t, "curl", "-sS", "--max-time", "5", "-o", "/dev/null", "http://["+addr6+"]:8080/")
		cli.MustRun(t, "busybox", "wget", "-q", "-O", "/dev/null", "http://"+addr4+":8080/")
	}
	path := capture.Complete(t)
	n := checkAgainstTools(t, path)
	if n < 2*3*len(settings) {
		t.Errorf("compared %d SYN/SYN+ACK packets, want at least %d", n, 2*3*len(settings))
	}
}

// synSpec describes one crafted packet.
type synSpec struct {
	name     string
	v6       bool
	ttl      uint8
	tos      uint8 // IPv4 TOS / IPv6 traffic class
	flow     uint32
	df       bool
	mbz      bool
	id       uint16
	ipOpts   []byte
	sport    uint16
	dport    uint16
	seq, ack uint32
	flags    uint8
	nsBit    bool
	win      uint16
	urp      uint16
	opts     []byte // raw, padded to 4 bytes with zeros by the builder
	payload  []byte
}

func (s synSpec) build() []byte {
	opts := append([]byte(nil), s.opts...)
	for len(opts)%4 != 0 {
		opts = append(opts, 0)
	}
	tcp := make([]byte, 20+len(opts))
	binary.BigEndian.PutUint16(tcp[0:], s.sport)
	binary.BigEndian.PutUint16(tcp[2:], s.dport)
	binary.BigEndian.PutUint32(tcp[4:], s.seq)
	binary.BigEndian.PutUint32(tcp[8:], s.ack)
	tcp[12] = byte(len(tcp)/4) << 4
	if s.nsBit {
		tcp[12] |= 1
	}
	tcp[13] = s.flags
	binary.BigEndian.PutUint16(tcp[14:], s.win)
	binary.BigEndian.PutUint16(tcp[18:], s.urp)
	copy(tcp[20:], opts)
	tcp = append(tcp, s.payload...)
	if s.v6 {
		ip := make([]byte, 40)
		binary.BigEndian.PutUint32(ip, 6<<28|uint32(s.tos)<<20|s.flow&0xfffff)
		binary.BigEndian.PutUint16(ip[4:], uint16(len(tcp)))
		ip[6] = 6
		ip[7] = s.ttl
		ip[23] = 1 // 2001:db8::1 -> 2001:db8::2
		ip[8], ip[9], ip[10], ip[11] = 0x20, 0x01, 0x0d, 0xb8
		ip[24], ip[25], ip[26], ip[27] = 0x20, 0x01, 0x0d, 0xb8
		ip[39] = 2
		return append(ip, tcp...)
	}
	ipOpts := append([]byte(nil), s.ipOpts...)
	ip := make([]byte, 20+len(ipOpts))
	ip[0] = 0x40 | byte(len(ip)/4)
	ip[1] = s.tos
	binary.BigEndian.PutUint16(ip[2:], uint16(len(ip)+len(tcp)))
	binary.BigEndian.PutUint16(ip[4:], s.id)
	var fo uint16
	if s.df {
		fo |= 0x4000
	}
	if s.mbz {
		fo |= 0x8000
	}
	binary.BigEndian.PutUint16(ip[6:], fo)
	ip[8] = s.ttl
	ip[9] = 6
	copy(ip[12:], []byte{192, 0, 2, 1})
	copy(ip[16:], []byte{192, 0, 2, 2})
	copy(ip[20:], ipOpts)
	// A correct IP checksum keeps tcpdump's -v output free of "bad cksum".
	var sum uint32
	for i := 0; i < len(ip); i += 2 {
		sum += uint32(binary.BigEndian.Uint16(ip[i:]))
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	binary.BigEndian.PutUint16(ip[10:], ^uint16(sum))
	return append(ip, tcp...)
}

// Raw TCP options used by the crafted packets.
var (
	oMSS1460 = []byte{2, 4, 0x05, 0xb4}
	oNOP     = []byte{1}
	oWS8     = []byte{3, 3, 8}
	oSOK     = []byte{4, 2}
	oTS      = func(a, b uint32) []byte {
		o := []byte{8, 10, 0, 0, 0, 0, 0, 0, 0, 0}
		binary.BigEndian.PutUint32(o[2:], a)
		binary.BigEndian.PutUint32(o[6:], b)
		return o
	}
)

func cat(parts ...[]byte) []byte {
	var out []byte
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

// craftedSYNs covers every p0f quirk and the option corner cases of both printers.
func craftedSYNs() []synSpec {
	linux := cat(oMSS1460, oSOK, oTS(12345, 0), oNOP, oWS8)
	const S, A, P, U, E, W = 0x02, 0x10, 0x08, 0x20, 0x40, 0x80
	return []synSpec{
		{name: "linux", ttl: 64, df: true, id: 0x1234, seq: 1, flags: S, win: 64240, opts: linux},
		{name: "windows", ttl: 128, df: true, id: 0x3456, seq: 2, flags: S, win: 64240, opts: cat(oMSS1460, oNOP, oWS8, oNOP, oNOP, oSOK)},
		{name: "ecn syn", ttl: 64, df: true, seq: 3, flags: S | E | W, win: 65535, opts: linux},
		{name: "ip ecn ect0", ttl: 64, tos: 0x02, df: true, seq: 4, flags: S, win: 29200, opts: linux},
		{name: "ns bit", ttl: 64, df: true, seq: 5, flags: S, nsBit: true, win: 29200, opts: linux},
		{name: "id- seq- uptr+", ttl: 64, id: 0, seq: 0, flags: S, win: 8192, urp: 7, opts: oMSS1460},
		{name: "urg push", ttl: 64, id: 9, seq: 6, flags: S | U | P, urp: 1, win: 8192, opts: oMSS1460},
		{name: "ack nonzero odd first byte", ttl: 64, seq: 7, ack: 0x01000000, flags: S, win: 8192, opts: oMSS1460},
		{name: "ack nonzero even first byte", ttl: 64, seq: 8, ack: 0x00000001, flags: S, win: 8192, opts: oMSS1460},
		{name: "ts1- ts2+", ttl: 64, seq: 9, flags: S, win: 5840, opts: cat(oMSS1460, oSOK, oTS(0, 77), oNOP, oWS8)},
		{name: "eol zero pad", ttl: 64, seq: 10, flags: S, win: 4096, opts: cat(oMSS1460, oNOP, oNOP, []byte{0}, []byte{0, 0, 0})},
		{name: "eol nonzero pad", ttl: 64, seq: 11, flags: S, win: 4096, opts: cat(oMSS1460, []byte{0, 0, 5, 0})},
		{name: "exws", ttl: 64, seq: 12, flags: S, win: 4096, opts: cat(oMSS1460, []byte{3, 3, 15})},
		{name: "bad mss length", ttl: 64, seq: 13, flags: S, win: 4096, opts: []byte{2, 5, 5, 0xb4, 1, 1, 1, 1}},
		{name: "truncated ts", ttl: 64, seq: 14, flags: S, win: 4096, opts: []byte{1, 1, 1, 1, 1, 1, 8, 10}},
		{name: "unknown option", ttl: 64, seq: 15, flags: S, win: 4096, opts: cat(oMSS1460, []byte{42, 4, 0xab, 0xcd})},
		{name: "too many options", ttl: 64, seq: 16, flags: S, win: 4096, opts: []byte{1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 4, 5, 0xb4}},
		{name: "unknown option too long", ttl: 64, seq: 17, flags: S, win: 4096, opts: []byte{42, 40, 0, 0}},
		{name: "ipv6 flow", v6: true, ttl: 64, flow: 0xabcde, seq: 18, flags: S, win: 64800, opts: cat([]byte{2, 4, 0x05, 0xa0}, oSOK, oTS(5, 0), oNOP, oWS8)},
		{name: "ipv6 ecn", v6: true, ttl: 255, tos: 0x01, seq: 19, flags: S, win: 64800, opts: cat([]byte{2, 4, 0x05, 0xa0}, oNOP, oWS8)},
		{name: "ip options", ttl: 64, df: true, id: 1, ipOpts: []byte{1, 1, 1, 0}, seq: 20, flags: S, win: 65535, opts: oMSS1460},
		{name: "payload and tfo", ttl: 64, df: true, id: 2, seq: 21, flags: S, win: 65535, opts: cat(oMSS1460, []byte{34, 10, 1, 2, 3, 4, 5, 6, 7, 8}), payload: []byte("GET / HTTP/1.1\r\n\r\n")},
		{name: "tfo cookie request", ttl: 64, df: true, id: 3, seq: 22, flags: S, win: 65535, opts: cat(oMSS1460, []byte{34, 2})},
		{name: "mbz", ttl: 64, mbz: true, id: 4, seq: 23, flags: S, win: 65535, opts: oMSS1460},
		{name: "far ttl", ttl: 200, seq: 24, flags: S, win: 65535, opts: oMSS1460},
		{name: "ttl 0", ttl: 0, seq: 25, flags: S, win: 65535, opts: oMSS1460},
		{name: "mtu multiple", ttl: 64, seq: 26, flags: S, win: 6000, opts: oMSS1460},
		{name: "mss-12 multiple", ttl: 64, seq: 27, flags: S, win: 1448 * 3, opts: cat([]byte{2, 4, 0x05, 0xb4}, oTS(1, 0))},
		{name: "no options", ttl: 64, seq: 28, flags: S, win: 512},
		{name: "small mss", ttl: 64, seq: 29, flags: S, win: 500, opts: []byte{2, 4, 0, 50}},
		{name: "sack option", ttl: 64, seq: 30, flags: S, win: 4096, opts: cat(oNOP, oNOP, []byte{5, 10, 0, 0, 0, 1, 0, 0, 0, 2})},
		{name: "mss wrong length for tcpdump", ttl: 64, seq: 31, flags: S, win: 4096, opts: []byte{2, 6, 5, 0xb4, 0, 0, 1, 1}},
		{name: "uto and md5", ttl: 64, seq: 32, flags: S, win: 4096, opts: cat([]byte{28, 4, 0x01, 0x2d}, []byte{19, 18, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}, oNOP, oNOP)},
		{name: "exp tfo", ttl: 64, seq: 33, flags: S, win: 4096, opts: cat([]byte{254, 12, 0xf9, 0x89, 1, 2, 3, 4, 5, 6, 7, 8})},
		{name: "bad length first option", ttl: 64, seq: 34, flags: S, win: 4096, opts: []byte{3, 1, 0, 0}},
	}
}

// TestCraftedSYNs writes crafted SYNs (each quirk p0f knows, odd options) and
// SYN+ACKs to a pcap and compares Parse with tcpdump and p0f reading it.
func TestCraftedSYNs(t *testing.T) {
	testnet.RequireTools(t, "tcpdump", "p0f")
	specs := craftedSYNs()
	path := filepath.Join(t.TempDir(), "crafted.pcap")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	w := pcapgo.NewWriter(f)
	if err := w.WriteFileHeader(65535, layers.LinkTypeEthernet); err != nil {
		t.Fatal(err)
	}
	ts := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	write := func(ip []byte) {
		eth := make([]byte, 14, 14+len(ip))
		eth[0], eth[6] = 2, 2
		if ip[0]>>4 == 6 {
			eth[12], eth[13] = 0x86, 0xdd
		} else {
			eth[12], eth[13] = 0x08, 0x00
		}
		frame := append(eth, ip...)
		ts = ts.Add(time.Second)
		if err := w.WritePacket(gopacket.CaptureInfo{Timestamp: ts, CaptureLength: len(frame), Length: len(frame)}, frame); err != nil {
			t.Fatal(err)
		}
	}
	for i, s := range specs {
		s.sport = uint16(20000 + i)
		s.dport = 80
		write(s.build())
	}
	// A SYN+ACK answering a SYN whose MSS (1200) divides its window and no
	// other candidate does: p0f then writes mss*7, from the peer's MSS.
	syn := synSpec{ttl: 64, df: true, id: 5, sport: 30000, dport: 443, seq: 100, flags: 0x02, win: 64240, opts: cat([]byte{2, 4, 0x04, 0xb0}, oSOK, oTS(9, 0), oNOP, oWS8)}
	synack := synSpec{ttl: 64, df: true, id: 0, sport: 443, dport: 30000, seq: 500, ack: 101, flags: 0x12, win: 1200 * 7, opts: cat(oMSS1460, oSOK, oTS(10, 9), oNOP, oWS8)}
	// build() always uses 192.0.2.1 -> .2: swap for the answer.
	sa := synack.build()
	copy(sa[12:16], []byte{192, 0, 2, 2})
	copy(sa[16:20], []byte{192, 0, 2, 1})
	write(syn.build())
	write(sa)
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if n := checkAgainstTools(t, path); n != len(specs)+2 {
		t.Errorf("compared %d packets, want %d", n, len(specs)+2)
	}
}

func TestParseErrors(t *testing.T) {
	good := synSpec{ttl: 64, seq: 1, flags: 0x02, win: 1, opts: oMSS1460}.build()
	ack := synSpec{ttl: 64, seq: 1, flags: 0x10, win: 1}.build()
	udp := append([]byte(nil), good...)
	udp[9] = 17
	frag := append([]byte(nil), good...)
	frag[7] = 8
	tests := []struct {
		name string
		in   []byte
		want error
	}{
		{"empty", nil, ErrShort},
		{"ipv4 header cut", good[:10], ErrShort},
		{"tcp header cut", good[:30], ErrShort},
		{"options cut", good[:41], ErrShort},
		{"not syn", ack, ErrNotSYN},
		{"udp", udp, ErrNotTCP},
		{"fragment", frag, ErrNotTCP},
		{"ip version 5", []byte{0x50, 0, 0, 0}, ErrNotTCP},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse(tc.in)
			if !errors.Is(err, tc.want) {
				t.Fatalf("Parse = %v, want %v", err, tc.want)
			}
		})
	}
	if _, err := Parse(good); err != nil {
		t.Fatalf("Parse(good) = %v", err)
	}
}

// TestParser: Parser gives what ParseWithPeerMSS gives, and the same string
// for the same rendering, whatever differs that the fingerprint ignores.
func TestParser(t *testing.T) {
	var p Parser
	var first SYN
	for i, s := range craftedSYNs() {
		s.sport, s.dport = uint16(20000+i), 80
		ip := s.build()
		want, err := ParseWithPeerMSS(ip, 1200)
		if err != nil {
			continue // crafted to be rejected; TestParseErrors covers those
		}
		got, err := p.Parse(ip, 1200)
		if err != nil || got != *want {
			t.Errorf("spec %d: Parser.Parse = %+v, %v; ParseWithPeerMSS = %+v", i, got, err, *want)
		}
		if i == 0 {
			first = got
		}
	}
	s := craftedSYNs()[0]
	s.sport, s.dport, s.seq = 40000, 443, 12345 // not part of the fingerprint
	again, err := p.Parse(s.build(), 1200)
	if err != nil {
		t.Fatal(err)
	}
	if again != first || unsafe.StringData(again.P0f) != unsafe.StringData(first.P0f) ||
		unsafe.StringData(again.Tcpdump) != unsafe.StringData(first.Tcpdump) {
		t.Errorf("the same fingerprint was not handed out as the same strings: %+v vs %+v", again, first)
	}
}
