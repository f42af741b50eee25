package crosscheck

import (
	"bufio"
	"context"
	"fmt"
	"maps"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/firstboot/firstboot/analyzer"
	"github.com/firstboot/firstboot/internal/testnet"
	"github.com/firstboot/firstboot/internal/trafficgen"
)

// generate writes a capture of one pass of every trafficgen client (a few
// seconds, about 1.5 MB and 4,000 packets).
func generate(t *testing.T) (string, *trafficgen.Result) {
	t.Helper()
	testnet.Require(t, "tcpdump", "tshark", "p0f", "dnsmasq", "curl", "dig", "openssl", "chronyd", "busybox")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	pcap := filepath.Join(t.TempDir(), "crosscheck.pcap")
	res, err := trafficgen.Generate(ctx, trafficgen.Config{Out: pcap})
	if err != nil {
		t.Fatalf("generating traffic: %v", err)
	}
	return pcap, res
}

// rows runs tshark -T fields with the given fields (first occurrence of each,
// so ICMP errors' inner headers do not count) and returns one []string per packet.
func rows(t *testing.T, pcap, filter string, fields ...string) [][]string {
	t.Helper()
	args := []string{"-r", pcap, "-n", "-T", "fields", "-E", "occurrence=f", "-Y", filter}
	for _, f := range fields {
		args = append(args, "-e", f)
	}
	var out [][]string
	for _, line := range strings.Split(strings.TrimRight(testnet.Tshark(t, args...), "\n"), "\n") {
		if line != "" {
			out = append(out, strings.Split(line, "\t"))
		}
	}
	return out
}

// allRows is rows with every occurrence of multi-valued fields, comma-joined.
func allRows(t *testing.T, pcap, filter string, fields ...string) [][]string {
	t.Helper()
	args := []string{"-r", pcap, "-n", "-T", "fields", "-E", "occurrence=a", "-E", "aggregator=,", "-Y", filter}
	for _, f := range fields {
		args = append(args, "-e", f)
	}
	var out [][]string
	for _, line := range strings.Split(strings.TrimRight(testnet.Tshark(t, args...), "\n"), "\n") {
		if line != "" {
			out = append(out, strings.Split(line, "\t"))
		}
	}
	return out
}

func joined(rs [][]string) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = strings.Join(r, "|")
	}
	slices.Sort(out)
	return out
}

func sortedSet(vs []string) []string {
	vs = slices.Clone(vs)
	slices.Sort(vs)
	return slices.Compact(vs)
}

func atoi(t *testing.T, s string) int64 {
	t.Helper()
	if s == "" {
		return 0
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		t.Fatalf("not a number from tshark: %q", s)
	}
	return n
}

// diff explains how two sorted lists differ.
func diff(got, want []string) string {
	var only1, only2 []string
	g, w := map[string]int{}, map[string]int{}
	for _, v := range got {
		g[v]++
	}
	for _, v := range want {
		w[v]++
	}
	for _, k := range sortedSet(append(slices.Clone(got), want...)) {
		switch {
		case g[k] > w[k]:
			only1 = append(only1, fmt.Sprintf("%s (x%d)", k, g[k]-w[k]))
		case w[k] > g[k]:
			only2 = append(only2, fmt.Sprintf("%s (x%d)", k, w[k]-g[k]))
		}
	}
	trim := func(s []string) []string {
		if len(s) > 8 {
			return append(s[:8:8], fmt.Sprintf("… %d more", len(s)-8))
		}
		return s
	}
	return fmt.Sprintf("%d vs %d entries\n  only analyzer: %v\n  only reference: %v", len(got), len(want), trim(only1), trim(only2))
}

func expectSame(t *testing.T, what string, analyzerSide, reference []string) {
	t.Helper()
	a, r := slices.Clone(analyzerSide), slices.Clone(reference)
	slices.Sort(a)
	slices.Sort(r)
	if !slices.Equal(a, r) {
		t.Errorf("%s: analyzer and reference differ: %s", what, diff(a, r))
	}
	if len(r) == 0 {
		t.Errorf("%s: the reference found nothing; the generated capture should contain some", what)
	}
}

