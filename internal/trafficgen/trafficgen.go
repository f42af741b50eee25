// Package trafficgen produces captures of real traffic for tests and
// benchmarks. Inside two fresh network namespaces joined by a veth pair it runs
// real servers (dnsmasq for DNS and DHCP, Go HTTP/HTTPS/QUIC servers with a
// self-signed certificate, a small NTP server) and drives real clients (curl,
// openssl s_client, dig, chronyd -Q, busybox udhcpc, Go's HTTP, TLS, QUIC and
// DNS clients) while tcpdump records the client's interface. Nothing can leave
// the machine: the namespaces have no route out.
//
// What the clients were told to do is returned in Result, so tests can compare
// it with what independent readers find in the capture.
package trafficgen

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/firstboot/firstboot/internal/testnet"
)

// Addresses inside the generator's namespaces (private to each run).
const (
	ServerV4 = "10.77.0.1"
	ClientV4 = "10.77.0.2"
	ServerV6 = "fd77::1"
	ClientV6 = "fd77::2"
	// DHCPHostname is what the DHCP client announces in option 12.
	DHCPHostname = "firstboot-guest"
	// Iface is the client's interface, which is captured.
	Iface = "eth0"
	// ClientMAC and ServerMAC are the veth ends' addresses (locally administered).
	// DHCP always leases ClientV4 to ClientMAC.
	ClientMAC = "02:fb:00:00:00:02"
	ServerMAC = "02:fb:00:00:00:01"
)

// webZone is a DNS zone and the web server addresses its names resolve to.
type webZone struct{ zone, v4, v6 string }

// webZones spreads connections over several destination addresses, as on a
// real network; names outside the listed zones get the first entry's addresses.
// All of them live on the server's interface; the DNS server's own address
// (ServerV4) is never in an answer.
func webZones() []webZone {
	return []webZone{
		{"#", "10.77.0.10", "fd77::10"},
		{"example.net", "10.77.0.11", "fd77::11"},
		{"example.org", "10.77.0.12", "fd77::12"},
		{"cdn.example.com", "10.77.0.13", "fd77::13"},
	}
}

// Config says what to generate.
type Config struct {
	// Out is the capture file to write (classic pcap, Ethernet).
	Out string
	// TargetBytes: keep generating until the capture file holds at least this
	// many bytes. 0 means one pass of every client, a few hundred KB.
	TargetBytes int64
	// BulkBytes is the size of the one large download per round (default 1 MiB).
	BulkBytes int64
	// SmallConns is the number of short HTTP/HTTPS connections per round
	// (default 200), DNSLookups the number of extra name lookups (default 160).
	// With the defaults a capture has about 2,600 packets per MB.
	SmallConns, DNSLookups int
	// Logf receives progress lines; nil discards them.
	Logf func(format string, args ...any)
}

// Result is what the clients did, as sets of what an observer should see.
type Result struct {
	Path string
	// DNSNames are the names queried (lower case, no trailing dot).
	DNSNames []string
	// TLSServerNames are the SNIs sent in TLS over TCP; QUICServerNames in QUIC.
	TLSServerNames, QUICServerNames []string
	// HTTPHosts are the Host headers of plain-text HTTP requests.
	HTTPHosts []string
	// NTPServers are the addresses the NTP client asked.
	NTPServers []string
	// DHCPHostname is the hostname option the DHCP client sent ("" if DHCP did not run).
	DHCPHostname string
	Rounds       int
	Capture      testnet.CaptureStats
	Elapsed      time.Duration
}

// observed collects Result's sets from concurrent clients.
type observed struct {
	mu                               sync.Mutex
	dns, sni, quicSNI, httpHost, ntp map[string]bool
}

func newObserved() *observed {
	return &observed{dns: map[string]bool{}, sni: map[string]bool{}, quicSNI: map[string]bool{},
		httpHost: map[string]bool{}, ntp: map[string]bool{}}
}

