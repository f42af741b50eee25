// Package simuplink is the simulated uplink the real-internet modes are
// tested against: a namespace playing the ISP and the internet, and a "host"
// namespace firstboot runs in whose only links lead to it. Nothing in either
// has a route out of the machine (the network rule).
//
//	host namespace (firstboot runs here)        ISP namespace (the internet)
//	  up0 198.51.100.2/24, default via .1  ───  isp0 198.51.100.1/24   routed uplink
//	  bridge fbtbr0 ─ port up1             ───  isp1 192.168.77.1/24   bridged LAN (dnsmasq DHCP)
//	  resolv.conf: 203.0.113.53                 lo: 203.0.113.10 (HTTP, HTTPS), .53 (DNS), .123 (NTP)
//
// The ISP answers real-looking names (Names) from its own resolver, serves
// HTTP and HTTPS (a certificate from a CA made here, TLS 1.2 so captures show
// it) and NTP, hands out LAN addresses by DHCP, and counts with iptables what
// arrives on each link (Counts). It forwards nothing, has no default route,
// and IPv6 is off in both namespaces: every packet that reaches it ends there.
package simuplink

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"

	"github.com/firstboot/firstboot/internal/testnet"
)

// The simulated internet's servers and the two links.
var (
	WWW = netip.MustParseAddr("203.0.113.10")  // HTTP and HTTPS for every name but NTP's
	DNS = netip.MustParseAddr("203.0.113.53")  // the ISP's resolver, the host's nameserver
	NTP = netip.MustParseAddr("203.0.113.123") // NTP for the time names

	HostAddr   = netip.MustParsePrefix("198.51.100.2/24") // the host's egress address (routed mode)
	ISPGateway = netip.MustParseAddr("198.51.100.1")
	LANRouter  = netip.MustParsePrefix("192.168.77.1/24") // router and DHCP server of the bridged LAN
)

// Interface names in the host namespace.
const (
	Egress = "up0"    // the routed uplink, the host's default route
	Bridge = "fbtbr0" // the host bridge for bridged mode
	Port   = "up1"    // the bridge's uplink port
)

// Link selects one of the ISP's two links.
type Link string

const (
	Routed  Link = "isp0" // to the host's up0
	Bridged Link = "isp1" // to the host bridge's port
)

// Names maps the names the resolver knows to their addresses; every other
// name is NXDOMAIN, and names have no AAAA.
func Names() map[string]netip.Addr {
	m := map[string]netip.Addr{}
	for _, n := range []string{
		// the test guest's
		"connectivity.firstboot.test", "updates.firstboot.test", "telemetry.example.com",
		"quic.firstboot.test", "news.example.com", "shop.example.net", "big.example.net",
		// Debian's
		"deb.debian.org", "security.debian.org", "www.debian.org", "example.com",
	} {
		m[n] = WWW
	}
	for _, n := range []string{"time.firstboot.test", "0.debian.pool.ntp.org", "1.debian.pool.ntp.org", "2.debian.pool.ntp.org", "3.debian.pool.ntp.org"} {
		m[n] = NTP
	}
	return m
}

// BodyMarker starts every HTTP(S) answer body: proof an answer came from here.
const BodyMarker = "simulated-uplink "

// CAName is the common name of the CA that signs the HTTPS certificate.
const CAName = "Simulated Uplink Test Root CA"

// Uplink is a running simulated uplink.
type Uplink struct {
	ISP, Host *testnet.Namespace
	// CA signed the HTTPS server's certificate (every name of Names).
	CA *x509.Certificate

	mu       sync.Mutex
	requests []Request
	queries  []Query
}

// Request is one HTTP(S) request the ISP's web server answered.
type Request struct {
	TLS          bool
	SNI, Host    string
	Path, Remote string
}

// Query is one question the ISP's resolver answered.
type Query struct {
	Name, Type, Remote, RCode string
}