// TestCrossCheck analyses one generated capture and compares each part of the
// analysis with tshark, tcpdump or p0f reading the same file.
func TestCrossCheck(t *testing.T) {
	pcap, gen := generate(t)
	a, err := analyzer.AnalyzeFile(context.Background(), pcap, analyzer.Options{})
	if err != nil {
		t.Fatalf("AnalyzeFile: %v", err)
	}

	t.Run("totals", func(t *testing.T) {
		// Frames and frame bytes (original frame lengths) from tshark's io,stat.
		out := testnet.Tshark(t, "-r", pcap, "-n", "-q", "-z", "io,stat,0")
		m := regexp.MustCompile(`<>\s*[\d.]+\s*\|\s*(\d+)\s*\|\s*(\d+)\s*\|`).FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("cannot read tshark io,stat output:\n%s", out)
		}
		if frames := atoi(t, m[1]); a.Summary.Packets != frames || frames != gen.Capture.Captured {
			t.Errorf("packets: analyzer %d, tshark %d, tcpdump captured %d", a.Summary.Packets, frames, gen.Capture.Captured)
		}
		if bytes := atoi(t, m[2]); a.Summary.FrameBytes != bytes {
			t.Errorf("frame bytes (sum of frame.len): analyzer %d, tshark %d", a.Summary.FrameBytes, bytes)
		}
		if a.Summary.CapturedBytes != a.Summary.FrameBytes {
			t.Errorf("captured bytes %d != frame bytes %d, but the capture used -s 0", a.Summary.CapturedBytes, a.Summary.FrameBytes)
		}
		// IP bytes: IPv4 total length, IPv6 40 + payload length, outer header only.
		var ipBytes, v6 int64
		for _, r := range rows(t, pcap, "ip or ipv6", "ip.len", "ipv6.plen") {
			if r[0] != "" {
				ipBytes += atoi(t, r[0])
			} else {
				ipBytes += 40 + atoi(t, r[1])
				v6++
			}
		}
		if a.Summary.IPBytes != ipBytes {
			t.Errorf("IP bytes: analyzer %d, tshark (ip.len + ipv6.plen+40) %d", a.Summary.IPBytes, ipBytes)
		}
		if a.Summary.IPv6Packets != v6 || !a.Summary.IPv6Seen {
			t.Errorf("IPv6 packets: analyzer %d (seen %v), tshark %d", a.Summary.IPv6Packets, a.Summary.IPv6Seen, v6)
		}
	})

	t.Run("dns", func(t *testing.T) {
		queries := rows(t, pcap, "dns.flags.response == 0", "dns.qry.name", "dns.qry.type")
		responses := rows(t, pcap, "dns.flags.response == 1", "dns.qry.name", "dns.qry.type")
		if len(queries) != len(responses) {
			t.Fatalf("premise: every query answered once, but tshark sees %d queries and %d responses", len(queries), len(responses))
		}
		var names, pairs []string
		for _, d := range a.DNS {
			names = append(names, d.Query)
			pairs = append(pairs, fmt.Sprintf("%s|%d", d.Query, d.QType))
		}
		var tsNames []string
		for _, q := range queries {
			tsNames = append(tsNames, strings.ToLower(q[0]))
			q[0] = strings.ToLower(q[0])
		}
		expectSame(t, "query names (set)", sortedSet(names), sortedSet(tsNames))
		expectSame(t, "query name|type per query", pairs, joined(queries))
		if slices.Compare(sortedSet(names), gen.DNSNames) != 0 {
			t.Errorf("analyzer's query names differ from what the clients asked: %s", diff(sortedSet(names), gen.DNSNames))
		}
		if a.Summary.DNSQueries != int64(len(queries)) {
			t.Errorf("summary dns_queries %d, tshark %d queries", a.Summary.DNSQueries, len(queries))
		}
		// Answers: name|type|rcode|sorted A and AAAA data, per response.
		var want, got []string
		for _, r := range allRows(t, pcap, "dns.flags.response == 1", "dns.qry.name", "dns.qry.type", "dns.flags.rcode", "dns.a", "dns.aaaa") {
			ans := strings.FieldsFunc(r[3]+","+r[4], func(c rune) bool { return c == ',' })
			slices.Sort(ans)
			want = append(want, fmt.Sprintf("%s|%s|%s|%s", strings.ToLower(r[0]), r[1], r[2], strings.Join(ans, ",")))
		}
		for _, d := range a.DNS {
			rcode := "-"
			if d.Rcode != nil {
				rcode = strconv.Itoa(int(*d.Rcode))
			}
			ans := slices.Clone(d.Answers)
			slices.Sort(ans)
			got = append(got, fmt.Sprintf("%s|%d|%s|%s", d.Query, d.QType, rcode, strings.Join(ans, ",")))
		}
		expectSame(t, "responses name|type|rcode|answers", got, want)
	})

	t.Run("tls over tcp", func(t *testing.T) {
		hellos := rows(t, pcap, "tcp && tls.handshake.type == 1", "tcp.srcport", "tls.handshake.extensions_server_name", "tls.handshake.ja3", "tls.handshake.ja3_full")
		var got []string
		established := 0
		for _, r := range a.TLS {
			if r.Transport == "tcp" {
				got = append(got, fmt.Sprintf("%d|%s|%s|%s", r.OrigP, r.ServerName, r.JA3, r.JA3String))
				if r.Established {
					established++
				}
			}
		}
		expectSame(t, "ClientHellos port|SNI|JA3|JA3 string", got, joined(hellos))
		var snis []string
		for _, h := range hellos {
			snis = append(snis, h[1])
		}
		if !slices.Equal(sortedSet(snis), gen.TLSServerNames) {
			t.Errorf("tshark's SNIs differ from what the clients sent: %s", diff(sortedSet(snis), gen.TLSServerNames))
		}
		if n := len(rows(t, pcap, "tcp && tls.handshake.type == 2", "tcp.stream")); established != n {
			t.Errorf("established TLS connections: analyzer %d, tshark ServerHellos %d", established, n)
		}
	})

	t.Run("quic", func(t *testing.T) {
		// tshark decrypts QUIC Initial packets (their keys derive from the DCID).
		hellos := rows(t, pcap, "quic && tls.handshake.type == 1", "udp.srcport", "tls.handshake.extensions_server_name")
		var got []string
		for _, r := range a.TLS {
			if r.Transport == "quic" {
				got = append(got, fmt.Sprintf("%d|%s", r.OrigP, r.ServerName))
			}
		}
		expectSame(t, "QUIC ClientHellos port|SNI", sortedSet(got), sortedSet(joined(hellos)))
	})

	t.Run("http", func(t *testing.T) {
		reqs := rows(t, pcap, "http.request", "tcp.srcport", "http.request.method", "http.host", "http.request.uri", "http.user_agent")
		resps := rows(t, pcap, "http.response", "tcp.dstport", "http.response.code")
		var gotReq, gotResp []string
		for _, h := range a.HTTP {
			gotReq = append(gotReq, fmt.Sprintf("%d|%s|%s|%s|%s", h.OrigP, h.Method, h.Host, h.URI, h.UserAgent))
			if h.StatusCode != 0 {
				gotResp = append(gotResp, fmt.Sprintf("%d|%d", h.OrigP, h.StatusCode))
			}
		}
		expectSame(t, "requests port|method|host|uri|user-agent", gotReq, joined(reqs))
		expectSame(t, "responses port|status", gotResp, joined(resps))
		var hosts []string
		for _, h := range a.HTTP {
			hosts = append(hosts, h.Host)
		}
		if !slices.Equal(sortedSet(hosts), gen.HTTPHosts) {
			t.Errorf("analyzer's HTTP hosts differ from what the clients asked: %s", diff(sortedSet(hosts), gen.HTTPHosts))
		}
	})

	t.Run("ntp", func(t *testing.T) {
		pkts := rows(t, pcap, "ntp", "ip.src", "ntp.flags.vn", "ntp.flags.mode", "ntp.stratum")
		var got []string
		for _, n := range a.NTP {
			got = append(got, fmt.Sprintf("%s|%d|%d|%d", n.Sender, n.Version, n.Mode, n.Stratum))
		}
		expectSame(t, "NTP packets sender|version|mode|stratum", got, joined(pkts))
	})

	t.Run("dhcp", func(t *testing.T) {
		typeName := map[string]string{"1": "DISCOVER", "2": "OFFER", "3": "REQUEST", "4": "DECLINE", "5": "ACK", "6": "NAK", "7": "RELEASE", "8": "INFORM"}
		var order []string
		txns := map[string][]string{}
		hostnames := map[string]string{}
		assigned := map[string]string{}
		for _, r := range rows(t, pcap, "dhcp", "dhcp.id", "dhcp.hw.mac_addr", "dhcp.option.dhcp", "dhcp.option.hostname", "dhcp.ip.your") {
			key := r[1] + "|" + r[0]
			if _, ok := txns[key]; !ok {
				order = append(order, key)
			}
			txns[key] = append(txns[key], typeName[r[2]])
			if r[3] != "" {
				hostnames[key] = r[3]
			}
			if r[2] == "5" {
				assigned[key] = r[4]
			}
		}
		var want, got []string
		for _, k := range order {
			mac, _, _ := strings.Cut(k, "|")
			want = append(want, fmt.Sprintf("%s|%s|%s|%s", mac, hostnames[k], strings.Join(txns[k], ","), assigned[k]))
		}
		for _, d := range a.DHCP {
			got = append(got, fmt.Sprintf("%s|%s|%s|%s", d.MAC, d.HostName, strings.Join(d.MsgTypes, ","), d.AssignedAddr))
		}
		expectSame(t, "DHCP transactions mac|hostname|messages|assigned", got, want)
		if a.Host.IP != trafficgen.ClientV4 || a.Host.MAC != trafficgen.ClientMAC ||
			a.Host.DHCPHostname != gen.DHCPHostname || a.Host.Method != "dhcp" {
			t.Errorf("host = %+v, want the DHCP client %s / %s named %s", a.Host, trafficgen.ClientV4, trafficgen.ClientMAC, gen.DHCPHostname)
		}
	})

	t.Run("tcp connections", func(t *testing.T) {
		// Connection count and per-connection frames from tshark's conversation table.
		conv := parseConv(t, testnet.Tshark(t, "-r", pcap, "-n", "-q", "-z", "conv,tcp"))
		// Per direction from fields: packets, IP bytes (IP header included) and
		// payload bytes as Zeek counts them (sequence space covered: the highest
		// relative next-sequence number minus one each for SYN and FIN).
		type dirStats struct{ pkts, ipBytes, maxNxt, syn, fin int64 }
		perDir := map[string]*dirStats{}
		for _, r := range rows(t, pcap, "tcp", "ip.src", "ipv6.src", "tcp.srcport", "ip.dst", "ipv6.dst", "tcp.dstport", "ip.len", "ipv6.plen",
			"tcp.nxtseq", "tcp.flags.syn", "tcp.flags.fin") {
			k := endpoint(r[0]+r[1], r[2]) + ">" + endpoint(r[3]+r[4], r[5])
			d := perDir[k]
			if d == nil {
				d = &dirStats{}
				perDir[k] = d
			}
			d.pkts++
			if r[6] != "" {
				d.ipBytes += atoi(t, r[6])
			} else {
				d.ipBytes += 40 + atoi(t, r[7])
			}
			d.maxNxt = max(d.maxNxt, atoi(t, r[8]))
			d.syn = max(d.syn, atoi(t, r[9]))
			d.fin = max(d.fin, atoi(t, r[10]))
		}
		payload := func(d *dirStats) int64 { return max(d.maxNxt-d.syn-d.fin, 0) }
		var gotConv, gotDirs, wantDirs []string
		for _, c := range a.Conns {
			if c.Proto != "tcp" {
				continue
			}
			o, r := endpoint(c.OrigH, strconv.Itoa(int(c.OrigP))), endpoint(c.RespH, strconv.Itoa(int(c.RespP)))
			gotConv = append(gotConv, fmt.Sprintf("%s|%d", convKey(o, r), c.OrigPkts+c.RespPkts))
			gotDirs = append(gotDirs, fmt.Sprintf("%s>%s|%d|%d|%d|%d|%d|%d", o, r, c.OrigPkts, c.OrigIPBytes, c.OrigBytes, c.RespPkts, c.RespIPBytes, c.RespBytes))
			od, rd := perDir[o+">"+r], perDir[r+">"+o]
			if od == nil {
				od = &dirStats{}
			}
			if rd == nil {
				rd = &dirStats{}
			}
			wantDirs = append(wantDirs, fmt.Sprintf("%s>%s|%d|%d|%d|%d|%d|%d", o, r, od.pkts, od.ipBytes, payload(od), rd.pkts, rd.ipBytes, payload(rd)))
		}
		expectSame(t, "TCP conversations|frames (tshark conv,tcp)", gotConv, conv)
		if a.Summary.TCPConnections != int64(len(conv)) {
			t.Errorf("summary tcp_connections %d, tshark %d conversations", a.Summary.TCPConnections, len(conv))
		}
		// The orientation (which side is orig) comes from the analyzer; the
		// counts for each direction come from tshark.
		expectSame(t, "per connection orig_pkts|orig_ip_bytes|orig_bytes|resp_pkts|resp_ip_bytes|resp_bytes", gotDirs, wantDirs)
		// Every generated TCP connection starts with the client's SYN.
		for _, c := range a.Conns {
			if c.Proto == "tcp" && c.OrigH != trafficgen.ClientV4 && c.OrigH != trafficgen.ClientV6 {
				t.Errorf("connection %s opened by %s, want the client", c.UID, c.OrigH)
			}
		}
	})

	t.Run("p0f signatures", func(t *testing.T) {
		want := p0fSigs(t, pcap)
		got := map[string]int64{}
		for _, f := range a.Fingerprints {
			got[f.Kind+"|"+f.Host+"|"+f.P0f] += f.Count
		}
		expectSame(t, "kind|host|p0f raw_sig (with counts)", countList(got), countList(want))
	})

	t.Run("tcpdump syn lines", func(t *testing.T) {
		want := tcpdumpSYNs(t, pcap)
		got := map[string]int64{}
		for _, f := range a.Fingerprints {
			got[f.Kind+"|"+f.Host+"|"+f.Tcpdump] += f.Count
		}
		expectSame(t, "kind|host|tcpdump line (with counts)", countList(got), countList(want))
	})
}