func (o *observed) add(set map[string]bool, vs ...string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, v := range vs {
		set[v] = true
	}
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// Generate runs the servers and clients and writes the capture to cfg.Out.
func Generate(ctx context.Context, cfg Config) (res *Result, err error) {
	start := time.Now()
	if cfg.Out == "" {
		return nil, errors.New("trafficgen: no output file given")
	}
	if cfg.BulkBytes == 0 {
		cfg.BulkBytes = 1 << 20
	}
	if cfg.SmallConns == 0 {
		cfg.SmallConns = 200
	}
	if cfg.DNSLookups == 0 {
		cfg.DNSLookups = 160
	}
	logf := cfg.Logf
	if logf == nil {
		logf = func(string, ...any) {}
	}
	out, err := filepath.Abs(cfg.Out)
	if err != nil {
		return nil, fmt.Errorf("trafficgen: output path: %w", err)
	}
	dir, err := os.MkdirTemp("", "trafficgen-")
	if err != nil {
		return nil, fmt.Errorf("trafficgen: work directory: %w", err)
	}
	var cleanups []func() error
	defer func() {
		var errs []error
		for _, c := range slices.Backward(cleanups) {
			errs = append(errs, c())
		}
		errs = append(errs, os.RemoveAll(dir))
		if cerr := errors.Join(errs...); cerr != nil {
			err = errors.Join(err, fmt.Errorf("trafficgen: cleanup: %w", cerr))
		}
	}()

	client, err := testnet.Create(ctx, "fbgen-c")
	if err != nil {
		return nil, err
	}
	cleanups = append(cleanups, client.Close)
	server, err := testnet.Create(ctx, "fbgen-s")
	if err != nil {
		return nil, err
	}
	cleanups = append(cleanups, server.Close)
	if err := testnet.Veth(ctx,
		// The client's IPv4 address comes from DHCP, as on a booting machine.
		testnet.Link{NS: client, Iface: Iface, Addrs: []string{ClientV6 + "/64"}, MAC: ClientMAC},
		testnet.Link{NS: server, Iface: Iface, Addrs: serverAddrs(), MAC: ServerMAC},
	); err != nil {
		return nil, err
	}
	if err := client.SetResolver(ServerV4); err != nil {
		return nil, err
	}

	cert, err := selfSignedCert(certNames())
	if err != nil {
		return nil, err
	}
	srv, err := startServers(ctx, server, Iface, dir, cert)
	if err != nil {
		return nil, err
	}
	cleanups = append(cleanups, srv.Close)

	capture, err := testnet.StartCapture(ctx, client, Iface, out)
	if err != nil {
		return nil, err
	}
	stopped := false
	cleanups = append(cleanups, func() error {
		if stopped {
			return nil
		}
		_, err := capture.Stop()
		return err
	})

	g := &gen{ns: client, obs: newObserved(), logf: logf, cfg: cfg, dir: dir}
	g.init()
	res = &Result{Path: out}
	if err := g.boot(ctx); err != nil {
		return nil, err
	}
	res.DHCPHostname = DHCPHostname
	for round := 0; ; round++ {
		if err := g.round(ctx, round); err != nil {
			return nil, err
		}
		res.Rounds = round + 1
		fi, err := os.Stat(out)
		if err != nil {
			return nil, fmt.Errorf("trafficgen: capture file: %w", err)
		}
		if round%10 == 0 {
			logf("trafficgen: round %d, capture %d MB", round, fi.Size()>>20)
		}
		if fi.Size() >= cfg.TargetBytes {
			break
		}
	}
	g.closeIdle()
	res.Capture, err = capture.Stop()
	stopped = true
	if err != nil {
		return nil, err
	}
	res.DNSNames = sortedKeys(g.obs.dns)
	res.TLSServerNames = sortedKeys(g.obs.sni)
	res.QUICServerNames = sortedKeys(g.obs.quicSNI)
	res.HTTPHosts = sortedKeys(g.obs.httpHost)
	res.NTPServers = sortedKeys(g.obs.ntp)
	res.Elapsed = time.Since(start)
	return res, nil
}

func serverAddrs() []string {
	addrs := []string{ServerV4 + "/24", ServerV6 + "/64"}
	for _, z := range webZones() {
		addrs = append(addrs, z.v4+"/24", z.v6+"/64")
	}
	return addrs
}