// New builds the uplink; everything goes away in t.Cleanup.
func New(t *testing.T) *Uplink {
	t.Helper()
	testnet.Require(t, "iptables", "dnsmasq", "ip")
	u := &Uplink{ISP: testnet.New(t, "fbsimisp"), Host: testnet.New(t, "fbsimhost")}
	for _, ns := range []*testnet.Namespace{u.ISP, u.Host} {
		ns.MustRun(t, "sysctl", "-q", "-w", "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1", "net.ipv4.ip_forward=0")
	}
	testnet.NewVeth(t, testnet.Link{NS: u.Host, Iface: Egress, Addrs: []string{HostAddr.String()}},
		testnet.Link{NS: u.ISP, Iface: string(Routed), Addrs: []string{netip.PrefixFrom(ISPGateway, 24).String()}})
	u.Host.MustRun(t, "ip", "route", "add", "default", "via", ISPGateway.String())
	// No multicast snooping: the bridge would join the snoopers group and
	// report it to the LAN itself.
	u.Host.MustRun(t, "ip", "link", "add", Bridge, "type", "bridge", "stp_state", "0", "forward_delay", "0", "mcast_snooping", "0")
	testnet.NewVeth(t, testnet.Link{NS: u.Host, Iface: Port}, testnet.Link{NS: u.ISP, Iface: string(Bridged), Addrs: []string{LANRouter.String()}})
	u.Host.MustRun(t, "ip", "link", "set", Port, "master", Bridge)
	u.Host.MustRun(t, "ip", "link", "set", Bridge, "up")
	for _, a := range []netip.Addr{WWW, DNS, NTP} {
		u.ISP.MustRun(t, "ip", "addr", "add", a.String()+"/32", "dev", "lo")
	}
	if err := u.Host.SetResolver(DNS.String()); err != nil {
		t.Fatal(err)
	}
	// The host's own name resolves locally, as on a Debian host: libvirtd
	// asks for it, and those questions must not reach the ISP.
	if name, err := os.Hostname(); err == nil {
		hosts := filepath.Join("/etc/netns", u.Host.Name, "hosts")
		b, _ := os.ReadFile(hosts)
		if err := os.WriteFile(hosts, append(b, []byte("127.0.1.1 "+name+"\n")...), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	u.count(t)
	u.serveDNS(t)
	u.serveWeb(t)
	u.serveNTP(t)
	u.serveDHCP(t)
	return u
}

// Counting: a chain per link in the ISP's raw table, one rule per kind of
// packet expected there, and a last rule for everything else ("other").
// Classify sorts a packet the same way, so a test can hold what its machines
// sent against what arrived.
type countRule struct {
	class string
	dst   netip.Prefix // invalid: any
	proto string       // "" any
	port  uint16       // 0 any
}

var countRules = []countRule{
	{"dns", netip.PrefixFrom(DNS, 32), "udp", 53},
	{"dns-tcp", netip.PrefixFrom(DNS, 32), "tcp", 53},
	{"http", netip.PrefixFrom(WWW, 32), "tcp", 80},
	{"https", netip.PrefixFrom(WWW, 32), "tcp", 443},
	{"quic", netip.PrefixFrom(WWW, 32), "udp", 443},
	{"ntp", netip.PrefixFrom(NTP, 32), "udp", 123},
	{"dhcp", netip.Prefix{}, "udp", 67},
	{"icmp", netip.Prefix{}, "icmp", 0},
	{"multicast", netip.MustParsePrefix("224.0.0.0/4"), "", 0}, // LAN chatter (IGMP): ends here too
	{"other", netip.Prefix{}, "", 0},
}

func (r countRule) iptables() []string {
	var args []string
	if r.dst.IsValid() {
		args = append(args, "-d", r.dst.String())
	}
	if r.proto != "" {
		args = append(args, "-p", r.proto)
	}
	if r.port != 0 {
		args = append(args, "--dport", strconv.Itoa(int(r.port)))
	}
	return args
}

// Classify names the counter an IPv4 packet to dst (protocol "tcp", "udp",
// "icmp" or other, destination port) lands in.
func Classify(dst netip.Addr, proto string, port uint16) string {
	for _, r := range countRules {
		if (!r.dst.IsValid() || r.dst.Contains(dst)) && (r.proto == "" || r.proto == proto) && (r.port == 0 || r.port == port) {
			return r.class
		}
	}
	return "other"
}

func chainOf(l Link) string { return "SIMUP-" + string(l) }

func (u *Uplink) count(t *testing.T) {
	for _, l := range []Link{Routed, Bridged} {
		c := chainOf(l)
		u.ISP.MustRun(t, "iptables", "-w", "-t", "raw", "-N", c)
		u.ISP.MustRun(t, "iptables", "-w", "-t", "raw", "-A", "PREROUTING", "-i", string(l), "-j", c)
		for _, r := range countRules {
			args := append([]string{"-w", "-t", "raw", "-A", c}, r.iptables()...)
			args = append(args, "-m", "comment", "--comment", r.class, "-j", "RETURN")
			u.ISP.MustRun(t, "iptables", args...)
		}
	}
}

// Counts returns how many IPv4 packets of each kind arrived on a link.
func (u *Uplink) Counts(t testing.TB, l Link) map[string]int {
	t.Helper()
	out := u.ISP.MustRun(t, "iptables", "-w", "-t", "raw", "-L", chainOf(l), "-n", "-v", "-x")
	counts := map[string]int{}
	for _, line := range strings.Split(string(out), "\n") {
		i, j := strings.Index(line, "/* "), strings.Index(line, " */")
		f := strings.Fields(line)
		if i < 0 || j < i || len(f) == 0 {
			continue
		}
		n, err := strconv.Atoi(f[0])
		if err != nil {
			continue
		}
		counts[line[i+3:j]] += n
	}
	return counts
}

// Total is the sum of a link's counts.
func Total(counts map[string]int) int {
	n := 0
	for _, c := range counts {
		n += c
	}
	return n
}

// SetLink takes one of the ISP's links down or up (the cable pulled).
func (u *Uplink) SetLink(t testing.TB, l Link, up bool) {
	t.Helper()
	state := "down"
	if up {
		state = "up"
	}
	u.ISP.MustRun(t, "ip", "link", "set", string(l), state)
}

// Requests returns the HTTP(S) requests answered so far.
func (u *Uplink) Requests() []Request {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]Request(nil), u.requests...)
}