func countList(m map[string]int64) []string {
	var out []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		out = append(out, fmt.Sprintf("%s x%d", k, m[k]))
	}
	return out
}

func endpoint(addr, port string) string {
	if strings.Contains(addr, ":") {
		return "[" + addr + "]:" + port
	}
	return addr + ":" + port
}

func convKey(a, b string) string {
	if a > b {
		a, b = b, a
	}
	return a + "<->" + b
}

var convRe = regexp.MustCompile(`^(\S+):(\d+)\s+<->\s+(\S+):(\d+)\s+(\d+)\s+\d+ \S+\s+(\d+)\s+\d+ \S+\s+(\d+)\s`)

// parseConv reads tshark's conv,tcp table into "a<->b|frames" entries. Its
// byte columns are rounded (kB, MB), so only frame counts are taken from it.
func parseConv(t *testing.T, out string) []string {
	t.Helper()
	var res []string
	for _, line := range strings.Split(out, "\n") {
		m := convRe.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		a, b := endpoint(m[1], m[2]), endpoint(m[3], m[4])
		total := atoi(t, m[7])
		if atoi(t, m[5])+atoi(t, m[6]) != total {
			t.Fatalf("cannot read tshark conv line %q", line)
		}
		res = append(res, fmt.Sprintf("%s|%d", convKey(a, b), total))
	}
	if !strings.Contains(out, "TCP Conversations") {
		t.Fatalf("unexpected tshark conv,tcp output:\n%s", out)
	}
	return res
}

// p0fSigs runs p0f on the capture and counts kind|host|raw_sig for SYNs (the
// client's) and SYN+ACKs (the server's).
func p0fSigs(t *testing.T, pcap string) map[string]int64 {
	t.Helper()
	if _, err := exec.LookPath("p0f"); err != nil {
		t.Fatalf("p0f not found: install it with scripts/provision.sh (%v)", err)
	}
	log := filepath.Join(t.TempDir(), "p0f.log")
	if out, err := exec.Command("p0f", "-r", pcap, "-o", log).CombinedOutput(); err != nil {
		t.Fatalf("p0f -r %s: %v: %s", pcap, err, out)
	}
	f, err := os.Open(log)
	if err != nil {
		t.Fatalf("p0f wrote no log: %v", err)
	}
	defer f.Close()
	sigs := map[string]int64{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		kv := map[string]string{}
		_, rest, _ := strings.Cut(sc.Text(), "] ")
		for _, part := range strings.Split(rest, "|") {
			k, v, _ := strings.Cut(part, "=")
			kv[k] = v
		}
		var kind, who string
		switch kv["mod"] {
		case "syn":
			kind, who = "syn", kv["cli"]
		case "syn+ack":
			kind, who = "syn-ack", kv["srv"]
		default:
			continue
		}
		// p0f writes IPv6 addresses uncompressed (fd77:0:0:0:0:0:0:2).
		host, err := netip.ParseAddr(who[:max(strings.LastIndex(who, "/"), 0)])
		if err != nil {
			t.Fatalf("p0f log: bad address in %q", sc.Text())
		}
		sigs[kind+"|"+host.String()+"|"+kv["raw_sig"]]++
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return sigs
}

var (
	tcpdumpLineRe = regexp.MustCompile(`(\S+)\.\d+ > \S+: (Flags \[([^\]]*)\].*)$`)
	cksumRe       = regexp.MustCompile(`, cksum 0x[0-9a-f]+ \([^)]*\)|, seq \d+(:\d+)?|, ack \d+|, length \d+.*$`)
	tsRe          = regexp.MustCompile(`TS val \d+ ecr \d+`)
)

// tcpdumpSYNs reads the SYNs and SYN+ACKs with `tcpdump -nn -v` and reduces
// each line the way the fingerprint package documents: no checksum, sequence
// or acknowledgement numbers, "TS" for the timestamp option, no length.
func tcpdumpSYNs(t *testing.T, pcap string) map[string]int64 {
	t.Helper()
	out, err := exec.Command("tcpdump", "-nn", "-v", "-r", pcap, "tcp").Output()
	if err != nil {
		t.Fatalf("tcpdump -nn -v -r %s: %v", pcap, err)
	}
	lines := map[string]int64{}
	for _, line := range strings.Split(string(out), "\n") {
		m := tcpdumpLineRe.FindStringSubmatch(line)
		if m == nil || !strings.Contains(m[3], "S") {
			continue
		}
		kind := "syn"
		if strings.Contains(m[3], ".") {
			kind = "syn-ack"
		}
		desc := tsRe.ReplaceAllString(cksumRe.ReplaceAllString(m[2], ""), "TS")
		lines[kind+"|"+m[1]+"|"+desc]++
	}
	return lines
}