// Queries returns the DNS questions answered so far.
func (u *Uplink) Queries() []Query {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]Query(nil), u.queries...)
}

func (u *Uplink) serveDNS(t *testing.T) {
	names := Names()
	at := netip.AddrPortFrom(DNS, 53).String()
	pc, err := u.ISP.ListenPacket("udp", at)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	ln, err := u.ISP.Listen("tcp", at)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	ServeDNS(pc, ln, func(q []byte, remote string) []byte {
		resp, question, rcode := Answer(q, func(name string) (netip.Addr, bool) { a, ok := names[name]; return a, ok })
		if resp != nil {
			u.mu.Lock()
			u.queries = append(u.queries, Query{Name: question.Name, Type: question.Type, Remote: remote, RCode: rcode})
			u.mu.Unlock()
		}
		return resp
	})
}

// Question is what Answer was asked.
type Question struct{ Name, Type string }

// Answer answers a DNS query from lookup: an A record for a known name, no
// record (NOERROR) for its other types, NXDOMAIN for an unknown name; nil
// for what is not a query.
func Answer(q []byte, lookup func(name string) (netip.Addr, bool)) (resp []byte, question Question, rcode string) {
	var p dnsmessage.Parser
	h, err := p.Start(q)
	if err != nil || h.Response {
		return nil, question, ""
	}
	dq, err := p.Question()
	if err != nil {
		return nil, question, ""
	}
	question = Question{Name: strings.ToLower(strings.TrimSuffix(dq.Name.String(), ".")), Type: strings.TrimPrefix(dq.Type.String(), "Type")}
	a, known := lookup(question.Name)
	rh := dnsmessage.Header{ID: h.ID, Response: true, Authoritative: true, RecursionDesired: h.RecursionDesired, RecursionAvailable: true}
	if !known {
		rh.RCode = dnsmessage.RCodeNameError
	}
	b := dnsmessage.NewBuilder(nil, rh)
	b.EnableCompression()
	_ = b.StartQuestions()
	_ = b.Question(dq)
	_ = b.StartAnswers()
	if known && dq.Type == dnsmessage.TypeA {
		_ = b.AResource(dnsmessage.ResourceHeader{Name: dq.Name, Class: dnsmessage.ClassINET, TTL: 300}, dnsmessage.AResource{A: a.As4()})
	}
	resp, _ = b.Finish()
	return resp, question, rh.RCode.String()
}

// ServeDNS answers queries on pc (UDP) and ln (TCP, length-prefixed) with
// answer until they are closed.
func ServeDNS(pc net.PacketConn, ln net.Listener, answer func(q []byte, remote string) []byte) {
	go func() {
		buf := make([]byte, 4096)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			if resp := answer(buf[:n], from.String()); resp != nil {
				_, _ = pc.WriteTo(resp, from)
			}
		}
	}()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(10 * time.Second))
				var l [2]byte
				if _, err := io.ReadFull(c, l[:]); err != nil {
					return
				}
				q := make([]byte, binary.BigEndian.Uint16(l[:]))
				if _, err := io.ReadFull(c, q); err != nil {
					return
				}
				if resp := answer(q, c.RemoteAddr().String()); resp != nil {
					_, _ = c.Write(append(binary.BigEndian.AppendUint16(nil, uint16(len(resp))), resp...))
				}
			}()
		}
	}()
}

// LargePath serves ?bytes=N bytes as fast as the link takes them.
const LargePath = "/large"

func (u *Uplink) serveWeb(t *testing.T) {
	cert, err := u.makeCert()
	if err != nil {
		t.Fatal(err)
	}
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		req := Request{TLS: r.TLS != nil, Host: r.Host, Path: r.URL.Path, Remote: r.RemoteAddr}
		if r.TLS != nil {
			req.SNI = r.TLS.ServerName
		}
		u.mu.Lock()
		u.requests = append(u.requests, req)
		u.mu.Unlock()
		w.Header().Set("X-Simulated-Uplink", "1")
		if r.URL.Path == LargePath {
			n, _ := strconv.ParseInt(r.URL.Query().Get("bytes"), 10, 64)
			w.Header().Set("Content-Length", strconv.FormatInt(n, 10))
			chunk := make([]byte, 64<<10)
			for i := range chunk {
				chunk[i] = byte(i * 7)
			}
			for n > 0 {
				m := min(n, int64(len(chunk)))
				if _, err := w.Write(chunk[:m]); err != nil {
					return
				}
				n -= m
			}
			return
		}
		fmt.Fprintf(w, "%s%s%s\n", BodyMarker, r.Host, r.URL.Path)
	})
	for _, port := range []string{"80", "443"} {
		ln, err := u.ISP.Listen("tcp", net.JoinHostPort(WWW.String(), port))
		if err != nil {
			t.Fatal(err)
		}
		srv := &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second, ErrorLog: nil}
		if port == "443" {
			// TLS 1.2: the certificate travels in the clear, so a capture
			// shows which CA signed what the guest got.
			srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MaxVersion: tls.VersionTLS12}
			ln = tls.NewListener(ln, srv.TLSConfig)
		}
		go func() { _ = srv.Serve(ln) }()
		t.Cleanup(func() { srv.Close() })
	}
}

// makeCert makes the CA and one server certificate for every name.
func (u *Uplink) makeCert() (tls.Certificate, error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: CAName, Organization: []string{"firstboot tests"}},
		NotBefore: now.Add(-48 * time.Hour), NotAfter: now.Add(30 * 24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return tls.Certificate{}, err
	}
	if u.CA, err = x509.ParseCertificate(caDER); err != nil {
		return tls.Certificate{}, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	var names []string
	for n := range Names() {
		names = append(names, n)
	}
	sort.Strings(names)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "www.example.com"}, DNSNames: names,
		NotBefore: now.Add(-48 * time.Hour), NotAfter: now.Add(30 * 24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, u.CA, &key.PublicKey, caKey)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der, caDER}, PrivateKey: key}, nil
}

// serveNTP answers client requests (mode 3) as a stratum 2 server.
func (u *Uplink) serveNTP(t *testing.T) {
	pc, err := u.ISP.ListenPacket("udp", netip.AddrPortFrom(NTP, 123).String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	ntpTime := func(tm time.Time) uint64 {
		secs := uint64(tm.Unix()) + 2208988800
		return secs<<32 | uint64(tm.Nanosecond())*(1<<32)/1e9
	}
	go func() {
		buf := make([]byte, 512)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			if n < 48 || buf[0]&7 != 3 {
				continue
			}
			now := ntpTime(time.Now())
			resp := make([]byte, 48)
			resp[0] = buf[0]&0x38 | 4 // same version, mode 4 (server)
			resp[1], resp[2], resp[3] = 2, buf[2], 0xec
			copy(resp[12:16], "SIMU")
			binary.BigEndian.PutUint64(resp[16:], now) // reference
			copy(resp[24:32], buf[40:48])              // origin = client's transmit
			binary.BigEndian.PutUint64(resp[32:], now) // receive
			binary.BigEndian.PutUint64(resp[40:], now) // transmit
			_, _ = pc.WriteTo(resp, from)
		}
	}()
}

// serveDHCP runs dnsmasq as the bridged LAN's DHCP server (no DNS).
func (u *Uplink) serveDHCP(t *testing.T) {
	dir := t.TempDir()
	base := LANRouter.Masked().Addr().As4()
	lo := netip.AddrFrom4([4]byte{base[0], base[1], base[2], 100})
	hi := netip.AddrFrom4([4]byte{base[0], base[1], base[2], 199})
	u.ISP.Background(t, "dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null", "--no-resolv", "--no-hosts",
		"--port=0", "--interface="+string(Bridged), "--bind-interfaces", "--user=root", "--pid-file=",
		"--dhcp-range="+lo.String()+","+hi.String()+",255.255.255.0,10m",
		"--dhcp-option=option:router,"+LANRouter.Addr().String(),
		"--dhcp-option=option:dns-server,"+DNS.String(),
		"--dhcp-authoritative", "--no-ping", "--log-dhcp",
		"--dhcp-leasefile="+filepath.Join(dir, "leases"))
	u.ISP.WaitListening(t, "udp", "67")
}

// Log logs what the uplink saw (for a failing test).
func (u *Uplink) Log(t testing.TB) {
	t.Helper()
	b, _ := json.MarshalIndent(map[string]any{
		"routed": u.Counts(t, Routed), "bridged": u.Counts(t, Bridged), "requests": u.Requests(), "queries": u.Queries(),
	}, "", "  ")
	t.Logf("simulated uplink:\n%s", b)
}
